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


def test_tls_options_of_a_loaded_configuration_reach_paho(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Loaded settings are read-only mappings: the TLS options must still be used."""
    import ssl

    from binder.config import load_settings
    from binder.plugins import load_registry
    from binders.mqtt.tls import client_context

    loaded = load_settings(
        {"binders": {"mqtt": {"tls": {"ca_certs": "/etc/ca.pem", "insecure": True}}}},
        registry=load_registry(),
        discover=False,
        environ={},
    )
    settings = ConnectionSettings.from_settings(loaded.binders["mqtt"].settings)
    loaded_cas: list[str] = []
    monkeypatch.setattr(
        ssl.SSLContext, "load_verify_locations", lambda _self, cafile: loaded_cas.append(cafile)
    )
    context = client_context(settings)
    assert loaded_cas == ["/etc/ca.pem"] and not context.check_hostname
    assert context.verify_mode == ssl.CERT_REQUIRED
    default = client_context(ConnectionSettings.from_settings({"tls": True}))
    assert default.check_hostname and loaded_cas == ["/etc/ca.pem"]


# -- several broker URLs (failover) -------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        ["mqtt://u:pw@a:1", "mqtt://b:2"],
        "mqtt://u:pw@a:1,mqtt://b:2",
        "mqtt://u:pw@a:1 ; mqtt://b:2",
        " mqtt://u:pw@a:1,\n  mqtt://b:2, ",
        "[mqtt://u:pw@a:1, mqtt://b:2]",  # a YAML list in an environment variable
    ],
)
def test_url_takes_a_list_or_a_separated_string(value: object) -> None:
    assert validate_settings({"url": value})["url"] == ["mqtt://u:pw@a:1", "mqtt://b:2"]
    s = ConnectionSettings.from_settings({"url": value})
    assert s.addresses == ("a:1", "b:2")
    assert [(c.host, c.port, c.address) for c in s.candidates()] == [
        ("a", 1, "a:1"),
        ("b", 2, "b:2"),
    ]
    # one identity: the credentials of the URLs that carry any apply to every broker
    assert {(c.username, c.password) for c in s.candidates()} == {("u", "pw")}
    assert repr(s) == "ConnectionSettings(a:1, b:2, MQTT 5, username='u')"


def test_one_url_stays_a_string_and_ports_default_per_scheme() -> None:
    assert validate_settings({"url": "mqtt://a"})["url"] == "mqtt://a"
    assert ConnectionSettings.from_settings({"url": "mqtt://a"}).addresses == ("a:1883",)
    tls = ConnectionSettings.from_settings({"url": "mqtts://a, ssl://b:9999"})
    assert (tls.tls, tls.addresses) == (True, ("a:8883", "b:9999"))
    with_port = ConnectionSettings.from_settings({"url": ["mqtt://a", "mqtt://b"], "port": 2883})
    assert with_port.addresses == ("a:2883", "b:2883")
    # a comma inside a password does not cut the URL (only a following scheme does)
    odd = ConnectionSettings.from_settings({"url": "mqtt://u:p,w;x@a:1,mqtt://u:p,w;x@b:2"})
    assert (odd.addresses, odd.password) == (("a:1", "b:2"), "p,w;x")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([], "needs at least one URL"),
        ("  ,  ", "needs at least one URL"),
        (["mqtt://a", 7], "every URL must be a string"),
        (["mqtt://a", "http://u:topsecret@b"], "URL 2 (of 2) must start with mqtt://"),
        (["mqtt://a", "mqtt://u:topsecret@"], "URL 2 (of 2) has no host name"),
        ("mqtt://u:topsecret@a:99999", "the URL has an invalid port"),
        (["mqtt://a", "mqtts://b"], "mixes TLS (mqtts://) and plain (mqtt://) URLs"),
        (
            ["mqtt://u:topsecret@a", "mqtt://u:other-topsecret@b"],
            "the URLs carry different user names or passwords",
        ),
    ],
)
def test_url_list_errors_name_the_key_and_never_the_value(value: object, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        validate_settings({"url": value})
    assert info.value.key == "url"
    assert message in str(info.value)
    assert "topsecret" not in str(info.value)


def test_binder_config_masks_the_passwords_of_every_url() -> None:
    """``binder config`` shows the hosts, never a password, for a list from a file and
    for a comma-separated string from an environment variable."""
    from binder.config import load_settings
    from binder.plugins import load_registry

    registry = load_registry()
    urls = ["mqtt://svc:pw-one-secret@a:1883", "mqtt://svc:pw-one-secret@b:1883"]
    from_file = load_settings(
        {"binders": {"mqtt": {"type": "mqtt", "url": urls}}},
        registry=registry,
        discover=False,
        environ={},
    )
    from_env = load_settings(
        None,
        registry=registry,
        discover=False,
        environ={
            "EVENTBINDER_BINDERS__MQTT__TYPE": "mqtt",
            "EVENTBINDER_BINDERS__MQTT__URL": ",".join(urls),
        },
    )
    for loaded in (from_file, from_env):
        shown = loaded.redacted()
        text = repr(shown)
        assert "pw-one-secret" not in text
        assert "mqtt://svc:***@a:1883" in text and "mqtt://svc:***@b:1883" in text


def test_a_destination_sent_to_is_a_producer_whatever_its_name() -> None:
    """``app.send("orders-in-7", ...)``: the name looks like a handler's input binding,
    but a destination sent to only produces, with the producer options (a send to
    such a name failed with ``KeyError: 'retain'``, about 1 in 100 random names)."""
    from binder.config import load_settings
    from binder.plugins import load_registry
    from binder.resolve import resolve_dynamic

    config = {"binders": {"mqtt": {"type": "mqtt"}}, "bindings": {"orders-in-7": {}}}
    settings = load_settings(config, registry=load_registry(), discover=False, environ={})
    resolved = resolve_dynamic("orders-in-7", settings)
    assert resolved.direction == "producer"
    assert resolved.options_for("mqtt") == {"qos": 1, "retain": False}
