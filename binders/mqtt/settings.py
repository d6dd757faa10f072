"""Configuration schema of the MQTT binder: binder settings and binding options.

Imports no MQTT client: the plugin validates configuration without paho installed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from binder.errors import ConfigError
from binder.schema import Option, positive, validate_section
from binder.spi import Direction
from binders.mqtt.urls import check_urls, parse_urls

__all__ = [
    "CONSUMER_OPTIONS",
    "PRODUCER_OPTIONS",
    "SETTINGS",
    "TLS_OPTIONS",
    "ConnectionSettings",
    "validate_binding_options",
    "validate_settings",
]

MQTT5 = "5"
MQTT311 = "3.1.1"


def _protocol(value: Any) -> str:
    text = str(value).strip()
    if text in {"5", "5.0", "mqttv5", "MQTTv5"}:
        return MQTT5
    if text in {"3.1.1", "311", "mqttv311", "MQTTv311"}:
        return MQTT311
    raise ValueError(f"must be 5 or 3.1.1, got {value!r}")


def _qos(value: Any) -> int:
    if value not in (0, 1):
        raise ValueError(
            f"must be 0 or 1, got {value!r} (QoS 2 is not supported: with manual "
            "acknowledgement it cannot give at-least-once after a crash)"
        )
    return int(value)


def _port(value: Any) -> int:
    if not 0 < value < 65536:
        raise ValueError(f"must be a TCP port (1-65535), got {value!r}")
    return int(value)


def _receive_maximum(value: Any) -> int:
    if not 0 < value < 65536:
        raise ValueError(f"must be between 1 and 65535, got {value!r}")
    return int(value)


def _tls(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    return validate_section(value, TLS_OPTIONS, prefix="tls")


def _will(value: Any) -> dict[str, Any]:
    will = validate_section(value, WILL_OPTIONS, prefix="will")
    if any(c in will["topic"] for c in "+#"):
        raise ValueError("will.topic must not contain wildcards")
    return will


TLS_OPTIONS: dict[str, Option] = {
    "ca_certs": Option(str, None, help="CA bundle; default: the system's trusted CAs"),
    "certfile": Option(str, None, help="client certificate (PEM)"),
    "keyfile": Option(str, None, help="client private key (PEM)"),
    "insecure": Option(bool, False, help="skip host name verification (tests only)"),
}

WILL_OPTIONS: dict[str, Option] = {
    "topic": Option(str, help="where the broker publishes the Last Will"),
    "payload": Option(str, "", help="the Last Will payload (text)"),
    "qos": Option(int, 1, check=_qos),
    "retain": Option(bool, False),
}

#: ``binders.<name>`` of type mqtt (without ``type``, which the core handles).
SETTINGS: dict[str, Option] = {
    "url": Option(
        (str, list),
        None,
        check=check_urls,
        secret=True,
        help="mqtt://user:pass@host:port or mqtts://...; a list (or a comma-separated "
        "string) is tried in turn from the first, for failover",
    ),
    "host": Option(str, "127.0.0.1", help="broker host (ignored when url is set)"),
    "port": Option(int, None, check=_port, help="broker port; default 1883, 8883 with TLS"),
    "protocol": Option((str, int, float), MQTT5, check=_protocol, help="5 or 3.1.1"),
    "client_id": Option(
        str, "eventbinder", help="client id prefix; group consumers derive stable ids from it"
    ),
    "username": Option(str, None),
    "password": Option(str, None, secret=True),
    "tls": Option((bool, dict), False, check=_tls, help="true or {ca_certs, certfile, ...}"),
    "keepalive": Option(int, 60, check=positive, help="seconds between keepalive pings"),
    "connect_timeout": Option(float, 10.0, check=positive, help="seconds to wait for CONNACK"),
    "reconnect_min_delay": Option(float, 0.5, check=positive, help="first reconnect delay (s)"),
    "reconnect_max_delay": Option(float, 30.0, check=positive, help="longest reconnect delay"),
    "session_expiry": Option(
        int, 86400, check=positive, help="seconds a group consumer's session outlives it"
    ),
    "max_inflight": Option(
        int,
        None,
        check=_receive_maximum,
        help="unconfirmed QoS 1 publishes per connection (default 20); at most the "
        "broker's receive maximum (Mosquitto: max_inflight_messages)",
    ),
    "will": Option(dict, None, check=_will, help="Last Will: {topic, payload, qos, retain}"),
    "publish_timeout": Option(
        float,
        60.0,
        check=positive,
        help="seconds a QoS 1 publish waits for the broker's PUBACK (across reconnects) "
        "before it fails; the client still sends it after a reconnect",
    ),
    "max_queued": Option(
        int,
        10000,
        check=_receive_maximum,
        help="QoS 1 publishes per connection waiting for a PUBACK (in flight, or kept "
        "while disconnected); one more fails at once",
    ),
}

CONSUMER_OPTIONS: dict[str, Option] = {
    "qos": Option(int, 1, check=_qos, help="subscription QoS"),
    "receive_maximum": Option(
        int,
        None,
        check=_receive_maximum,
        help="MQTT 5 Receive Maximum: unacknowledged QoS 1 messages the broker may send "
        "(default: the binding's prefetch, which it overrides for the broker only)",
    ),
    "client_id": Option(str, None, help="explicit client id (default: derived, see docs)"),
    "session_expiry": Option(int, None, check=positive, help="overrides the binder setting"),
    "end_session_on_close": Option(
        bool, False, help="end a group consumer's session on close (MQTT 5; e.g. scaling down)"
    ),
}

PRODUCER_OPTIONS: dict[str, Option] = {
    "qos": Option(int, 1, check=_qos, help="publish QoS"),
    "retain": Option(bool, False, help="publish retained messages"),
}


def validate_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Validate a ``binders.<name>`` section of type mqtt; return it with defaults."""
    return validate_section(settings, SETTINGS)


