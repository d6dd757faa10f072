"""What the AsyncAPI document says about each binder type's broker.

One :class:`Broker` per built-in binder type (``rabbit``, ``kafka``, ``mqtt``,
``memory``), keyed by type name in :data:`BROKERS`; any other type gets
:class:`UnknownBroker`.  The core never imports a binder, so these read the binder
types' validated settings as data.  They read only the settings they name (hosts,
ports, TLS, protocol versions, options of bindings): never a password, a token or a
user name, and a URL only through :func:`~binder.asyncapi.addresses.parse_address`,
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

from binder.asyncapi.addresses import Address, host_port, parse_address, split_list, split_urls
from binder.bindings import BindingSettings

__all__ = ["BROKERS", "Broker", "Server", "UnknownBroker", "broker_for"]

AMQP_BINDING = "0.3.0"
KAFKA_BINDING = "0.5.0"
MQTT_BINDING = "0.2.0"
#: AMQP limits exchange and queue names to 255 bytes (so does the AMQP binding schema).
_AMQP_NAME_MAX = 255

Json = dict[str, Any]


@dataclass
class Server:
    """An AsyncAPI Server Object and the security schemes it names.

    ``security`` maps a scheme's short name (``userPassword``) to its Security Scheme
    Object; the document stores them as components and refers to them from the server.
    """

    server: Json
    security: dict[str, Json] = field(default_factory=dict)


def _tls_files(value: Any, key: str) -> bool:
    """A TLS setting (``true`` or a mapping) naming a client certificate in ``key``."""
    return isinstance(value, Mapping) and bool(value.get(key))


def _user_password(what: str) -> Json:
    return {"type": "userPassword", "description": f"{what} (not shown here)"}


_X509: Json = {"type": "X509", "description": "TLS client certificate"}


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


class RabbitBroker(Broker):
    """RabbitMQ: a topic exchange per destination, a queue per group (AMQP 0-9-1)."""

    type_name = "rabbit"
    #: What the rabbit binder connects to when neither ``url`` nor the environment says.
    DEFAULT_URL = "amqp://localhost:5672//"

    def _addresses(self, settings: Mapping[str, Any]) -> list[Address]:
        urls = split_urls(settings.get("url")) or [self.DEFAULT_URL]
        return [parse_address(url) for url in urls]

    def _tls(self, settings: Mapping[str, Any]) -> bool:
        return bool(settings.get("ssl")) or self._addresses(settings)[0].scheme == "amqps"

    def vhost(self, settings: Mapping[str, Any]) -> str:
        """The virtual host of the first URL (``/`` when the URL names none)."""
        path = self._addresses(settings)[0].path
        vhost = path[1:] if path.startswith("/") else path
        return vhost or "/"

    def server(self, name: str, settings: Mapping[str, Any]) -> Server:
        """``amqp``/``amqps`` 0.9.1 at the first URL; the failover URLs in the text."""
        tls = self._tls(settings)
        port = 5671 if tls else 5672
        hosts = [address.host_port(port) for address in self._addresses(settings)]
        text = f"RabbitMQ broker of binder `{name}`, virtual host `{self.vhost(settings)}`."
        if len(hosts) > 1:
            text += f" Failover: also {', '.join(hosts[1:])}, tried in turn."
        security = {"userPassword": _user_password("AMQP user name and password")}
        if _tls_files(settings.get("ssl"), "certfile"):
            security["X509"] = dict(_X509)
        server: Json = {
            "host": hosts[0],
            "protocol": "amqps" if tls else "amqp",
            "protocolVersion": "0.9.1",
            "title": f"{name} (RabbitMQ)",
            "description": text,
        }
        return Server(server, security)

    def channel_bindings(
        self, destination: str, bindings: Sequence[BindingSettings], settings: Mapping[str, Any]
    ) -> Json | None:
        """The destination's exchange (its type, durability, virtual host), or the queue
        of that name with ``default_exchange``."""
        if len(destination.encode()) > _AMQP_NAME_MAX:
            return None
        options = bindings[0].options_for(self.type_name)
        durable = bool(options.get("durable", True))
        vhost = self.vhost(settings)
        if options.get("default_exchange"):
            queue = {"name": destination, "durable": durable, "vhost": vhost}
            return {"amqp": {"is": "queue", "queue": queue, "bindingVersion": AMQP_BINDING}}
        exchange = {
            "name": destination,
            "type": str(options.get("exchange_type") or "topic"),
            "durable": durable,
            "vhost": vhost,
        }
        return {"amqp": {"is": "routingKey", "exchange": exchange, "bindingVersion": AMQP_BINDING}}

    def operation_bindings(self, binding: BindingSettings) -> Json | None:
        """Consumers acknowledge; producers publish persistent messages unless
        ``persistent: false``."""
        if binding.direction == "consumer":
            return {"amqp": {"ack": True, "bindingVersion": AMQP_BINDING}}
        persistent = binding.options_for(self.type_name).get("persistent", True)
        return {"amqp": {"deliveryMode": 2 if persistent else 1, "bindingVersion": AMQP_BINDING}}

    def subscription(self, binding: BindingSettings) -> str | None:
        """The queue the consumer reads."""
        if binding.options_for(self.type_name).get("default_exchange"):
            return f"the queue `{binding.destination}`"
        if binding.group:
            return f"the group's durable queue `{binding.destination}.{binding.group}`"
        return (
            "an exclusive auto-delete queue of its own "
            f"(`{binding.destination}.anonymous.<id>`): every instance gets a copy"
        )


class KafkaBroker(Broker):
    """Kafka: a topic per destination, a consumer group per group."""

    type_name = "kafka"
    _SASL = {"PLAIN": "plain", "SCRAM-SHA-256": "scramSha256", "SCRAM-SHA-512": "scramSha512"}

    def server(self, name: str, settings: Mapping[str, Any]) -> Server:
        """``kafka`` (``kafka-secure`` with SSL or SASL) at the first bootstrap server."""
        servers = split_list(settings.get("bootstrap_servers")) or ["127.0.0.1:9092"]
        hosts = [parse_address(server).host_port(None) for server in servers]
        security_protocol = str(settings.get("security_protocol") or "PLAINTEXT").upper()
        text = f"Kafka cluster of binder `{name}`, security protocol {security_protocol}."
        if len(hosts) > 1:
            text += f" Bootstrap servers: {', '.join(hosts)}."
        security: dict[str, Json] = {}
        if security_protocol.startswith("SASL"):
            mechanism = str(settings.get("sasl_mechanism") or "PLAIN").upper()
            scheme = self._SASL.get(mechanism)
            if scheme is not None:
                security[scheme] = {
                    "type": scheme,
                    "description": f"SASL {mechanism} login (credentials not shown here)",
                }
        if security_protocol.endswith("SSL") and settings.get("ssl_certfile"):
            security["X509"] = dict(_X509)
        server: Json = {
            "host": hosts[0],
            "protocol": "kafka" if security_protocol == "PLAINTEXT" else "kafka-secure",
            "title": f"{name} (Kafka)",
            "description": text,
        }
        return Server(server, security)

    def channel_bindings(
        self, destination: str, bindings: Sequence[BindingSettings], settings: Mapping[str, Any]
    ) -> Json | None:
        """The topic, with the partitions and replicas a binding configures for it."""
        kafka: Json = {"topic": destination}
        options = [b.options_for(self.type_name) for b in bindings]
        partitions = [int(o["partitions"]) for o in options if o.get("partitions")]
        if partitions:  # created with at least the producers' partition_count
            kafka["partitions"] = max(*partitions, *(b.partition_count for b in bindings))
        replicas = [int(o["replication_factor"]) for o in options if o.get("replication_factor")]
        if replicas:
            kafka["replicas"] = max(replicas)
        kafka["bindingVersion"] = KAFKA_BINDING
        return {"kafka": kafka}

    def operation_bindings(self, binding: BindingSettings) -> Json | None:
        """A consumer's group as ``groupId`` (anonymous consumers: none)."""
        if binding.direction != "consumer" or not binding.group:
            return None
        group = {"type": "string", "enum": [binding.group]}
        return {"kafka": {"groupId": group, "bindingVersion": KAFKA_BINDING}}

    def subscription(self, binding: BindingSettings) -> str | None:
        """The consumer group."""
        if binding.group:
            return f"the Kafka consumer group `{binding.group}`"
        return "a consumer group id of its own, starting at the latest offset"


