"""The binder's error sentences, from py-amqp and kombu exceptions built by hand (no
broker needed; ``test_access.py`` meets the same refusals on the real broker)."""

from __future__ import annotations

import pytest
from amqp import exceptions as amqp_errors
from kombu.exceptions import OperationalError

from binder.errors import AccessRefused
from binders.rabbit.errors import (
    LinkError,
    as_error,
    connect_failure,
    describe,
    login_refusal,
    translate,
)

INFO = {"hostname": "rabbit.example", "port": 5672, "userid": "billing", "virtual_host": "shop"}


def _refusal(code: int, text: str, method: tuple[int, int]) -> amqp_errors.AMQPError:
    error: amqp_errors.AMQPError = amqp_errors.error_for_code(
        code, text, method, amqp_errors.ChannelError
    )
    return error


def test_a_refused_permission_names_operation_permission_resource_and_user() -> None:
    exc = _refusal(
        403,
        "ACCESS_REFUSED - access to queue 'orders.billing' in vhost 'shop' refused for user "
        "'billing'",
        (60, 20),  # basic.consume
    )
    error = translate(exc)
    assert isinstance(error, AccessRefused)
    assert str(error) == (
        "RabbitMQ refused basic.consume: user 'billing' has no read permission on queue "
        "'orders.billing' in virtual host 'shop'"
    )


def test_a_refusal_without_a_known_resource_keeps_rabbitmqs_words() -> None:
    exc = _refusal(
        403,
        "ACCESS_REFUSED - access to topic 'eu.orders' in exchange 'orders' in vhost '/' "
        "refused for user 'billing'",
        (60, 40),  # basic.publish
    )
    assert str(translate(exc)) == (
        "RabbitMQ refused basic.publish: access to topic 'eu.orders' in exchange 'orders' "
        "in vhost '/' refused for user 'billing'"
    )


def test_other_refusals_are_link_errors_in_one_sentence() -> None:
    exc = _refusal(
        406,
        "PRECONDITION_FAILED - inequivalent arg 'x-message-ttl' for queue 'q' in vhost '/'",
        (50, 10),  # queue.declare
    )
    error = translate(exc)
    assert type(error) is LinkError
    assert str(error) == (
        "RabbitMQ refused queue.declare: inequivalent arg 'x-message-ttl' for queue 'q' in "
        "vhost '/'; the queue exists with other arguments: make the binding's rabbit option "
        "'ttl' match them, or delete the queue so it is declared anew"
    )


@pytest.mark.parametrize(
    ("current", "advice"),
    [
        ("but current is none", "auto_bind_dlq: false to share it"),
        ("but current is the value 'DLX' of type 'longstr'", "auto_bind_dlq: true"),
    ],
)
def test_a_group_queue_declared_with_other_dead_letter_arguments_names_the_option(
    current: str, advice: str
) -> None:
    exc = _refusal(
        406,
        "PRECONDITION_FAILED - inequivalent arg 'x-dead-letter-exchange' for queue "
        f"'orders.billing' in vhost '/': received the value 'DLX' of type 'longstr' {current}",
        (50, 10),
    )
    assert advice in str(translate(exc))
    assert "autoBindDlq" in str(translate(exc))


def test_a_connection_closed_by_the_broker() -> None:
    exc = amqp_errors.error_for_code(
        320,
        "CONNECTION_FORCED - broker forced connection closure with reason 'shutdown'",
        (0, 0),
        amqp_errors.ConnectionError,
    )
    assert describe(exc) == (
        "RabbitMQ closed the connection: broker forced connection closure with reason 'shutdown'"
    )


def test_errors_py_amqp_raises_itself_are_not_blamed_on_the_broker() -> None:
    missed = amqp_errors.ConnectionForced("Too many heartbeats missed")
    assert describe(missed) == "too many heartbeats missed"
    error = translate(missed)
    assert type(error) is LinkError
    assert str(error) == "too many heartbeats missed"


def test_socket_errors_wrapped_by_kombu_give_their_reason() -> None:
    try:
        try:
            raise ConnectionRefusedError(111, "Connection refused")
        except OSError as inner:
            raise OperationalError(str(inner)) from inner
    except OperationalError as exc:
        assert describe(exc) == "connection refused"
        assert str(as_error(exc)) == "connection refused"
        assert connect_failure(exc, INFO) == (
            "RabbitMQ is unreachable at rabbit.example:5672 (connection refused)"
        )
    assert describe(TimeoutError("timed out")) == "timed out"


def test_anything_else_is_described_once_and_without_a_url_password() -> None:
    exc = ValueError("bad amqp://billing:s3cret@rabbit.example//")
    assert describe(exc) == "ValueError: bad amqp://billing:***@rabbit.example//"
    assert translate(exc) is exc  # not an AMQP error: the caller gets it as it was


def test_login_refusals() -> None:
    login = amqp_errors.AccessRefused(
        "ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN.", (0, 0)
    )
    assert login_refusal(login, INFO) == (
        "RabbitMQ at rabbit.example:5672 refused the login of user 'billing' (wrong user "
        "name or password)"
    )
    guest = {**INFO, "userid": "guest"}
    assert login_refusal(login, guest) == (
        "RabbitMQ at rabbit.example:5672 refused the login of user 'guest' (wrong user name "
        "or password; by default RabbitMQ lets 'guest' log in only from localhost)"
    )
    missing = amqp_errors.NotAllowed("NOT_ALLOWED - vhost shop not found", (10, 40))
    assert (
        login_refusal(missing, INFO) == "RabbitMQ at rabbit.example:5672 has no virtual host 'shop'"
    )
    down = amqp_errors.NotAllowed(
        "NOT_ALLOWED - access to vhost 'shop' refused for user 'billing': vhost 'shop' is down",
        (10, 40),
    )
    assert login_refusal(down, INFO) is None  # worth retrying
    assert connect_failure(down, INFO) == (
        "RabbitMQ at rabbit.example:5672 refused the connection (access to vhost 'shop' "
        "refused for user 'billing': vhost 'shop' is down)"
    )
