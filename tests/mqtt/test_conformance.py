"""The MQTT binder passes the binder conformance suite against the real Mosquitto."""

from __future__ import annotations

import pytest

from binder.testing.conformance import BinderConformance, ConformanceSettings

from .conftest import AUTH_PORT, USER

_WRONG_PASSWORD = "wrong-eventbinder-secret"

pytestmark = pytest.mark.broker("mqtt")


class TestMqttConformance(BinderConformance):
    binder_settings = {
        "type": "mqtt",
        "host": "127.0.0.1",
        "port": 1883,
        "client_id": "eb-conformance",
        "session_expiry": 60,
    }
    # Mosquitto drops a client silent for 1.5 x keepalive (3 s here): the blocking
    # handler blocks longer than that, so a blocked event loop would lose the session.
    # The password-protected listener refuses a wrong password ("not authorized").
    conformance = ConformanceSettings(
        receive_timeout=10.0,
        session_settings={"keepalive": 2},
        block_for=3.5,
        refused_settings={"port": AUTH_PORT, "username": USER, "password": _WRONG_PASSWORD},
        refused_secret=_WRONG_PASSWORD,
    )
