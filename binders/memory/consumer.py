"""Consumer bindings of the in-memory binder: entries taken from a group queue."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from binder.spi import ConsumerSpec, Delivery, DeliverySink, Failure
from binders.memory.broker import Entry, GroupQueue, MemoryBroker

__all__ = ["MemoryConsumerBinding", "MemoryDelivery", "dead_letter_destination"]


def dead_letter_destination(destination: str, group: str | None) -> str:
    """``<destination>.<group>.dlq`` (``anonymous`` for consumers without a group)."""
    return f"{destination}.{group or 'anonymous'}.dlq"


#: What a settled delivery's slot in ``outstanding`` reads: already settled, or given
#: back to the queue when its binding closed.
_GIVEN_BACK: Any = object()


class MemoryDelivery(Delivery):
    """An entry taken from a group queue; settling gives its ordering token back."""

    __slots__ = ("entry", "outstanding", "queue")

    def __init__(
        self, entry: Entry, queue: GroupQueue, outstanding: dict[MemoryDelivery, None]
    ) -> None:
        super().__init__(entry.message, entry.token)
        self.entry = entry
        self.queue = queue
        self.outstanding = outstanding

    def ack(self) -> None:
        """Done with it for good."""
        if self.outstanding.pop(self, _GIVEN_BACK) is not _GIVEN_BACK:
            self.queue.release(self.entry)

    def nack(self) -> None:
        """Back to the head of its queue, to be delivered again."""
        if self.outstanding.pop(self, _GIVEN_BACK) is not _GIVEN_BACK:
            self.queue.put(self.entry, front=True)
            self.queue.release(self.entry)


class MemoryConsumerBinding:
    """Takes entries from one group queue into the sink, as long as it has room."""

    def __init__(
        self,
        spec: ConsumerSpec,
        sink: DeliverySink,
        *,
        broker: MemoryBroker,
        queue: GroupQueue,
        anonymous_id: int | None,
        on_closed: Callable[[MemoryConsumerBinding], None],
    ) -> None:
        self.spec = spec
        self._broker = broker
        self._on_closed = on_closed
        self._sink = sink
        self._queue = queue
        self._anonymous_id = anonymous_id
        self._accepts = self._partition_filter(spec)
        if self._accepts is not None:
            queue.selective_members += 1
        # Delivered and not settled yet, in delivery order: given back to the queue
        # when the binding closes with them (as a broker requeues a closed channel's).
        self._outstanding: dict[MemoryDelivery, None] = {}
        self._fetcher = asyncio.create_task(self._fetch(), name=f"memory:{spec.binding}")
        self._closed = False

    @staticmethod
    def _partition_filter(spec: ConsumerSpec) -> Any:
        if spec.instance_count <= 1:
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
            delivery = MemoryDelivery(entry, queue, self._outstanding)
            self._outstanding[delivery] = None
            sink.deliver(delivery)

    async def dead_letter(self, delivery: Delivery, failure: Failure) -> None:
        """Store the message with the failure headers and publish it to the DLQ topic."""
        spec = self.spec
        target = spec.dead_letter or dead_letter_destination(spec.destination, spec.group)
        dead = delivery.message.copy(delivery_attempt=1)
        dead.headers.update(failure.headers())
        self._broker.store_dead_letter(spec.destination, spec.group, dead)
        self._broker.publish(target, dead.copy(destination=target))

    async def close(self) -> None:
        """Stop taking entries and drop an anonymous queue; idempotent."""
        if self._closed:
            return
        self._closed = True
        self._fetcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._fetcher
        # Deliveries the engine never settled (its drain timed out): back to the head
        # of the queue, in their order; a late ack or nack of them changes nothing.
        unsettled = list(self._outstanding)
        self._outstanding.clear()
        for delivery in reversed(unsettled):
            self._queue.put(delivery.entry, front=True)
            self._queue.release(delivery.entry)
        if self._accepts is not None:
            self._queue.selective_members -= 1
        # A publish may have woken our fetcher, which left without taking it.
        self._queue.wake_all()
        if self._anonymous_id is not None:
            self._broker.drop_anonymous(self.spec.destination, self._anonymous_id)
        self._on_closed(self)
