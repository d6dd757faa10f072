"""The in-memory binder: bindings over a :class:`MemoryBroker` owned by the binder."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from typing import Any

from binder.errors import BinderError
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
from binders.memory.broker import Entry, GroupQueue, MemoryBroker, delivery_copy

__all__ = [
    "MEMORY_CAPABILITIES",
    "MemoryBinder",
    "MemoryConsumerBinding",
    "MemoryDelivery",
    "MemoryProducerBinding",
]


MEMORY_CAPABILITIES = Capabilities(
    consumer_groups=True,
    anonymous_subscribers=True,
    ordering=True,
    durable=False,  # group queues outlive their members, but not the process
    replay=False,
    native_headers=True,
    partitioning=True,
    redelivery_on_nack=True,
)


class MemoryProducerBinding:
    """Publishes straight into the broker's queues; nothing to flush."""

    def __init__(self, broker: MemoryBroker, spec: ProducerSpec) -> None:
        self.spec = spec
        self._broker = broker
        self._closed = False
        self._confirmed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._confirmed.set_result(None)

    def publish(self, message: Message) -> asyncio.Future[None]:
        """Store a copy of ``message`` in every queue of the destination (confirmed at once)."""
        if self._closed:
            raise BinderError(f"producer binding {self.spec.binding!r} is closed")
        destination = self.spec.destination
        self._broker.publish(destination, delivery_copy(message, destination))
        return self._confirmed

    async def close(self) -> None:
        """Idempotent; publishes are synchronous so there is nothing pending."""
        self._closed = True


class MemoryDelivery(Delivery):
    """An entry taken from a group queue; settling gives its ordering token back."""

    __slots__ = ("entry", "queue")

    def __init__(self, entry: Entry, queue: GroupQueue) -> None:
        super().__init__(entry.message, entry.token)
        self.entry = entry
        self.queue = queue

    def ack(self) -> None:
        """Done with it for good."""
        self.queue.release(self.entry)

    def nack(self) -> None:
        """Back to the head of its queue, to be delivered again."""
        self.queue.put(self.entry, front=True)
        self.queue.release(self.entry)


