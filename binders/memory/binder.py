"""The in-memory binder: bindings over a :class:`MemoryBroker` owned by the binder."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from typing import Any

from binder.message import Message
from binder.spi import (
    Capabilities,
    ConsumerSpec,
    DeliverySink,
    ProducerSpec,
    require,
)
from binders.memory.broker import MemoryBroker
from binders.memory.consumer import MemoryConsumerBinding, dead_letter_destination
from binders.memory.producer import MemoryProducerBinding

__all__ = ["MEMORY_CAPABILITIES", "MemoryBinder"]


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

    def connections(self) -> dict[str, bool]:
        """No connection to lose: the broker lives in this process."""
        return {"in-process": True}

    def reconnects(self) -> int:
        """Never: there is no connection."""
        return 0

    def dead_letter_destination(self, destination: str, group: str | None) -> str:
        """``<destination>.<group>.dlq`` (``anonymous`` for consumers without a group)."""
        return dead_letter_destination(destination, group)

    async def provision(
        self, destination: str, group: str | None, options: Mapping[str, Any]
    ) -> None:
        """Create the topic and, with a group, its durable queue."""
        self.broker.topic(destination)
        if group is not None:
            self.broker.group_queue(destination, group)

    async def bind_consumer(self, spec: ConsumerSpec, sink: DeliverySink) -> MemoryConsumerBinding:
        """Join ``spec.group`` on ``spec.destination`` (or subscribe anonymously)."""
        if spec.instance_count > 1:
            require(self.capabilities, "partitioning", "memory", f"binding {spec.binding}")
        anonymous_id: int | None = None
        if spec.group is None:
            anonymous_id, queue = self.broker.anonymous_queue(spec.destination)
        else:
            queue = self.broker.group_queue(spec.destination, spec.group)
        binding = MemoryConsumerBinding(
            spec,
            sink,
            broker=self.broker,
            queue=queue,
            anonymous_id=anonymous_id,
            on_closed=self._forget,
        )
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
