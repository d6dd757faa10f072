"""The in-memory binder: bindings over a :class:`MemoryBroker` owned by the binder."""

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
    Failure,
    Handler,
    ProducerSpec,
    require,
)
from binders.memory.broker import Entry, GroupQueue, MemoryBroker, delivery_copy

__all__ = ["MEMORY_CAPABILITIES", "MemoryBinder", "MemoryConsumerBinding", "MemoryProducerBinding"]

log = logging.getLogger(__name__)

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

    async def publish(self, message: Message) -> None:
        """Store a copy of ``message`` in every queue of the destination."""
        if self._closed:
            raise RuntimeError(f"producer binding {self.spec.binding!r} is closed")
        destination = self.spec.destination
        self._broker.publish(destination, delivery_copy(message, destination))

    async def close(self) -> None:
        """Idempotent; publishes are synchronous so there is nothing pending."""
        self._closed = True


class MemoryConsumerBinding:
    """``concurrency`` workers competing for one group queue."""

    def __init__(
        self,
        binder: MemoryBinder,
        spec: ConsumerSpec,
        handler: Handler,
        queue: GroupQueue,
        anonymous_id: int | None,
    ) -> None:
        self.spec = spec
        self._binder = binder
        self._handler = handler
        self._queue = queue
        self._anonymous_id = anonymous_id
        self._accepts = self._partition_filter(spec)
        if self._accepts is not None:
            queue.selective_members += 1
        self._workers = [
            asyncio.create_task(self._work(), name=f"memory:{spec.binding}:{i}")
            for i in range(spec.concurrency)
        ]
        self._closing = False
        self._closed = asyncio.Event()

    @staticmethod
    def _partition_filter(spec: ConsumerSpec) -> Any:
        if not spec.partitioned or spec.instance_count <= 1:
            return None
        index, count = spec.instance_index, spec.instance_count

        def accepts(entry: Entry) -> bool:
            partition = entry.message.partition
            return partition is None or partition % count == index

        return accepts

    async def _work(self) -> None:
        queue = self._queue
        handler = self._handler
        while not self._closing:
            entry = queue.take(self._accepts)
            if entry is None:
                await queue.wait()
                continue
            entry.deliveries += 1
            message = entry.message
            message.delivery_attempt = entry.deliveries
            try:
                await handler(message)
            except asyncio.CancelledError:
                queue.put(entry, front=True)
                raise
            except Exception:
                log.debug("handler failed on %s; redelivering", queue.name, exc_info=True)
                queue.put(entry, front=True)
                await asyncio.sleep(0)  # let other work run between redeliveries
            finally:
                queue.release(entry)

    async def dead_letter(self, message: Message, failure: Failure) -> None:
        """Store the message with the failure headers and publish it to the DLQ topic."""
        spec = self.spec
        dead = message.copy(delivery_attempt=1)
        dead.headers.update(failure.headers())
        name = (
            spec.dead_letter
            if isinstance(spec.dead_letter, str)
            else f"{spec.destination}.{spec.group or 'anonymous'}.dlq"
        )
        self._binder.broker.store_dead_letter(spec.destination, spec.group, dead)
        self._binder.broker.publish(name, dead.copy(destination=name))

    async def close(self) -> None:
        """Stop taking messages, let in-flight handlers finish, drop an anonymous queue."""
        if self._closing:
            await self._closed.wait()
            return
        self._closing = True
        self._queue.wake_all()
        await asyncio.gather(*self._workers, return_exceptions=True)
        if self._accepts is not None:
            self._queue.selective_members -= 1
        # A publish may have woken one of our workers, which left without taking it.
        self._queue.wake_all()
        if self._anonymous_id is not None:
            self._binder.broker.drop_anonymous(self.spec.destination, self._anonymous_id)
        self._binder._forget(self)
        self._closed.set()


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

    async def provision(
        self, destination: str, group: str | None, options: Mapping[str, Any]
    ) -> None:
        """Create the topic and, with a group, its durable queue."""
        self.broker.topic(destination)
        if group is not None:
            self.broker.group_queue(destination, group)

    async def bind_consumer(self, spec: ConsumerSpec, handler: Handler) -> MemoryConsumerBinding:
        """Join ``spec.group`` on ``spec.destination`` (or subscribe anonymously)."""
        if spec.partitioned:
            require(self.capabilities, "partitioning", "memory", f"binding {spec.binding}")
        anonymous_id: int | None = None
        if spec.group is None:
            anonymous_id, queue = self.broker.anonymous_queue(spec.destination)
        else:
            queue = self.broker.group_queue(spec.destination, spec.group)
        binding = MemoryConsumerBinding(self, spec, handler, queue, anonymous_id)
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