class MemoryConsumerBinding:
    """Takes entries from one group queue into the sink, as long as it has room."""

    def __init__(
        self,
        binder: MemoryBinder,
        spec: ConsumerSpec,
        sink: DeliverySink,
        queue: GroupQueue,
        anonymous_id: int | None,
    ) -> None:
        self.spec = spec
        self._binder = binder
        self._sink = sink
        self._queue = queue
        self._anonymous_id = anonymous_id
        self._accepts = self._partition_filter(spec)
        if self._accepts is not None:
            queue.selective_members += 1
        self._fetcher = asyncio.create_task(self._fetch(), name=f"memory:{spec.binding}")
        self._closed = False

    @staticmethod
    def _partition_filter(spec: ConsumerSpec) -> Any:
        if not spec.partitioned or spec.instance_count <= 1:
            return None
        index, count = spec.instance_index, spec.instance_count

        def accepts(entry: Entry) -> bool:
            partition = entry.message.partition
            return partition is None or partition % count == index

        return accepts

    async def _fetch(self) -> None:
        queue = self._queue
        sink = self._sink
        accepts = self._accepts
        refill = max(1, self.spec.prefetch // 4)
        while True:
            if sink.room <= 0:
                # Wait for a quarter of the window: take entries in runs, not one
                # wake-up per settled message.
                await sink.wait_for_room(refill)
                continue
            entry = queue.take(accepts)
            if entry is None:
                await queue.wait()
                continue
            entry.deliveries += 1
            if entry.deliveries > 1:  # a redelivery: its own envelope, the attempt counted
                entry.message = entry.message.copy(delivery_attempt=entry.deliveries)
            sink.deliver(MemoryDelivery(entry, queue))

    async def dead_letter(self, delivery: Delivery, failure: Failure) -> None:
        """Store the message with the failure headers and publish it to the DLQ topic."""
        spec = self.spec
        target = spec.dead_letter or self._binder.dead_letter_destination(
            spec.destination, spec.group
        )
        dead = delivery.message.copy(delivery_attempt=1)
        dead.headers.update(failure.headers())
        self._binder.broker.store_dead_letter(spec.destination, spec.group, dead)
        self._binder.broker.publish(target, dead.copy(destination=target))

    async def close(self) -> None:
        """Stop taking entries and drop an anonymous queue; idempotent."""
        if self._closed:
            return
        self._closed = True
        self._fetcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._fetcher
        if self._accepts is not None:
            self._queue.selective_members -= 1
        # A publish may have woken our fetcher, which left without taking it.
        self._queue.wake_all()
        if self._anonymous_id is not None:
            self._binder.broker.drop_anonymous(self.spec.destination, self._anonymous_id)
        self._binder._forget(self)


class MemoryBinder:
    """A binder whose broker lives in this object; see :mod:`binders.memory.broker`."""

    capabilities = MEMORY_CAPABILITIES

    def __init__(self, name: str = "memory", settings: Mapping[str, Any] | None = None) -> None:
        self.name = name
        self.settings = dict(settings or {})
        self.broker = MemoryBroker()
        self._consumers: list[MemoryConsumerBinding] = []
        self._producers: list[MemoryProducerBinding] = []
        self._started = False

    async def start(self) -> None:
        """Nothing to connect to."""
        self._started = True

    def dead_letter_destination(self, destination: str, group: str | None) -> str:
        """``<destination>.<group>.dlq`` (``anonymous`` for consumers without a group)."""
        return f"{destination}.{group or 'anonymous'}.dlq"

    async def provision(
        self, destination: str, group: str | None, options: Mapping[str, Any]
    ) -> None:
        """Create the topic and, with a group, its durable queue."""
        self.broker.topic(destination)
        if group is not None:
            self.broker.group_queue(destination, group)

    async def bind_consumer(self, spec: ConsumerSpec, sink: DeliverySink) -> MemoryConsumerBinding:
        """Join ``spec.group`` on ``spec.destination`` (or subscribe anonymously)."""
        if spec.partitioned:
            require(self.capabilities, "partitioning", "memory", f"binding {spec.binding}")
        anonymous_id: int | None = None
        if spec.group is None:
            anonymous_id, queue = self.broker.anonymous_queue(spec.destination)
        else:
            queue = self.broker.group_queue(spec.destination, spec.group)
        binding = MemoryConsumerBinding(self, spec, sink, queue, anonymous_id)
        self._consumers.append(binding)
        return binding

    async def bind_producer(self, spec: ProducerSpec) -> MemoryProducerBinding:
        """Return a producer for ``spec.destination``, provisioning its required groups."""
        self.broker.topic(spec.destination)
        for group in spec.required_groups:
            self.broker.group_queue(spec.destination, group)
        producer = MemoryProducerBinding(self.broker, spec)
        self._producers.append(producer)
        return producer

    def add_publish_listener(self, listener: Callable[[str, Message], None]) -> Callable[[], None]:
        """Call ``listener(destination, message)`` for every message published on this
        binder (outputs, dead letters, everything); return a function removing it.

        The test harness watches every destination of an in-memory app this way.
        """
        return self.broker.add_tap(listener)

    def dead_letters(self, destination: str, group: str | None = None) -> list[Message]:
        """Dead letters of ``destination``/``group`` so far, oldest first."""
        return list(self.broker.dead_letters.get((destination, group), ()))

    def _forget(self, binding: MemoryConsumerBinding) -> None:
        with contextlib.suppress(ValueError):
            self._consumers.remove(binding)

    async def close(self) -> None:
        """Close every binding; idempotent."""
        for consumer in list(self._consumers):
            await consumer.close()
        for producer in self._producers:
            await producer.close()
        self._producers.clear()
        self._started = False
