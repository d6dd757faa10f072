"""What the AsyncAPI document says about a binder type's broker.

A binder type describes its broker with an optional ``asyncapi()`` method returning a
:class:`Broker` (the built-in binders do: ``binders/<type>/asyncapi.py``); a type
without one gets :class:`UnknownBroker`.  A broker reads only the settings it names
(hosts, ports, TLS, protocol versions, options of bindings): never a password, a token
or a user name, and a URL only through :func:`~binder.asyncapi.addresses.parse_address`,
which cuts its user info off first.

AsyncAPI bindings used: AMQP 0.3.0 (channel: exchange or queue; operation: ``ack``,
``deliveryMode``), Kafka 0.5.0 (channel: ``topic``, ``partitions``, ``replicas``;
operation: ``groupId``), MQTT 0.2.0 (server: ``keepAlive``, ``lastWill``; operation:
``qos``, ``retain``).  MQTT has no channel binding.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from binder.bindings import BindingSettings

__all__ = [
    "AMQP_BINDING",
    "KAFKA_BINDING",
    "MQTT_BINDING",
    "X509",
    "Broker",
    "Json",
    "Server",
    "UnknownBroker",
    "broker_for",
    "tls_files",
    "user_password",
]

AMQP_BINDING = "0.3.0"
KAFKA_BINDING = "0.5.0"
MQTT_BINDING = "0.2.0"

Json = dict[str, Any]


@dataclass
class Server:
    """An AsyncAPI Server Object and the security schemes it names.

    ``security`` maps a scheme's short name (``userPassword``) to its Security Scheme
    Object; the document stores them as components and refers to them from the server.
    """

    server: Json
    security: dict[str, Json] = field(default_factory=dict)


def tls_files(value: Any, key: str) -> bool:
    """A TLS setting (``true`` or a mapping) naming a client certificate in ``key``."""
    return isinstance(value, Mapping) and bool(value.get(key))


def user_password(what: str) -> Json:
    return {"type": "userPassword", "description": f"{what} (not shown here)"}


X509: Json = {"type": "X509", "description": "TLS client certificate"}


class Broker:
    """How one binder type's servers, channels and operations are described.

    The base class describes nothing broker-specific; subclasses override what their
    broker has.
    """

    type_name: ClassVar[str] = ""

    def server(self, name: str, settings: Mapping[str, Any]) -> Server:
        """The server of the binder ``name`` with these (validated) settings."""
        raise NotImplementedError

    def channel_bindings(
        self, destination: str, bindings: Sequence[BindingSettings], settings: Mapping[str, Any]
    ) -> Json | None:
        """The channel bindings of ``destination`` used by ``bindings`` (at least one)."""
        return None

    def operation_bindings(self, binding: BindingSettings) -> Json | None:
        """The operation bindings of one binding."""
        return None

    def subscription(self, binding: BindingSettings) -> str | None:
        """How a consumer binding's group (or its absence) shows on the broker: a
        phrase such as "the group's durable queue `orders.pricing`", or None."""
        return None


class UnknownBroker(Broker):
    """A binder type eventbinder does not ship: its server is named, not described."""

    def __init__(self, type_name: str) -> None:
        self.unknown_type = type_name

    def server(self, name: str, settings: Mapping[str, Any]) -> Server:
        """A placeholder server naming the binder type."""
        return Server(
            {
                "host": "unknown",
                "protocol": self.unknown_type,
                "title": f"{name} ({self.unknown_type})",
                "description": (
                    f"Binder `{name}` of type `{self.unknown_type}`, which `binder asyncapi` "
                    "does not know how to describe: its address is not shown."
                ),
            }
        )


def broker_for(binder_type: object, type_name: str) -> Broker:
    """The :class:`Broker` a binder type describes itself with (its optional
    ``asyncapi()`` method), else an :class:`UnknownBroker` naming ``type_name``."""
    describe = getattr(binder_type, "asyncapi", None)
    if callable(describe):
        broker = describe()
        if isinstance(broker, Broker):
            return broker
    return UnknownBroker(type_name)
