"""Producer bindings: publish messages as records through the binder's shared producer."""

from __future__ import annotations

import asyncio
import copy
from collections import deque
from typing import TYPE_CHECKING, Any

from aiokafka.partitioner import DefaultPartitioner

from binder.errors import BinderError
from binder.message import Message
from binder.spi import ProducerSpec
from binders.kafka.mapping import OutgoingRecord, to_record

if TYPE_CHECKING:
    from aiokafka import AIOKafkaProducer
    from aiokafka.producer.message_accumulator import BatchBuilder

__all__ = ["KafkaProducerBinding", "RecordSender"]


class _Batch:
    """Records bound for one partition, acknowledged together by the broker."""

    __slots__ = ("builder", "record", "settled", "timer", "waiters")

    def __init__(self, builder: BatchBuilder | None, record: OutgoingRecord | None) -> None:
        self.builder = builder
        self.record = record  # set instead of builder for an oversized record
        self.settled = False
        self.waiters: list[asyncio.Future[None]] = []  # one per publish, in order
        self.timer: asyncio.TimerHandle | None = None

    def settle(self, error: BaseException | None) -> None:
        if self.settled:
            return
        self.settled = True
        waiters, self.waiters = self.waiters, []
        for waiter in waiters:
            if waiter.done():  # its publisher gave up waiting (cancelled)
                continue
            if error is None:
                waiter.set_result(None)
            else:
                waiter.set_exception(copy.copy(error))

    def on_ack(self, ack: asyncio.Future[Any]) -> None:
        if ack.cancelled():  # the producer stopped; not this publisher's cancellation
            self.settle(BinderError("the Kafka producer stopped before the broker acknowledged"))
        else:
            self.settle(ack.exception())


