"""The MQTT binder passes the binder conformance suite against the real Mosquitto."""

from __future__ import annotations

import pytest

from binder.testing.conformance import BinderConformance, ConformanceSettings

pytestmark = pytest.mark.broker("mqtt")


class TestMqttConformance(BinderConformance):
    binder_settings = {
        "type": "mqtt",
        "host": "127.0.0.1",
        "port": 1883,
        "client_id": "eb-conformance",
        "session_expiry": 60,
    }
    conformance = ConformanceSettings(receive_timeout=10.0)

    def dead_letter_destination(self, destination: str, group: str | None) -> str:
        """Dead letters go to ``<destination>/dlq`` by default."""
        return f"{destination}/dlq"
