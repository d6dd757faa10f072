"""Schemas of the RabbitMQ binder's settings and binding options (no kombu import)."""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from typing import Any

from binder.errors import ConfigError
from binder.schema import Option, non_negative, positive, validate_section
from binder.spi import Direction

__all__ = [
    "BINDING_OPTIONS",
    "CONSUMER_OPTIONS",
    "EXCHANGE_TYPES",
    "PRODUCER_OPTIONS",
    "SETTINGS",
    "SSL_OPTIONS",
    "SSL_SETTING_NAMES",
    "TLS_VERSIONS",
    "URL_ENV",
    "validate_binding_options",
    "validate_settings",
]

EXCHANGE_TYPES = ("topic", "direct", "fanout", "headers")
#: The ``ssl.max_version`` values (names of :class:`ssl.TLSVersion` members).
TLS_VERSIONS = ("TLSv1.2", "TLSv1.3")
#: The environment variable giving the URL when the ``url`` setting is unset.
URL_ENV = "EVENTBINDER_RABBIT_URL"


def _urls(value: Any) -> list[str]:
    urls = [value] if isinstance(value, str) else list(value)
    if not urls:
        raise ValueError("needs at least one URL")
    for url in urls:
        if not isinstance(url, str) or not url.startswith(("amqp://", "amqps://")):
            # never echo the value: it may hold a password
            raise ValueError("each URL must be a string starting with amqp:// or amqps://")
    return urls


def _routing_keys(value: Any) -> list[str]:
    keys = [value] if isinstance(value, str) else list(value)
    if not all(isinstance(k, str) for k in keys):
        raise ValueError("routing keys must be strings")
    return keys


