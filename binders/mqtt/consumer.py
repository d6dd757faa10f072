"""MQTT consumer binding: one connection per binding, manual acks, a bounded intake.

The binding only moves bytes: each received PUBLISH becomes an :class:`MqttDelivery`
handed to the core's delivery engine (the sink), which runs the handler, publishes
its output and settles the delivery: ``ack`` sends the PUBACK.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import paho.mqtt.client as mqtt

from binder.errors import BinderError, describe_error
from binder.message import Message
from binder.spi import ConsumerSpec, Delivery, DeliverySink, Failure
from binders.mqtt.connection import MqttConnection
from binders.mqtt.handoff import Intake
from binders.mqtt.mapping import from_mqtt

__all__ = ["MqttConsumerBinding", "MqttDelivery"]

log = logging.getLogger(__name__)

DeadLetterPublisher = Callable[[str, Message], Awaitable[None]]


class MqttDelivery(Delivery):
    """A received PUBLISH: its packet id, QoS and the connection epoch it came on.

    ``lane`` is the message key: MQTT orders nothing across a shared subscription,
    but within one binding a key's messages keep their arrival order.
    """

    __slots__ = ("binding", "epoch", "mid", "qos")

    def __init__(
        self, binding: MqttConsumerBinding, message: Message, mid: int, qos: int, epoch: int
    ) -> None:
        super().__init__(message, message.key)
        self.binding = binding
        self.mid = mid
        self.qos = qos
        self.epoch = epoch

    def ack(self) -> None:
        """Handled (and its output confirmed, or dead-lettered): PUBACK."""
        self.binding._settle(self, True)

    def nack(self) -> None:
        """Neither handled nor dead-lettered: MQTT cannot redeliver it, so log and PUBACK.

        Keeping it unacknowledged would hold one of the receive-maximum slots for the
        rest of the connection, and enough of them would stop the consumer.
        """
        binding = self.binding
        message = self.message
        log.error(
            "%r: message %s from %r could not be handled nor dead-lettered and MQTT "
            "cannot redeliver it; acknowledging it so the stream goes on",
            binding,
            message.message_id,
            message.destination,
        )
        binding._settle(self, True)

    def release(self) -> None:
        """Never handled (the binding is stopping): no PUBACK, the session redelivers it."""
        self.binding._settle(self, False)


class MqttConsumerBinding:
    """Hands one subscription's messages to the delivery engine.

    At most ``capacity`` messages are taken from the socket and not settled: reading
    pauses at that point (see :class:`~binders.mqtt.handoff.Intake`).  With QoS 1 and
    MQTT 5 the broker's Receive Maximum bounds them before that.
    """

    def __init__(
        self,
        spec: ConsumerSpec,
        sink: DeliverySink,
        *,
        capacity: int,
        qos: int,
        publish_dead_letter: DeadLetterPublisher,
        on_closed: Callable[[MqttConsumerBinding], None],
        end_session_on_close: bool = False,
    ) -> None:
        self.spec = spec
        self.qos = qos
        self.dead_letter_topic = spec.dead_letter
        self.connection: MqttConnection | None = None
        self._sink = sink
        self._publish_dead_letter = publish_dead_letter
        self._on_closed = on_closed
        self._end_session_on_close = end_session_on_close
        self._intake = Intake(capacity, self._pause_reading, self._resume_reading)
        self._closing = False
        self._closed = asyncio.Event()

    def __repr__(self) -> str:
        return f"<MqttConsumerBinding {self.spec.binding} {self.spec.destination!r}>"

    @property
    def in_flight(self) -> int:
        """Messages taken from the socket and not settled yet."""
        return self._intake.count

    # -- paho callback (event loop thread) ---------------------------------------------

    def on_mqtt_message(self, msg: mqtt.MQTTMessage) -> None:
        """paho's on_message: decode and hand to the engine (never blocks)."""
        connection = self.connection
        if self._closing or connection is None:
            return  # not acknowledged: a persistent session redelivers it
        try:
            message = from_mqtt(msg)
        except Exception as exc:  # a topic that is not UTF-8, say: never drop silently
            log.error(
                "%r cannot read a message (mid %s): %s; acknowledging it",
                self,
                msg.mid,
                describe_error(exc),
                exc_info=log.isEnabledFor(logging.DEBUG),
            )
            connection.ack(msg.mid, msg.qos, connection.epoch)
            return
        self._intake.take()
        self._sink.deliver(MqttDelivery(self, message, msg.mid, msg.qos, connection.epoch))

    def _settle(self, delivery: MqttDelivery, acknowledge: bool) -> None:
        """PUBACK ``delivery`` (unless released) and free its intake slot."""
        connection = self.connection
        if acknowledge and connection is not None:
            connection.ack(delivery.mid, delivery.qos, delivery.epoch)
        self._intake.release()

    def _pause_reading(self) -> None:
        if self.connection is not None:
            self.connection.pause_reading()

    def _resume_reading(self) -> None:
        if self.connection is not None:
            self.connection.resume_reading()

    # -- the engine's calls -------------------------------------------------------------

    async def dead_letter(self, delivery: Delivery, failure: Failure) -> None:
        """Publish a copy with the failure in user properties; return once PUBACKed."""
        topic = self.dead_letter_topic
        if topic is None:
            raise BinderError(f"binding {self.spec.binding!r} has dead-lettering disabled")
        message = delivery.message
        dead = message.copy(delivery_attempt=1, destination=topic)
        dead.headers.update(failure.headers())
        dead.headers["x-original-topic"] = message.destination or self.spec.destination
        await self._publish_dead_letter(topic, dead)

    async def close(self) -> None:
        """Disconnect, keeping a group's session unless ``end_session_on_close``.

        The engine has settled every delivery by now; a message arriving meanwhile is
        not acknowledged, so a persistent session redelivers it.  Idempotent.
        """
        if self._closing:
            await self._closed.wait()
            return
        self._closing = True
        try:
            if self.connection is not None:
                await self.connection.close(end_session=self._end_session_on_close)
        finally:
            self._on_closed(self)
            self._closed.set()