class RecordSender:
    """Builds the producer's record batches itself and hands them over in order.

    Per publish, ``AIOKafkaProducer.send`` costs a coroutine, metadata and partitioner
    calls and a future of its own, and when the partition's batch is full every
    waiting sender is woken at once to find it full again.  Instead, a publish here
    appends its record to the open batch of its partition (``create_batch``, same
    ``max_batch_size``) without suspending, and waits on that batch's shared future.
    A batch is sealed when full or ``linger_ms`` after its first record; one lane task
    per partition hands sealed batches to ``send_batch`` in order (aiokafka holds one
    pending batch per partition; the lane waits for room, so publish order is kept).
    :meth:`send` never suspends: it returns a future per record, resolved once the
    broker acknowledged the whole batch (or failed with its error), so callers can
    have many records in flight.  Records bigger than a batch go through aiokafka's
    ``send`` in the same lane, so its size checks apply to them.
    """

    def __init__(self, producer: AIOKafkaProducer, *, linger_ms: int, max_batch_size: int) -> None:
        self._producer = producer
        self._linger = linger_ms / 1000
        self._max_batch_size = max_batch_size
        self._open: dict[tuple[str, int], _Batch] = {}
        self._lanes: dict[tuple[str, int], deque[_Batch]] = {}
        self._lane_tasks: dict[tuple[str, int], asyncio.Task[None]] = {}
        self._partitioner = DefaultPartitioner()
        # Records without a key stick to one randomly chosen partition until its batch
        # is sealed (Kafka's sticky partitioner, KIP-480): fuller batches, and no
        # partitioner call per record.
        self._sticky: dict[str, int] = {}
        self._closed = False

    async def know(self, topic: str, partitions: int = 1, timeout: float = 30.0) -> None:
        """Have ``topic`` with at least ``partitions`` partitions in the producer's
        metadata before anything is sent to it (so :meth:`send` need not wait)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(await self._producer.partitions_for(topic)) < partitions:
            if loop.time() > deadline:
                raise BinderError(
                    f"the Kafka producer does not see {partitions} partition(s) of '{topic}'"
                )
            await self._producer.client.force_metadata_update()

    def send(
        self, topic: str, message: Message, extra_headers: dict[str, str] | None = None
    ) -> asyncio.Future[None]:
        """Queue ``message`` for ``topic``; the future resolves once the broker acknowledged it.

        Records go out in the order of ``send`` calls per partition.  Raises
        :class:`BinderError` at once when the sender is closed or the topic's partitions
        are unknown (call :meth:`know` first).
        """
        if self._closed:
            raise BinderError("the Kafka binder is closed")
        record = to_record(message, extra_headers)
        partition = record.partition
        if partition is None:
            if record.key is None:
                partition = self._sticky.get(topic)
            if partition is None:
                partition = self._choose_partition(topic, record.key)
                if record.key is None:
                    self._sticky[topic] = partition
        tp = (topic, partition)
        size = len(record.value) + (len(record.key) if record.key is not None else 0)
        batch = self._open.get(tp)
        if size >= self._max_batch_size:
            if batch is not None:
                self._seal(tp, batch)
            batch = _Batch(None, record)
            self._enqueue(tp, batch)
        elif batch is None or not self._append(batch, record):
            if batch is not None:
                self._seal(tp, batch)
            batch = self._start_batch(tp)
            self._append(batch, record)  # the first record always fits
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        batch.waiters.append(waiter)
        return waiter

    def _choose_partition(self, topic: str, key: bytes | None) -> int:
        cluster = self._producer.client.cluster
        partitions = cluster.partitions_for_topic(topic)
        if not partitions:
            raise BinderError(f"no metadata for Kafka topic '{topic}' (is it provisioned?)")
        if len(partitions) == 1:
            return int(next(iter(partitions)))  # what the partitioner would pick
        available = cluster.available_partitions_for_topic(topic) or ()
        return int(self._partitioner(key, sorted(partitions), list(available)))

    @staticmethod
    def _append(batch: _Batch, record: OutgoingRecord) -> bool:
        assert batch.builder is not None
        metadata = batch.builder.append(
            timestamp=record.timestamp_ms,
            key=record.key,
            value=record.value,
            headers=record.headers,
        )
        return metadata is not None

    def _start_batch(self, tp: tuple[str, int]) -> _Batch:
        loop = asyncio.get_running_loop()
        batch = _Batch(self._producer.create_batch(), None)
        self._open[tp] = batch
        batch.timer = loop.call_later(self._linger, self._seal, tp, batch)
        return batch

    def _seal(self, tp: tuple[str, int], batch: _Batch) -> None:
        if self._open.get(tp) is not batch:
            return  # already sealed
        del self._open[tp]
        if self._sticky.get(tp[0]) == tp[1]:
            del self._sticky[tp[0]]
        if batch.timer is not None:
            batch.timer.cancel()
        assert batch.builder is not None
        batch.builder.close()
        self._enqueue(tp, batch)

    def _enqueue(self, tp: tuple[str, int], batch: _Batch) -> None:
        lane = self._lanes.setdefault(tp, deque())
        lane.append(batch)
        task = self._lane_tasks.get(tp)
        if task is None or task.done():
            self._lane_tasks[tp] = asyncio.get_running_loop().create_task(
                self._run_lane(tp, lane), name=f"kafka-lane-{tp[0]}-{tp[1]}"
            )

    async def _run_lane(self, tp: tuple[str, int], lane: deque[_Batch]) -> None:
        topic, partition = tp
        try:
            while lane:
                batch = lane.popleft()
                try:
                    if batch.builder is not None:
                        ack = await self._producer.send_batch(
                            batch.builder, topic, partition=partition
                        )
                    else:
                        assert batch.record is not None
                        record = batch.record
                        ack = await self._producer.send(
                            topic,
                            value=record.value,
                            key=record.key,
                            partition=partition,
                            headers=record.headers,
                            timestamp_ms=record.timestamp_ms,
                        )
                except Exception as exc:
                    batch.settle(exc)
                    continue
                ack.add_done_callback(batch.on_ack)
        finally:
            while lane:  # cancelled: fail the rest rather than strand their publishers
                lane.popleft().settle(BinderError("Kafka producer stopped before sending"))

    async def close(self) -> None:
        """Refuse further sends, then flush."""
        self._closed = True
        await self.flush()

    async def flush(self) -> None:
        """Seal every open batch and wait until all were handed to the producer."""
        for tp, batch in list(self._open.items()):
            self._seal(tp, batch)
        tasks = [t for t in self._lane_tasks.values() if not t.done()]
        if tasks:
            await asyncio.wait(tasks)
        await self._producer.flush()


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

    def publish(self, message: Message) -> asyncio.Future[None]:
        """Queue ``message``; the future resolves once the broker acknowledged it."""
        if self._closed:
            raise BinderError(f"producer binding '{self.spec.binding}' is closed")
        if message.partition is not None and message.partition >= self._partitions:
            raise BinderError(
                f"partition {message.partition} does not exist: topic "
                f"'{self.spec.destination}' has {self._partitions} partition(s)"
            )
        return self._sender.send(self.spec.destination, message)

    async def close(self) -> None:
        """Stop taking publishes; the shared producer is flushed by the binder."""
        if self._closed:
            return
        self._closed = True
        await self._sender.flush()
