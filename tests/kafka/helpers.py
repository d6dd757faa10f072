"""Helpers shared by the Kafka binder tests (real Kafka on 127.0.0.1:9092)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
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

#: The throwaway certificates of scripts/brokers (scripts/brokerctl/certs.py): ca.pem,
#: client.pem/.key, client-expired.pem/.key, other-ca.pem, other-client.pem/.key.
TLS_DIR = Path(os.environ.get("EVENTBINDER_STATE", "/tmp/eventbinder-brokers")) / "tls"
#: The SSL listener: server authentication, mutual TLS with a client certificate. The
#: server certificate names only localhost (127.0.0.1 is a host name mismatch).
SSL_BOOTSTRAP = "localhost:9095"
SSL_SETTINGS: dict[str, Any] = {
    **SETTINGS,
    "bootstrap_servers": SSL_BOOTSTRAP,
    "security_protocol": "SSL",
    "ssl_cafile": str(TLS_DIR / "ca.pem"),
}
MTLS_SETTINGS: dict[str, Any] = {
    **SSL_SETTINGS,
    "ssl_certfile": str(TLS_DIR / "client.pem"),
    "ssl_keyfile": str(TLS_DIR / "client.key"),
}
#: The SASL_SSL listener: TLS and a SCRAM-SHA-512 login; eventbinder-scram may do
#: anything, orders-only only what its ACLs allow (topics and groups orders-only.*).
SASL_SSL_BOOTSTRAP = "localhost:9096"
SCRAM_PASSWORD = "eventbinder-scram-secret"
SCRAM_SETTINGS: dict[str, Any] = {
    **SSL_SETTINGS,
    "bootstrap_servers": SASL_SSL_BOOTSTRAP,
    "security_protocol": "SASL_SSL",
    "sasl_mechanism": "SCRAM-SHA-512",
    "sasl_plain_username": "eventbinder-scram",
    "sasl_plain_password": SCRAM_PASSWORD,
}
LIMITED_USER = "orders-only"
LIMITED_PASSWORD = "orders-only-secret"
LIMITED_PREFIX = "orders-only."
LIMITED_SETTINGS: dict[str, Any] = {
    **SCRAM_SETTINGS,
    "sasl_plain_username": LIMITED_USER,
    "sasl_plain_password": LIMITED_PASSWORD,
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
