"""How the Kafka binder words aiokafka's errors (no broker needed).

Authorization errors cannot happen on the test broker (it has no ACLs yet), so their
mapping to AccessRefused is checked here on the errors aiokafka raises for them.
"""

from __future__ import annotations

from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    MessageSizeTooLargeError,
    RequestTimedOutError,
    SaslAuthenticationFailed,
    TopicAuthorizationFailedError,
)

from binder.errors import AccessRefused, BinderError
from binders.kafka.errors import kafka_reason, redact, refusal


def test_broker_errors_read_as_one_line_with_one_type_name() -> None:
    reason = kafka_reason(MessageSizeTooLargeError())
    assert reason.startswith("MessageSizeTooLargeError: The server has a configurable")
    assert "[Error" not in reason
    assert kafka_reason(RequestTimedOutError()).count("Error") == 1
    assert kafka_reason(KafkaConnectionError("Connection at h:1 closed")) == (
        "KafkaConnectionError: Connection at h:1 closed"
    )
    assert kafka_reason(BinderError("worded already")) == "worded already"


def test_authorization_errors_are_access_refused() -> None:
    topic = refusal(TopicAuthorizationFailedError({"orders"}), "producing to topic 'orders'")
    assert isinstance(topic, AccessRefused)
    assert str(topic).startswith("producing to topic 'orders': not authorized for the topic")
    group = refusal(GroupAuthorizationFailedError("billing"), "consuming 'orders'")
    assert isinstance(group, AccessRefused)
    assert "not authorized for the consumer group (billing)" in str(group)
    cluster = refusal(ClusterAuthorizationFailedError(), "creating topic 'x'")
    assert isinstance(cluster, AccessRefused)
    login = refusal(SaslAuthenticationFailed("Authentication failed"), "Kafka at h:9094")
    assert isinstance(login, AccessRefused)
    assert refusal(KafkaConnectionError("closed"), "anything") is None
    assert refusal(RequestTimedOutError(), "anything") is None


def test_secrets_are_redacted() -> None:
    settings = {"sasl_plain_password": "pw-123", "ssl_password": None}
    assert redact("login pw-123 failed", settings) == "login *** failed"
