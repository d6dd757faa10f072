"""How ``binder asyncapi`` describes an MQTT binder: servers, topics and shared
subscriptions, MQTT bindings 0.2.0."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from binder.asyncapi.addresses import host_port, parse_address, split_urls
from binder.asyncapi.protocols import (
    MQTT_BINDING,
    X509,
    Broker,
    Json,
    Server,
    tls_files,
    user_password,
)
from binder.bindings import BindingSettings


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
            security["userPassword"] = user_password("MQTT user name and password")
        if tls_files(settings.get("tls"), "certfile"):
            security["X509"] = dict(X509)
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
