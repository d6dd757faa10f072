"""The binder conformance suite against real Kafka."""

from __future__ import annotations

import pytest

from binder.testing.conformance import BinderConformance, ConformanceSettings

from .helpers import SETTINGS

pytestmark = pytest.mark.broker("kafka")


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
    )
