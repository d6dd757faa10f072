"""The binder conformance suite against real Kafka."""

from __future__ import annotations

import pytest

from binder.testing.conformance import BinderConformance, ConformanceSettings
from binders.kafka.consumer import dead_letter_topic

from .helpers import SETTINGS

pytestmark = pytest.mark.broker("kafka")


class TestKafkaConformance(BinderConformance):
    """Kafka declares every capability: groups, ordering, durable, replay, headers,
    partitioning and (through seek-back) redelivery on nack."""

    binder_settings = dict(SETTINGS)
    conformance = ConformanceSettings(receive_timeout=10.0)

    def dead_letter_destination(self, destination: str, group: str | None) -> str:
        """Dead letters go to ``error.<destination>.<group>``."""
        return dead_letter_topic(destination, group)
