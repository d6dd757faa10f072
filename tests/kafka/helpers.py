"""Helpers shared by the Kafka binder tests (real Kafka on 127.0.0.1:9092)."""

from __future__ import annotations

import uuid
from typing import Any

from binder.spi import ConsumerSpec, ProducerSpec

BOOTSTRAP = "127.0.0.1:9092"
SETTINGS: dict[str, Any] = {
    "type": "kafka",
    "bootstrap_servers": BOOTSTRAP,
    "client_id": "eventbinder-tests",
    "linger_ms": 1,
    "commit_interval": 0.2,
}

#: The SASL listener of scripts/brokers (SASL_PLAINTEXT, mechanism PLAIN).
SASL_BOOTSTRAP = "127.0.0.1:9094"
SASL_PASSWORD = "eventbinder-secret"
SASL_SETTINGS: dict[str, Any] = {
    **SETTINGS,
    "bootstrap_servers": SASL_BOOTSTRAP,
    "security_protocol": "SASL_PLAINTEXT",
    "sasl_mechanism": "PLAIN",
    "sasl_plain_username": "eventbinder",
    "sasl_plain_password": SASL_PASSWORD,
}


def unique(prefix: str) -> str:
    """A fresh, uuid-suffixed topic or group name."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def make_binder(**overrides: Any) -> Any:
    """Build an unstarted Kafka binder through the plugin's binder type."""
    from binders.kafka.plugin import KafkaBinderType

    kind = KafkaBinderType()
    section = {**SETTINGS, **overrides}
    section.pop("type")  # the core reads `type`; the binder type validates the rest
    return kind.create("kafka", kind.validate_settings(section))


def consumer_spec(topic: str, group: str | None = None, **kw: Any) -> ConsumerSpec:
    """A consumer spec with validated ``kafka:`` options (``options=``)."""
    from binders.kafka.plugin import KafkaBinderType

    options = KafkaBinderType().validate_binding_options(kw.pop("options", {}), "consumer")
    return ConsumerSpec(
        binding=f"{topic}-in", destination=topic, group=group, options=options, **kw
    )


def producer_spec(topic: str, **kw: Any) -> ProducerSpec:
    """A producer spec with validated ``kafka:`` options (``options=``)."""
    from binders.kafka.plugin import KafkaBinderType

    options = KafkaBinderType().validate_binding_options(kw.pop("options", {}), "producer")
    return ProducerSpec(binding=f"{topic}-out", destination=topic, options=options, **kw)
