"""How ``binder asyncapi`` describes a RabbitMQ binder: AMQP 0-9-1 servers,
exchanges and queues, AMQP bindings 0.3.0."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from binder.asyncapi.addresses import Address, parse_address, split_urls
from binder.asyncapi.protocols import (
    AMQP_BINDING,
    X509,
    Broker,
    Json,
    Server,
    tls_files,
    user_password,
)
from binder.bindings import BindingSettings

#: AMQP limits exchange and queue names to 255 bytes (so does the AMQP binding schema).
_AMQP_NAME_MAX = 255


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
        security = {"userPassword": user_password("AMQP user name and password")}
        if tls_files(settings.get("ssl"), "certfile"):
            security["X509"] = dict(X509)
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
