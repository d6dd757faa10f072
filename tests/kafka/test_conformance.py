"""The binder conformance suite against real Kafka."""

from __future__ import annotations

import pytest

from binder.testing.conformance import BinderConformance, ConformanceSettings

from .helpers import SASL_SETTINGS, SETTINGS

pytestmark = pytest.mark.broker("kafka")

#: Room for the 5 MiB payload of the large-message test, its headers and batch overhead.
LARGE = 8 * 1024 * 1024


class TestKafkaConformance(BinderConformance):
    """Kafka declares every capability: groups, ordering, durable, replay, headers,
    partitioning and (through seek-back) redelivery on nack."""

    binder_settings = dict(SETTINGS)
    conformance = ConformanceSettings(
        receive_timeout=10.0,
        # The broker evicts a member silent for 2 s (scripts/kafka/server.properties
        # lowers the broker's minimum session timeout to 1 s for this).
        session_settings={"session_timeout_ms": 2000, "heartbeat_interval_ms": 300},
        block_for=4.0,
        # The SASL listener of scripts/brokers, with a wrong password.
        refused_settings={**SASL_SETTINGS, "sasl_plain_password": "not-the-password"},
        refused_secret="not-the-password",
        # Producers send records up to max_request_size (binder setting: it covers the
        # test's own producer too); topics are created taking records that large
        # (bindings.default, so the app's input and output topics). Consumers need
        # nothing: a fetch returns a batch larger than the fetch sizes whole.
        large_settings={"max_request_size": LARGE},
        large_binding_defaults={"kafka": {"config": {"max.message.bytes": LARGE}}},
    )