class MqttBroker(Broker):
    """MQTT 5 or 3.1.1: a topic per destination, a shared subscription per group."""

    type_name = "mqtt"

    def server(self, name: str, settings: Mapping[str, Any]) -> Server:
        """``mqtt``/``secure-mqtt`` at the first URL (or ``host``/``port``), with the
        protocol version, keep-alive and Last Will."""
        urls = split_urls(settings.get("url"))
        addresses = [parse_address(url) for url in urls]
        tls = bool(settings.get("tls")) or any(a.scheme in ("mqtts", "ssl") for a in addresses)
        port = settings.get("port") or (8883 if tls else 1883)
        if addresses:
            hosts = [address.host_port(port) for address in addresses]
        else:
            hosts = [host_port(str(settings.get("host") or "127.0.0.1"), port)]
        version = str(settings.get("protocol") or "5")
        text = f"MQTT {version} broker of binder `{name}`."
        if len(hosts) > 1:
            text += f" Failover: also {', '.join(hosts[1:])}, tried in turn."
        security: dict[str, Json] = {}
        credentials = bool(settings.get("username")) or any("@" in url for url in urls)
        if credentials:
            security["userPassword"] = _user_password("MQTT user name and password")
        if _tls_files(settings.get("tls"), "certfile"):
            security["X509"] = dict(_X509)
        mqtt: Json = {}
        if isinstance(settings.get("keepalive"), int):
            mqtt["keepAlive"] = settings["keepalive"]
        will = settings.get("will")
        if isinstance(will, Mapping) and will.get("topic"):
            mqtt["lastWill"] = {
                "topic": str(will["topic"]),
                "qos": int(will.get("qos", 1)),
                "retain": bool(will.get("retain", False)),
            }
        server: Json = {
            "host": hosts[0],
            "protocol": "secure-mqtt" if tls else "mqtt",
            "protocolVersion": version,
            "title": f"{name} (MQTT)",
            "description": text,
        }
        if mqtt:
            server["bindings"] = {"mqtt": {**mqtt, "bindingVersion": MQTT_BINDING}}
        return Server(server, security)

    def operation_bindings(self, binding: BindingSettings) -> Json | None:
        """QoS (and ``retain`` for producers)."""
        options = binding.options_for(self.type_name)
        mqtt: Json = {"qos": int(options.get("qos", 1))}
        if binding.direction == "producer":
            mqtt["retain"] = bool(options.get("retain", False))
        return {"mqtt": {**mqtt, "bindingVersion": MQTT_BINDING}}

    def subscription(self, binding: BindingSettings) -> str | None:
        """The (shared) subscription."""
        if binding.group:
            return f"the MQTT 5 shared subscription `$share/{binding.group}/{binding.destination}`"
        return f"a subscription of its own to `{binding.destination}`"


class MemoryBroker(Broker):
    """The in-memory binder: no network at all."""

    type_name = "memory"

    def server(self, name: str, settings: Mapping[str, Any]) -> Server:
        """A server marked as not reachable over a network (``protocol: memory``)."""
        return Server(
            {
                "host": "in-process",
                "protocol": "memory",
                "title": f"{name} (in-memory binder)",
                "description": (
                    f"eventbinder's in-memory binder `{name}`: messages stay inside the "
                    "application's process. Not a network server: nothing can connect to it."
                ),
            }
        )


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


BROKERS: Mapping[str, Broker] = {
    broker.type_name: broker
    for broker in (RabbitBroker(), KafkaBroker(), MqttBroker(), MemoryBroker())
}


def broker_for(type_name: str) -> Broker:
    """The :class:`Broker` describing binders of type ``type_name``."""
    return BROKERS.get(type_name) or UnknownBroker(type_name)
