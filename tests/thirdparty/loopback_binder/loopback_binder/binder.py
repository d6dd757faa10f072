"""The loopback binder: per-subscriber asyncio queues, all state in the binder object.

* Every anonymous subscriber of a destination has its own bounded queue; a publish
  puts a copy into each (waiting while a queue is full: backpressure, no unbounded
  buffer; a subscriber that closes releases waiting publishers).  A message published
  while nobody subscribes goes nowhere.
* A subscriber moves messages from its queue into the core's delivery engine (its
  sink) while the engine has room; the engine calls the handler.  A nacked message is
  queued again with ``delivery_attempt`` increased (redelivery on nack).
* Dead letters are kept in :attr:`LoopbackBinder.dead_letters`, oldest first.
* No consumer groups, no partitions, no ordering guarantee beyond ``concurrency=1``:
  declared false in :data:`CAPABILITIES`, and a binding asking for them is refused
  with :class:`binder.errors.UnsupportedFeature`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import Any

from binder.message import Message
from binder.spi import (
    Capabilities,
    ConsumerSpec,
    Delivery,
    DeliverySink,
    Failure,
    ProducerSpec,
    require,
)

__all__ = [
    "CAPABILITIES",
    "LoopbackBinder",
    "LoopbackConsumer",
    "LoopbackDelivery",
    "LoopbackProducer",
]

log = logging.getLogger(__name__)

CAPABILITIES = Capabilities(
    consumer_groups=False,
    anonymous_subscribers=True,
    ordering=False,
    durable=False,
    replay=False,
    native_headers=True,
    partitioning=False,
    redelivery_on_nack=True,
)


def _copy_for(message: Message, destination: str) -> Message:
    return message.copy(delivery_attempt=1, destination=destination)


class LoopbackProducer:
    """Publishes a copy of each message into every subscriber queue of the destination."""

    def __init__(self, binder: LoopbackBinder, spec: ProducerSpec) -> None:
        self.spec = spec
        self._binder = binder
        self._closed = False

    def publish(self, message: Message) -> asyncio.Future[None]:
        """Queue ``message`` for every current subscriber; the future resolves once every
        subscriber's queue holds it (it waits while a queue is full)."""
        if self._closed:
            raise RuntimeError(f"loopback producer {self.spec.binding!r} is closed")
        return asyncio.ensure_future(self._binder.deliver(self.spec.destination, message))

    async def close(self) -> None:
        """Nothing is buffered on the producer side; idempotent."""
        self._closed = True


class LoopbackDelivery(Delivery):
    """A message taken from a subscriber's queue."""

    __slots__ = ("consumer",)

    def __init__(self, message: Message, consumer: LoopbackConsumer) -> None:
        super().__init__(message, None)  # no ordering: declared ordering=False
        self.consumer = consumer

    def ack(self) -> None:
        """Nothing to confirm in process."""

    def nack(self) -> None:
        """Queue it again, one delivery attempt further."""
        self.consumer.redeliver(self.message)

    def release(self) -> None:
        """Never handled: an anonymous subscriber's messages go with it when it closes."""


