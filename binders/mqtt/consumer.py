"""MQTT consumer binding: one connection per binding, manual acks, bounded dispatch."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable

import paho.mqtt.client as mqtt

from binder.errors import BinderError
from binder.message import Message
from binder.spi import ConsumerSpec, Failure, Handler
from binders.mqtt.connection import MqttConnection
from binders.mqtt.handoff import Intake
from binders.mqtt.wire import from_mqtt

__all__ = ["MqttConsumerBinding"]

log = logging.getLogger(__name__)

_Item = tuple[Message, int, int, int]  # message, packet id, QoS, connection epoch
DeadLetterPublisher = Callable[[str, Message], Awaitable[None]]


class MqttConsumerBinding:
    """Delivers one subscription's messages to a handler.

    ``concurrency`` workers run the handler.  With one worker messages are handled
    strictly in arrival order; with more, messages with the same key go to the same
    worker (in arrival order) and messages without a key to whichever worker is free.
    A message is acknowledged (PUBACK) only after its handler returned.  MQTT has no
    negative acknowledgement: when the handler raises (the core's retries and
    dead-lettering are already exhausted), the failure is logged and the message
    acknowledged so the stream goes on.
    """

    def __init__(
        self,
        spec: ConsumerSpec,
        handler: Handler,
        *,
        max_in_flight: int,
        qos: int,
        dead_letter_topic: str | None,
        publish_dead_letter: DeadLetterPublisher,
        on_closed: Callable[[MqttConsumerBinding], None],
        end_session_on_close: bool = False,
    ) -> None:
        self.spec = spec
        self.qos = qos
        self.dead_letter_topic = dead_letter_topic
        self.connection: MqttConnection | None = None
        self._handler = handler
        self._publish_dead_letter = publish_dead_letter
        self._on_closed = on_closed
        self._end_session_on_close = end_session_on_close
        self._loop = asyncio.get_running_loop()
        self._intake = Intake(max_in_flight, self._pause_reading, self._resume_reading)
        #: Messages handed to this binding and not finished yet (at most max_in_flight).
        self.in_flight = 0
        self._closing = False
        self._closed = asyncio.Event()
        # Workers, not a task per message: keyed messages (and all of them with
        # concurrency 1) go to a worker's own lane, which keeps their order.
        count = self._workers_count = spec.concurrency
        self._lanes: list[deque[_Item]] = [deque() for _ in range(count)]
        self._shared: deque[_Item] = deque()
        self._wakeups = [asyncio.Event() for _ in range(count)]
        self._idle: set[int] = set()
        self._tasks = [
            self._loop.create_task(self._work(i), name=f"mqtt:{spec.binding}:{i}")
            for i in range(count)
        ]

    def __repr__(self) -> str:
        return f"<MqttConsumerBinding {self.spec.binding} {self.spec.destination!r}>"

    # -- paho callback (event loop thread) ---------------------------------------------

    def on_mqtt_message(self, msg: mqtt.MQTTMessage) -> None:
        """paho's on_message: decode and queue for the workers (never blocks)."""
        if self._closing:
            return  # not acknowledged: a persistent session redelivers it
        try:
            message = from_mqtt(msg)
        except Exception:  # a topic that is not UTF-8, say: never drop silently
            log.exception("%r cannot read a message (mid %s); acknowledging it", self, msg.mid)
            if self.connection is not None:
                self.connection.ack(msg.mid, msg.qos, self.connection.epoch)
            return
        epoch = self.connection.epoch if self.connection is not None else 0
        self._intake.take()
        self._dispatch((message, msg.mid, msg.qos, epoch))

    def _pause_reading(self) -> None:
        if self.connection is not None:
            self.connection.pause_reading()

    def _resume_reading(self) -> None:
        if self.connection is not None:
            self.connection.resume_reading()

    # -- workers ----------------------------------------------------------------------

    def _dispatch(self, item: _Item) -> None:
        self.in_flight += 1
        key = item[0].key
        if self._workers_count == 1 or key is not None:
            index = 0 if self._workers_count == 1 else hash(key) % self._workers_count
            self._lanes[index].append(item)
            if index in self._idle:
                self._idle.discard(index)
                self._wakeups[index].set()
        else:
            self._shared.append(item)
            if self._idle:
                self._wakeups[self._idle.pop()].set()

    async def _work(self, index: int) -> None:
        """One of ``concurrency`` workers: its own lane (keyed messages) first."""
        lane, shared, wakeup = self._lanes[index], self._shared, self._wakeups[index]
        while True:
            if lane:
                item = lane.popleft()
            elif shared:
                item = shared.popleft()
            elif self._closing:
                return
            else:
                self._idle.add(index)
                wakeup.clear()
                await wakeup.wait()
                continue
            try:
                await self._process(item)
            except Exception:  # never lose a worker (and with it a lane's messages)
                log.exception("%r: unexpected error while processing a message", self)

    async def _process(self, item: _Item) -> None:
        message, mid, qos, epoch = item
        try:
            try:
                await self._handler(message)
            except Exception as exc:
                log.error(
                    "%r: handler failed on message %s from %r and MQTT cannot redeliver "
                    "it; acknowledging (%s: %s)",
                    self,
                    message.message_id,
                    message.destination,
                    type(exc).__name__,
                    exc,
                )
            if self.connection is not None:
                self.connection.ack(mid, qos, epoch)
        finally:
            self.in_flight -= 1
            self._intake.release()

    async def dead_letter(self, message: Message, failure: Failure) -> None:
        """Publish a copy with the failure in user properties; return once PUBACKed."""
        if self.dead_letter_topic is None:
            raise BinderError(f"binding {self.spec.binding!r} has dead-lettering disabled")
        dead = message.copy(delivery_attempt=1, destination=self.dead_letter_topic)
        dead.headers.update(failure.headers())
        dead.headers["x-original-topic"] = message.destination or self.spec.destination
        await self._publish_dead_letter(self.dead_letter_topic, dead)

    async def close(self) -> None:
        """Stop taking messages, finish in-flight handlers, disconnect (keeps a session)."""
        if self._closing:
            await self._closed.wait()
            return
        self._closing = True
        for lane in (*self._lanes, self._shared):
            for _ in range(len(lane)):  # fetched, not started: the session redelivers
                lane.popleft()
                self.in_flight -= 1
                self._intake.release()
        for wakeup in self._wakeups:
            wakeup.set()
        try:
            await asyncio.gather(*self._tasks, return_exceptions=True)
            if self.connection is not None:
                await self.connection.close(end_session=self._end_session_on_close)
        finally:
            self._on_closed(self)
            self._closed.set()
