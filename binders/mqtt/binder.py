"""The MQTT binder: a publishing connection plus one connection per consumer binding."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import uuid
from collections.abc import Mapping
from typing import Any

import paho.mqtt.client as mqtt

from binder.errors import BinderError, ConfigError, UnsupportedFeature
from binder.message import Message
from binder.spi import Capabilities, ConsumerSpec, DeliverySink, ProducerSpec, require
from binders.mqtt import fastprops
from binders.mqtt.client_ids import ClientIdClaim, claim_client_id
from binders.mqtt.connection import MqttConnection
from binders.mqtt.consumer import MqttConsumerBinding
from binders.mqtt.mapping import to_properties
from binders.mqtt.producer import MqttProducerBinding
from binders.mqtt.settings import ConnectionSettings

__all__ = ["MqttBinder", "capabilities_for", "group_client_id"]

log = logging.getLogger(__name__)

fastprops.install()


def capabilities_for(mqtt5: bool) -> Capabilities:
    """What this binder can do; see docs/binders/mqtt.md for the reasoning."""
    return Capabilities(
        consumer_groups=True,
        anonymous_subscribers=True,
        ordering=False,
        durable=True,
        replay=False,
        native_headers=mqtt5,
        partitioning=False,
        redelivery_on_nack=False,
    )


def group_client_id(prefix: str, group: str, destination: str, instance_index: int) -> str:
    """The stable client id of a group consumer (its persistent session's name)."""
    digest = hashlib.sha1(destination.encode("utf-8")).hexdigest()[:8]
    return f"{prefix}-{group}-{digest}-{instance_index}"


def _has_wildcard(topic: str) -> bool:
    return any(level in ("+", "#") for level in topic.split("/"))


class MqttBinder:
    """Binds consumers and producers to an MQTT broker through paho-mqtt."""

    def __init__(self, name: str, settings: Mapping[str, Any]) -> None:
        self.name = name
        self.settings = ConnectionSettings.from_settings(settings)
        self.capabilities = capabilities_for(self.settings.mqtt5)
        self._publisher: MqttConnection | None = None
        self._consumers: list[MqttConsumerBinding] = []
        self._producers: list[MqttProducerBinding] = []
        self._start_lock = asyncio.Lock()
        self._closed = False

    def __repr__(self) -> str:
        return f"<MqttBinder {self.name!r} {self.settings!r}>"

    async def start(self) -> None:
        """Open the publishing connection.

        Raises :class:`~binder.errors.AccessRefused` when the broker refuses the
        client's credentials or permissions (naming the reason, never the password),
        and :class:`~binders.mqtt.connection.MqttConnectionError` when the broker
        cannot be reached, or the address closes the connection without answering
        like an MQTT broker (reported at once, not after ``connect_timeout``).
        """
        async with self._start_lock:
            if self._publisher is not None:
                return
            self._closed = False
            client_id = f"{self.settings.client_id}-pub-{uuid.uuid4().hex[:12]}"
            publisher = MqttConnection(
                self.settings,
                client_id,
                reconnect_gate=self._wait_for_group_subscriptions,
                with_will=True,
                label=f"{self.name} publisher",
            )
            await publisher.open()
            self._publisher = publisher

    async def _wait_for_group_subscriptions(self) -> None:
        """Hold the publisher's reconnect until this binder's groups re-subscribed.

        Mosquitto 2.0 forgets shared subscriptions when it restarts; a message re-sent
        (or newly published) before this binder's group consumers subscribed again
        would reach nobody.  paho re-sends unconfirmed publishes as soon as it reads
        the CONNACK, so the publisher waits before connecting at all.  Bounded by
        connect_timeout.
        """
        waits = [
            consumer.connection.ready.wait()
            for consumer in list(self._consumers)
            if consumer.connection is not None and consumer.connection.persistent
        ]
        if waits:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*waits), self.settings.connect_timeout)

    def _require_publisher(self) -> MqttConnection:
        if self._publisher is None:
            raise BinderError(f"MQTT binder {self.name!r} is not started")
        return self._publisher

    async def close(self) -> None:
        """Disconnect consumers (their engines drained them first), flush producers,
        disconnect the publisher; idempotent."""
        if self._closed:
            return
        self._closed = True
        for consumer in list(self._consumers):
            await consumer.close()
        for producer in list(self._producers):
            await producer.close()
        self._producers.clear()
        if self._publisher is not None:
            publisher, self._publisher = self._publisher, None
            await publisher.flush(timeout=10.0)
            await publisher.close()

    async def provision(
        self, destination: str, group: str | None, options: Mapping[str, Any]
    ) -> None:
        """Nothing to create: MQTT topics exist implicitly.

        A group's persistent session is created by its first consumer (see the docs).
        """
        if not destination:
            raise ConfigError("an MQTT destination (topic) cannot be empty")

    # -- consumers --------------------------------------------------------------------

    def dead_letter_destination(self, destination: str, group: str | None) -> str:
        """``<destination>/dlq``; a destination with wildcards has none (ConfigError).

        The core asks for it when a binding does not name its dead-letter topic, before
        binding.  The error names the destination and no source: the core locates it
        (configuration file, key ``bindings.<name>.dead_letter``, line).
        """
        if _has_wildcard(destination):
            raise ConfigError(
                f"destination {destination!r} has wildcards, so '<destination>/dlq' is "
                "not a topic; name the dead-letter topic explicitly (dead_letter: <topic>) "
                "or set dead_letter: false on the binding"
            )
        return f"{destination}/dlq"

    def _check_dead_letter(self, spec: ConsumerSpec, topic_filter: str) -> None:
        """Refuse at bind time a dead-letter topic (resolved by the core) MQTT cannot use."""
        topic = spec.dead_letter
        if topic is None:
            return
        if not self.settings.mqtt5:
            raise UnsupportedFeature(
                f"binding {spec.binding}: dead letters carry the error in headers and MQTT "
                "3.1.1 has none; set dead_letter: false on this binding or use protocol 5"
            )
        if _has_wildcard(topic) or mqtt.topic_matches_sub(spec.destination, topic):
            raise ConfigError(
                f"dead-letter topic {topic!r} is not a plain topic outside the subscription "
                f"{topic_filter!r}",
                key=f"bindings.{spec.binding}.dead_letter",
            )

    def _claim_client_id(self, spec: ConsumerSpec, options: Mapping[str, Any]) -> ClientIdClaim:
        if options["client_id"]:
            return ClientIdClaim(str(options["client_id"]), None)
        if spec.group is None:
            return ClientIdClaim(f"{self.settings.client_id}-{uuid.uuid4().hex[:16]}", None)
        base = group_client_id(
            self.settings.client_id, spec.group, spec.destination, spec.instance_index
        )
        # Keyed by every broker of the list (one broker: its address, as always).
        return claim_client_id(base, ",".join(self.settings.addresses))

    async def bind_consumer(self, spec: ConsumerSpec, sink: DeliverySink) -> MqttConsumerBinding:
        """Subscribe (shared for a group) on a connection of the binding's own.

        A SUBACK refusing the subscription as not authorized raises
        :class:`~binder.errors.AccessRefused` naming the topic filter.  Every received
        message goes to ``sink`` as an
        :class:`~binders.mqtt.consumer.MqttDelivery`.  The MQTT 5 Receive Maximum is
        ``spec.prefetch`` (the ``receive_maximum`` option overrides it); reading pauses
        at ``spec.prefetch`` unsettled messages.  Returns after the SUBACK, so every
        later publish reaches the binding.
        """
        publisher = self._require_publisher()
        if spec.instance_count > 1:
            require(self.capabilities, "partitioning", "mqtt", f"binding {spec.binding}")
        if not spec.destination:
            raise ConfigError("empty destination", key=f"bindings.{spec.binding}.destination")
        options = spec.options  # complete: validated by the runtime (or the caller)
        topic_filter = f"$share/{spec.group}/{spec.destination}" if spec.group else spec.destination
        self._check_dead_letter(spec, topic_filter)
        claim = self._claim_client_id(spec, options)
        client_id = claim.client_id

        def closed(binding: MqttConsumerBinding) -> None:
            claim.release()
            if binding in self._consumers:
                self._consumers.remove(binding)

        async def publish_dead_letter(topic: str, message: Message) -> None:
            future = publisher.publish(
                topic, message.payload, 1, False, to_properties(message, True)
            )
            if future is not None:
                await future

        prefetch = max(1, spec.prefetch)
        receive_maximum = min(options["receive_maximum"] or prefetch, 65535)
        binding = MqttConsumerBinding(
            spec,
            sink,
            capacity=prefetch,
            qos=options["qos"],
            publish_dead_letter=publish_dead_letter,
            on_closed=closed,
            end_session_on_close=options["end_session_on_close"],
        )
        session_expiry = options["session_expiry"] or self.settings.session_expiry
        connection = MqttConnection(
            self.settings,
            client_id,
            persistent=spec.group is not None,
            session_expiry=session_expiry,
            receive_maximum=receive_maximum,
            on_message=binding.on_mqtt_message,
            label=f"{self.name} consumer {spec.binding}",
        )
        binding.connection = connection
        try:
            await connection.open()
            await connection.subscribe(topic_filter, options["qos"], binding=spec.binding)
        except BaseException:
            await binding.close()
            raise
        self._consumers.append(binding)
        return binding

    def connections(self) -> dict[str, bool]:
        """The publisher's and each consumer binding's connection: up?"""
        found: dict[str, bool] = {}
        if self._publisher is not None:
            found[self._publisher.label] = self._publisher.connected
        for consumer in self._consumers:
            connection = consumer.connection
            if connection is not None:
                found[connection.label] = connection.connected
        return found

    def reconnects(self) -> int:
        """Connections lost and made again (the publisher's and the consumers')."""
        connections = [self._publisher] if self._publisher is not None else []
        connections += [c.connection for c in self._consumers if c.connection is not None]
        return sum(max(0, connection.epoch - 1) for connection in connections)

    # -- producers --------------------------------------------------------------------

    async def bind_producer(self, spec: ProducerSpec) -> MqttProducerBinding:
        """Return a producer publishing on the binder's connection.

        ``spec.required_groups`` (the groups the binding configures) cannot be created
        in advance on MQTT: a WARNING says so, once per such binding.
        """
        publisher = self._require_publisher()
        if spec.partition_count > 1:
            require(self.capabilities, "partitioning", "mqtt", f"binding {spec.binding}")
        if not spec.destination or _has_wildcard(spec.destination):
            raise ConfigError(
                f"cannot publish to {spec.destination!r}: a producer needs a topic "
                "without wildcards",
                key=f"bindings.{spec.binding}.destination",
            )
        if spec.required_groups:
            log.warning(
                "binding %s: required_groups %s cannot be honoured on MQTT: a group's "
                "messages are kept only once a member of the group has subscribed (its "
                "persistent session), so messages published before a group's first member "
                "subscribed reach nobody; start the group's consumers first",
                spec.binding,
                ", ".join(spec.required_groups),
            )
        options = spec.options
        producer = MqttProducerBinding(
            publisher, spec, qos=options["qos"], retain=options["retain"]
        )
        self._producers.append(producer)
        return producer