class LoopbackConsumer:
    """An anonymous subscriber: its own queue, drained into the engine while it has room."""

    def __init__(
        self, binder: LoopbackBinder, spec: ConsumerSpec, sink: DeliverySink, queue_size: int
    ) -> None:
        self.spec = spec
        self.queue: asyncio.Queue[Message] = asyncio.Queue(queue_size)
        self._binder = binder
        self._sink = sink
        self._closing = False
        self._closed = asyncio.Event()
        self._offers: set[asyncio.Future[None]] = set()
        self._fetcher = asyncio.create_task(self._fetch(), name=f"loopback:{spec.binding}")

    async def offer(self, message: Message) -> None:
        """Queue ``message``, waiting while the queue is full; give up once closed."""
        if self._closing:
            return
        try:
            self.queue.put_nowait(message)
            return
        except asyncio.QueueFull:
            pass
        put = asyncio.ensure_future(self.queue.put(message))
        closed = asyncio.ensure_future(self._closed.wait())
        try:
            await asyncio.wait({put, closed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            put.cancel()
            closed.cancel()

    def redeliver(self, message: Message) -> None:
        """Queue a nacked message again (dropped, with a warning, once closing)."""
        if self._closing:
            log.warning("%s: closing; dropping unacknowledged message", self.spec.binding)
            return
        again = message.copy(delivery_attempt=message.delivery_attempt + 1)
        task = asyncio.ensure_future(self.offer(again))
        self._offers.add(task)
        task.add_done_callback(self._offers.discard)

    async def _fetch(self) -> None:
        sink = self._sink
        while True:
            await sink.wait_for_room()
            message = await self.queue.get()
            sink.deliver(LoopbackDelivery(message, self))

    async def dead_letter(self, delivery: Delivery, failure: Failure) -> None:
        """Keep a copy with the failure headers in the binder's dead-letter list."""
        dead = delivery.message.copy(delivery_attempt=1)
        dead.headers.update(failure.headers())
        if self.spec.dead_letter is not None:
            dead.headers["x-dead-letter-destination"] = self.spec.dead_letter
        self._binder.dead_letters.append(dead)

    async def close(self) -> None:
        """Unsubscribe and stop taking messages; idempotent."""
        if not self._closing:
            self._closing = True
            self._closed.set()  # publishers waiting for queue space give up
            self._binder.unsubscribe(self)
            self._fetcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._fetcher


class LoopbackBinder:
    """One in-process "broker"; nothing is shared between instances."""

    capabilities = CAPABILITIES

    def __init__(self, name: str, settings: Mapping[str, Any]) -> None:
        self.name = name
        self.queue_size: int = settings.get("queue_size", 100)
        self.dead_letters: list[Message] = []
        self._subscribers: dict[str, list[LoopbackConsumer]] = {}
        self._producers: list[LoopbackProducer] = []
        self._started = False

    async def start(self) -> None:
        """Nothing to connect to."""
        self._started = True

    def dead_letter_destination(self, destination: str, group: str | None) -> str:
        """A name for the record: dead letters stay in :attr:`dead_letters`."""
        return f"{destination}.dlq"

    async def provision(
        self, destination: str, group: str | None, options: Mapping[str, Any]
    ) -> None:
        """Destinations need no provisioning; groups do not exist here."""
        if group is not None:
            require(self.capabilities, "consumer_groups", self.name, f"group {group!r}")
        self._subscribers.setdefault(destination, [])

    async def bind_consumer(self, spec: ConsumerSpec, sink: DeliverySink) -> LoopbackConsumer:
        """Subscribe anonymously to ``spec.destination``."""
        if spec.group is not None:
            require(
                self.capabilities,
                "consumer_groups",
                self.name,
                f"binding {spec.binding} asks for group {spec.group!r}",
            )
        if spec.instance_count > 1:
            require(self.capabilities, "partitioning", self.name, f"binding {spec.binding}")
        consumer = LoopbackConsumer(self, spec, sink, self.queue_size)
        self._subscribers.setdefault(spec.destination, []).append(consumer)
        return consumer

    async def bind_producer(self, spec: ProducerSpec) -> LoopbackProducer:
        """Return a producer for ``spec.destination``."""
        if spec.partition_count > 1:
            require(
                self.capabilities,
                "partitioning",
                self.name,
                f"binding {spec.binding} asks for partition_count={spec.partition_count}",
            )
        if spec.required_groups:
            require(
                self.capabilities,
                "consumer_groups",
                self.name,
                f"binding {spec.binding} requires groups {list(spec.required_groups)}",
            )
        producer = LoopbackProducer(self, spec)
        self._producers.append(producer)
        return producer

    async def deliver(self, destination: str, message: Message) -> None:
        """Put a copy of ``message`` into each subscriber queue of ``destination``."""
        for consumer in list(self._subscribers.get(destination, ())):
            await consumer.offer(_copy_for(message, destination))

    def unsubscribe(self, consumer: LoopbackConsumer) -> None:
        """Forget ``consumer``; its queued messages go with it (anonymous semantics)."""
        with contextlib.suppress(ValueError):
            self._subscribers.get(consumer.spec.destination, []).remove(consumer)

    async def close(self) -> None:
        """Close every consumer and producer; idempotent."""
        for consumers in list(self._subscribers.values()):
            for consumer in list(consumers):
                await consumer.close()
        for producer in self._producers:
            await producer.close()
        self._started = False
