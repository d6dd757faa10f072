"""Producer bindings: publish messages as records through the binder's shared producer."""

from __future__ import annotations

import asyncio
from collections import deque
from functools import partial
from typing import TYPE_CHECKING, Any

from binder.errors import BinderError
from binder.message import Message
from binder.spi import ProducerSpec
from binders.kafka.records import OutgoingRecord, to_record

if TYPE_CHECKING:
    from aiokafka import AIOKafkaProducer

__all__ = ["KafkaProducerBinding", "RecordSender"]


class RecordSender:
    """Appends records to the binder's producer one at a time, in publish order.

    ``AIOKafkaProducer.send`` only appends to a batch (concurrent publishes share
    batches) and returns a future the broker's acknowledgement resolves.  When a batch
    is full, aiokafka wakes every sender waiting on it at once and all but one find it
    full again; with hundreds of concurrent publishes that costs more than the
    publishing itself.  So publishes queue here and one drainer task appends them; each
    publisher waits only for its own acknowledgement.
    """

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self._producer = producer
        self._queue: deque[tuple[str, OutgoingRecord, asyncio.Future[None]]] = deque()
        self._drainer: asyncio.Task[None] | None = None

    async def send(
        self, topic: str, message: Message, extra_headers: dict[str, str] | None = None
    ) -> None:
        """Send ``message`` to ``topic``; return once the broker acknowledged it."""
        record = to_record(message, extra_headers)
        loop = asyncio.get_running_loop()
        acknowledged: asyncio.Future[None] = loop.create_future()
        self._queue.append((topic, record, acknowledged))
        if self._drainer is None or self._drainer.done():
            self._drainer = loop.create_task(self._drain(), name="kafka-record-sender")
        await acknowledged

    async def _drain(self) -> None:
        queue = self._queue
        while queue:
            topic, record, acknowledged = queue.popleft()
            if acknowledged.done():  # the publisher was cancelled
                continue
            try:
                ack = await self._producer.send(
                    topic,
                    value=record.value,
                    key=record.key,
                    partition=record.partition,
                    headers=record.headers,
                    timestamp_ms=record.timestamp_ms,
                )
            except Exception as exc:
                if not acknowledged.done():
                    acknowledged.set_exception(exc)
                continue
            ack.add_done_callback(partial(_relay, acknowledged))


def _relay(acknowledged: asyncio.Future[None], ack: asyncio.Future[Any]) -> None:
    if acknowledged.done():
        return
    if ack.cancelled():
        acknowledged.cancel()
    elif (error := ack.exception()) is not None:
        acknowledged.set_exception(error)
    else:
        acknowledged.set_result(None)


class KafkaProducerBinding:
    """A producer binding for one topic."""

    def __init__(
        self,
        spec: ProducerSpec,
        producer: AIOKafkaProducer,
        sender: RecordSender,
        partitions: int,
    ) -> None:
        self.spec = spec
        self._producer = producer
        self._sender = sender
        self._partitions = partitions
        self._closed = False

    async def publish(self, message: Message) -> None:
        """Publish ``message``; return once the broker acknowledged it."""
        if self._closed:
            raise BinderError(f"producer binding '{self.spec.binding}' is closed")
        if message.partition is not None and message.partition >= self._partitions:
            raise BinderError(
                f"partition {message.partition} does not exist: topic "
                f"'{self.spec.destination}' has {self._partitions} partition(s)"
            )
        await self._sender.send(self.spec.destination, message)

    async def close(self) -> None:
        """Stop taking publishes; the shared producer is flushed by the binder."""
        if self._closed:
            return
        self._closed = True
        await self._producer.flush()
