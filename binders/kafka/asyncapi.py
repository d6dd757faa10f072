"""How ``binder asyncapi`` describes a Kafka binder: servers, topics and consumer
groups, Kafka bindings 0.5.0."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from binder.asyncapi.addresses import parse_address, split_list
from binder.asyncapi.protocols import KAFKA_BINDING, X509, Broker, Json, Server
from binder.bindings import BindingSettings


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
            security["X509"] = dict(X509)
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