def _routing_key_source(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        return {"fixed": value}
    if isinstance(value, Mapping) and set(value) == {"header"} and isinstance(value["header"], str):
        return {"header": value["header"]}
    if (
        isinstance(value, Mapping)
        and set(value) == {"message_key"}
        and value["message_key"] is True
    ):
        return {"message_key": True}
    raise ValueError("expected a fixed routing key string, {header: <name>} or {message_key: true}")


SSL_OPTIONS: dict[str, Option] = {
    "ca_certs": Option(
        str,
        None,
        help="CA bundle (PEM) to verify the broker's certificate; default: the "
        "system's trusted CAs",
    ),
    "certfile": Option(str, None, help="client certificate (PEM), for mutual TLS"),
    "keyfile": Option(str, None, help="client private key (PEM, unencrypted), for mutual TLS"),
    "verify": Option(bool, True, help="verify the broker's certificate and host name"),
    "server_hostname": Option(
        str, None, help="host name expected in the certificate; default: the URL's host"
    ),
    "max_version": Option(
        str,
        None,
        choices=TLS_VERSIONS,
        help="highest TLS version offered; default TLSv1.2 with a client certificate (a "
        "refused certificate is then reported as such), else TLSv1.3",
    ),
}
#: What the TLS error sentences call the settings to check (binder.tls.tls_refusal).
SSL_SETTING_NAMES = {"cafile": "ssl.ca_certs", "certfile": "ssl.certfile", "keyfile": "ssl.keyfile"}


def _readable(options: Mapping[str, Any], key: str) -> None:
    path = options[key]
    try:
        with open(path, "rb"):
            pass
    except IsADirectoryError:
        raise ConfigError(f"{path} is a folder, not a PEM file", key=f"ssl.{key}") from None
    except OSError as exc:
        reason = (exc.strerror or type(exc).__name__).lower()
        raise ConfigError(f"cannot read {path} ({reason})", key=f"ssl.{key}") from None


def _check_files(options: Mapping[str, Any]) -> None:
    """The files exist, hold PEM and the key belongs to the certificate: found out now,
    with the key's place in the configuration, not as a failed connection (which the
    runtime would retry)."""
    for key in ("ca_certs", "certfile", "keyfile"):
        if options[key]:
            _readable(options, key)
    if options["keyfile"] and not options["certfile"]:
        raise ConfigError("needs certfile (the client certificate)", key="ssl.keyfile")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if options["ca_certs"]:
        try:
            context.load_verify_locations(cafile=options["ca_certs"])
        except ssl.SSLError:
            raise ConfigError(
                f"{options['ca_certs']} holds no PEM certificate", key="ssl.ca_certs"
            ) from None
    if options["certfile"]:
        try:
            context.load_cert_chain(options["certfile"], options["keyfile"], _no_password)
        except _Encrypted:
            raise ConfigError(
                "the client key is encrypted: give an unencrypted one (py-amqp cannot "
                "take its password)",
                key="ssl.keyfile" if options["keyfile"] else "ssl.certfile",
            ) from None
        except ssl.SSLError as exc:
            if getattr(exc, "reason", None) == "KEY_VALUES_MISMATCH":
                what = "the client key (ssl.keyfile) does not belong to this certificate"
            else:
                what = (
                    "found no PEM certificate and private key (a key in the same file, or keyfile)"
                )
            raise ConfigError(what, key="ssl.certfile") from None


class _Encrypted(Exception):
    pass


def _no_password() -> bytes:
    """Asked for the password of an encrypted key: refuse (never prompt on a terminal)."""
    raise _Encrypted


def _ssl(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    options = validate_section(value, SSL_OPTIONS, prefix="ssl")
    if options["server_hostname"] and not options["verify"]:
        raise ConfigError("is checked only with verify: true", key="ssl.server_hostname")
    _check_files(options)
    return options


#: ``binders.<name>`` of type rabbit (without ``type``, which the core handles).
SETTINGS: dict[str, Option] = {
    "url": Option(
        (str, list),
        None,
        check=_urls,
        secret=True,
        help="amqp[s]://user:password@host:port/vhost, or a list tried in turn (failover); "
        "default $EVENTBINDER_RABBIT_URL or amqp://guest:guest@localhost:5672//",
    ),
    "username": Option(str, None, help="overrides the user of the URL"),
    "password": Option(str, None, secret=True, help="overrides the password of the URL"),
    "heartbeat": Option(float, 30.0, check=non_negative, help="seconds; 0 disables"),
    "connect_timeout": Option(float, 10.0, check=positive),
    "ssl": Option(
        (bool, dict),
        False,
        check=_ssl,
        help="true (the system's CAs), or a mapping of SSL_OPTIONS; amqps:// URLs turn TLS on too",
    ),
    "reconnect_initial": Option(float, 0.2, check=positive, help="first reconnect delay (s)"),
    "reconnect_max": Option(float, 10.0, check=positive, help="longest reconnect delay (s)"),
    "reconnect_multiplier": Option(float, 2.0, check=positive),
    "publish_timeout": Option(
        float, 60.0, check=positive, help="a publish not confirmed within this fails"
    ),
}

#: Options valid for both directions (topology the binding declares).
BINDING_OPTIONS: dict[str, Option] = {
    "exchange_type": Option(str, "topic", choices=EXCHANGE_TYPES),
    "declare": Option(bool, True, help="false: use a pre-existing topology as is"),
    "durable": Option(bool, True, help="durable exchange and group queues"),
    "default_exchange": Option(
        bool, False, help="no exchange: the destination is a queue, published to by name"
    ),
    "binding_routing_key": Option(
        (str, list), None, check=_routing_keys, help="default '#' (topic), destination (direct)"
    ),
    "binding_arguments": Option(dict, None, help="headers exchange match, with x-match"),
    "queue_type": Option(str, "classic", choices=("classic", "quorum")),
    "ttl": Option(int, None, check=positive, help="x-message-ttl of group queues (ms)"),
    "max_length": Option(int, None, check=positive, help="x-max-length of group queues"),
    "auto_bind_dlq": Option(
        bool,
        True,
        help="give group queues x-dead-letter arguments pointing at DLX and <queue>.dlq "
        "(Spring's autoBindDlq); the DLQ itself is declared whenever dead letters are on",
    ),
}

#: Consumers have no options of their own: the ``basic.qos`` prefetch is the binding's
#: core ``prefetch`` (the engine's window of unsettled deliveries).
CONSUMER_OPTIONS: dict[str, Option] = {**BINDING_OPTIONS}

PRODUCER_OPTIONS: dict[str, Option] = {
    **BINDING_OPTIONS,
    "routing_key": Option(
        (str, dict),
        None,
        check=_routing_key_source,
        help="fixed, {header: h} or {message_key: true}",
    ),
    "persistent": Option(bool, True, help="delivery_mode 2"),
    "confirms": Option(bool, True, help="false: publish returns once written to the socket"),
}


def validate_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Validate a ``binders.<name>`` section of type rabbit."""
    result = validate_section(settings, SETTINGS)
    if result["reconnect_max"] < result["reconnect_initial"]:
        raise ConfigError("must be at least reconnect_initial", key="reconnect_max")
    return result


def validate_binding_options(options: Mapping[str, Any], direction: Direction) -> dict[str, Any]:
    """Validate a binding's ``rabbit:`` section for ``direction``."""
    schema = CONSUMER_OPTIONS if direction == "consumer" else PRODUCER_OPTIONS
    result = validate_section(options, schema)
    args = result["binding_arguments"]
    if args is not None and result["exchange_type"] != "headers":
        raise ConfigError("only valid with exchange_type: headers", key="binding_arguments")
    if result["default_exchange"] and result["exchange_type"] != "topic":
        raise ConfigError("default_exchange excludes exchange_type", key="exchange_type")
    return result
