"""Configuration of the MQTT binder: settings, binding options, TLS; no broker needed."""

from __future__ import annotations

import pytest

from binder.backoff import Backoff
from binder.errors import ConfigError
from binders.mqtt.connection import MqttConnection
from binders.mqtt.settings import ConnectionSettings, validate_settings


def test_settings_validation_and_url() -> None:
    with pytest.raises(ConfigError, match="did you mean"):
        validate_settings({"hots": "x"})
    with pytest.raises(ConfigError, match=r"5 or 3\.1\.1"):
        validate_settings({"protocol": "4"})
    with pytest.raises(ConfigError) as info:
        validate_settings({"url": "http://u:topsecret@h"})
    assert "topsecret" not in str(info.value)
    s = ConnectionSettings.from_settings({"url": "mqtts://bob:p%40ss@broker.example"})
    assert (s.host, s.port, s.tls, s.username, s.password) == (
        "broker.example",
        8883,
        True,
        "bob",
        "p@ss",
    )
    assert "p@ss" not in repr(s)


def test_binding_options_validation() -> None:
    from binders.mqtt.plugin import MqttBinderType

    kind = MqttBinderType()
    assert kind.validate_binding_options({}, "producer") == {"qos": 1, "retain": False}
    with pytest.raises(ConfigError, match="QoS 2"):
        kind.validate_binding_options({"qos": 2}, "consumer")
    with pytest.raises(ConfigError, match="unknown key 'retain'"):
        kind.validate_binding_options({"retain": True}, "consumer")
    assert kind.secret_keys() == {"password", "url"}


async def test_tls_and_will_settings_build_a_client() -> None:
    settings = ConnectionSettings.from_settings(
        {
            "url": "mqtts://broker.example",
            "tls": {"insecure": True},
            "will": {"topic": "svc/status", "payload": "offline"},
        }
    )
    connection = MqttConnection(settings, "eb-tls-test", with_will=True)
    client = connection._client
    assert client._ssl is True and client._will is True  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match="wildcards"):
        validate_settings({"will": {"topic": "a/#"}})


async def test_reconnects_use_the_core_backoff_and_keepalive_is_checked_in_time() -> None:
    settings = ConnectionSettings.from_settings(
        {"reconnect_min_delay": 0.2, "reconnect_max_delay": 3.0, "keepalive": 2}
    )
    connection = MqttConnection(settings, "eb-backoff-test")
    backoff = connection._backoff
    assert backoff == Backoff(0.2, 2.0, 3.0)
    assert [backoff.ceiling(n) for n in (1, 2, 3, 5, 9)] == [0.2, 0.4, 0.8, 3.0, 3.0]
    assert all(0.8 * 0.2 <= backoff.delay(1) <= 0.2 for _ in range(50))  # jittered, capped
    # A PINGREQ goes out at most a quarter of the keepalive late (Mosquitto allows 1.5x).
    assert connection._io.misc_interval == 0.5


def test_tls_options_of_a_loaded_configuration_reach_paho() -> None:
    """Loaded settings are read-only mappings: the TLS options must still be used."""
    from binder.config import load_settings
    from binder.plugins import load_registry

    loaded = load_settings(
        {"binders": {"mqtt": {"tls": {"ca_certs": "/etc/ca.pem", "insecure": True}}}},
        registry=load_registry(),
        discover=False,
        environ={},
    )
    tls = ConnectionSettings.from_settings(loaded.binders["mqtt"].settings).tls
    calls: dict[str, object] = {}

    class Client:
        def tls_set(self, **options: object) -> None:
            calls.update(options)

        def tls_insecure_set(self, value: bool) -> None:
            calls["insecure"] = value

    MqttConnection._set_tls(Client(), tls)  # type: ignore[arg-type]
    assert (calls["ca_certs"], calls["insecure"]) == ("/etc/ca.pem", True)
    calls.clear()
    MqttConnection._set_tls(Client(), True)  # type: ignore[arg-type]
    assert calls["ca_certs"] is None and "insecure" not in calls