def validate_binding_options(options: Mapping[str, Any], direction: Direction) -> dict[str, Any]:
    """Validate a binding's ``mqtt:`` section for ``direction``."""
    schema = CONSUMER_OPTIONS if direction == "consumer" else PRODUCER_OPTIONS
    return validate_section(options, schema)


@dataclass(frozen=True, slots=True)
class ConnectionSettings:
    """Where and how to connect; ``password`` is excluded from ``repr``.

    ``host`` and ``port`` name one broker: the first of ``brokers`` (every broker the
    ``url`` setting lists, tried in turn) for the binder's settings, the one being
    tried or connected to for each of :meth:`candidates`.
    """

    host: str
    port: int
    protocol: str
    client_id: str
    username: str | None
    password: str | None
    tls: bool | Mapping[str, Any]
    keepalive: int
    connect_timeout: float
    reconnect_min_delay: float
    reconnect_max_delay: float
    session_expiry: int
    max_inflight: int | None
    will: Mapping[str, Any] | None
    #: ``(host, port)`` of every broker, in the order they are tried.
    brokers: tuple[tuple[str, int], ...] = ()
    publish_timeout: float = 60.0
    max_queued: int = 10000

    def __repr__(self) -> str:
        user = f", username={self.username!r}" if self.username else ""
        where = ", ".join(self.addresses)
        return f"ConnectionSettings({where}, MQTT {self.protocol}{user})"

    @property
    def address(self) -> str:
        """``host:port``, safe to log."""
        return f"{self.host}:{self.port}"

    @property
    def addresses(self) -> tuple[str, ...]:
        """``host:port`` of every broker, in the order they are tried."""
        if not self.brokers:
            return (self.address,)
        return tuple(f"{host}:{port}" for host, port in self.brokers)

    @property
    def mqtt5(self) -> bool:
        """True when speaking MQTT 5."""
        return self.protocol == MQTT5

    def candidates(self) -> tuple[ConnectionSettings, ...]:
        """These settings once per broker, with its ``host`` and ``port``, in order."""
        if len(self.brokers) < 2:
            return (self,)
        return tuple(replace(self, host=host, port=port) for host, port in self.brokers)

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> ConnectionSettings:
        """Build from validated (or raw) binder settings, resolving ``url``.

        The URLs' credentials, when they carry any, win over ``username`` and
        ``password`` and apply to every broker; a URL without a port takes ``port``,
        else 1883 (8883 with TLS).
        """
        # Validated settings have every key; raw ones (tests, tools) are validated here.
        s = dict(settings) if SETTINGS.keys() <= settings.keys() else validate_settings(settings)
        username, password, tls = s["username"], s["password"], s["tls"]
        hosts: list[tuple[str, int | None]] = [(s["host"], s["port"])]
        if s["url"]:
            try:
                urls = parse_urls(s["url"])
            except ValueError as exc:
                raise ConfigError(str(exc), key="url") from None
            hosts = [(url.host, url.port or s["port"]) for url in urls]
            if urls[0].tls and not tls:
                tls = True
            for url in urls:
                username = url.username or username
                password = url.password or password
        default_port = 8883 if tls else 1883
        brokers = tuple((host, port or default_port) for host, port in hosts)
        return cls(
            host=brokers[0][0],
            port=brokers[0][1],
            protocol=s["protocol"],
            client_id=s["client_id"],
            username=username,
            password=password,
            tls=tls,
            keepalive=s["keepalive"],
            connect_timeout=s["connect_timeout"],
            reconnect_min_delay=s["reconnect_min_delay"],
            reconnect_max_delay=s["reconnect_max_delay"],
            session_expiry=s["session_expiry"],
            max_inflight=s["max_inflight"],
            will=s["will"],
            brokers=brokers,
            publish_timeout=s["publish_timeout"],
            max_queued=s["max_queued"],
        )
