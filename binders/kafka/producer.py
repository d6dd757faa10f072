"""Producer bindings: publish messages as records through the binder's shared producer."""

from __future__ import annotations

import asyncio
import copy
import functools
import logging
from collections import deque
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from aiokafka.errors import (
    CorruptRecordException,
    InvalidTimestampError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
)
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.structs import TopicPartition

from binder.deadlines import Deadlines
from binder.errors import BinderError
from binder.message import Message
from binder.spi import ProducerSpec
from binders.kafka.errors import RecordTooLarge, kafka_reason, refusal
from binders.kafka.mapping import OutgoingRecord, to_record

if TYPE_CHECKING:
    from aiokafka import AIOKafkaProducer
    from aiokafka.producer.message_accumulator import BatchBuilder

__all__ = ["KafkaProducerBinding", "RecordSender"]

log = logging.getLogger(__name__)

#: Broker errors that reject a batch before it is written: the broker's sequence of
#: the partition did not move, so the producer's must move back (see _rewind_sequence).
_REJECTED = (
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    CorruptRecordException,
    InvalidTimestampError,
)
_TOO_LARGE = (MessageSizeTooLargeError, RecordListTooLargeError)


class _Batch:
    """Records bound for one partition, acknowledged together by the broker."""

    __slots__ = ("builder", "settled", "timer", "waiters")

    def __init__(self, builder: BatchBuilder) -> None:
        self.builder = builder
        self.settled = False
        self.waiters: list[asyncio.Future[None]] = []  # one per publish, in order
        self.timer: asyncio.TimerHandle | None = None

    def done(self) -> bool:
        return self.settled

    def settle(self, error: BaseException | None) -> None:
        if self.settled:
            return
        self.settled = True
        if self.timer is not None:
            self.timer.cancel()
        waiters, self.waiters = self.waiters, []
        for waiter in waiters:
            if waiter.done():  # its publisher gave up waiting (cancelled)
                continue
            if error is None:
                waiter.set_result(None)
            else:
                waiter.set_exception(copy.copy(error))


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
    have many records in flight.  A record bigger than a batch gets a batch of its own
    (the first record always fits), in the same lane.

    Sizes are checked here, before anything is sent: a record larger than the caller's
    ``max_request_size`` or (without compression) than its topic's
    ``max.message.bytes`` raises :class:`~binders.kafka.errors.RecordTooLarge` naming
    the setting to raise.  A batch the broker refuses anyway (compressed, or the topic
    changed) fails with the same error; the idempotent producer's sequence number of
    the partition is then moved back, since the broker never wrote the batch (else every
    later batch of the partition would fail with ``OutOfOrderSequenceNumber``).
    """

    def __init__(
        self,
        producer: AIOKafkaProducer,
        *,
        linger_ms: int,
        max_batch_size: int,
        check_topic_limits: bool = True,
        spring_header_types: bool = True,
        request_timeout_ms: int = 30000,
        delivery_timeout_ms: int = 120000,
    ) -> None:
        self._producer = producer
        self._request_timeout_ms = request_timeout_ms
        self._delivery_timeout_ms = delivery_timeout_ms
        # When sealed batches are failed unacknowledged (one timer for all of them).
        self._deadlines: Deadlines[tuple[str, int], _Batch] | None = None
        self._spring_header_types = spring_header_types
        self._linger = linger_ms / 1000
        self._max_batch_size = max_batch_size
        self._check_topic_limits = check_topic_limits
        self._limits: dict[str, int] = {}
        self._open: dict[tuple[str, int], _Batch] = {}
        self._lanes: dict[tuple[str, int], deque[_Batch]] = {}
        self._lane_tasks: dict[tuple[str, int], asyncio.Task[None]] = {}
        self._partitioner = DefaultPartitioner()
        # Records without a key stick to one randomly chosen partition until its batch
        # is sealed (Kafka's sticky partitioner, KIP-480): fuller batches, and no
        # partitioner call per record.
        self._sticky: dict[str, int] = {}
        self._closed = False

    async def know(
        self,
        topic: str,
        partitions: int = 1,
        timeout: float = 30.0,
        message_limit: int | None = None,
    ) -> None:
        """Have ``topic`` with at least ``partitions`` partitions in the producer's
        metadata before anything is sent to it (so :meth:`send` need not wait).

        ``message_limit`` is the topic's ``max.message.bytes``, when known: records
        larger than it are refused before they are sent (without compression).
        """
        if message_limit is not None:
            self._limits[topic] = message_limit
            if self._check_topic_limits and self._max_batch_size > message_limit:
                log.warning(
                    "max_batch_size (%d bytes) is larger than max.message.bytes of Kafka "
                    "topic %s (%d bytes): full batches will be refused by the broker; "
                    "lower max_batch_size or raise the topic's max.message.bytes",
                    self._max_batch_size,
                    topic,
                    message_limit,
                )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(await self._producer.partitions_for(topic)) < partitions:
            if loop.time() > deadline:
                raise BinderError(
                    f"the Kafka producer does not see {partitions} partition(s) of '{topic}'"
                )
            await self._producer.client.force_metadata_update()

    def send(
        self,
        topic: str,
        message: Message,
        extra_headers: Mapping[str, str | bytes] | None = None,
        *,
        max_request_size: int | None = None,
        binding: str | None = None,
    ) -> asyncio.Future[None]:
        """Queue ``message`` for ``topic``; the future resolves once the broker acknowledged it.

        Records go out in the order of ``send`` calls per partition.  Raises
        :class:`BinderError` at once when the sender is closed or the topic's partitions
        are unknown (call :meth:`know` first), and
        :class:`~binders.kafka.errors.RecordTooLarge` when the record is larger than
        ``max_request_size`` (the limit of producer binding ``binding``; None: no
        limit) or than the topic's ``max.message.bytes``.
        """
        if self._closed:
            raise BinderError("the Kafka binder is closed")
        record = to_record(message, extra_headers, spring_header_types=self._spring_header_types)
        estimate = DefaultRecordBatchBuilder.estimate_size_in_bytes(
            record.key, record.value, record.headers
        )
        if max_request_size is not None and estimate > max_request_size:
            raise RecordTooLarge(
                f"a record of {estimate} bytes for Kafka topic '{topic}' is larger than "
                f"max_request_size ({max_request_size} bytes) of producer binding "
                f"'{binding}': raise max_request_size in the binder's settings or in the "
                "binding's kafka: options (the topic's max.message.bytes must allow it too)"
            )
        limit = self._limits.get(topic)
        if limit is not None and estimate > limit and self._check_topic_limits:
            raise RecordTooLarge(
                f"a record of {estimate} bytes is larger than max.message.bytes of Kafka "
                f"topic '{topic}' ({limit} bytes): raise the topic's max.message.bytes "
                "(kafka: {config: {max.message.bytes: ...}} on the binding that creates "
                "it, or kafka-configs --alter for an existing topic)"
            )
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
            batch = _Batch(self._producer.create_batch())
            self._append(batch, record)  # the first record always fits
            batch.builder.close()
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
        metadata = batch.builder.append(
            timestamp=record.timestamp_ms,
            key=record.key,
            value=record.value,
            headers=record.headers,
        )
        return metadata is not None

    def _start_batch(self, tp: tuple[str, int]) -> _Batch:
        loop = asyncio.get_running_loop()
        batch = _Batch(self._producer.create_batch())
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
        batch.builder.close()
        self._enqueue(tp, batch)

    def _enqueue(self, tp: tuple[str, int], batch: _Batch) -> None:
        if self._deadlines is None:
            self._deadlines = Deadlines(
                asyncio.get_running_loop(), self._delivery_timeout_ms / 1000, self._expire
            )
        self._deadlines.add(tp, batch)
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
                if batch.settled:  # expired while it waited in the lane: never sent
                    continue
                try:
                    ack = await self._producer.send_batch(batch.builder, topic, partition=partition)
                except Exception as exc:
                    batch.settle(self._worded(tp, batch, exc))
                    continue
                ack.add_done_callback(functools.partial(self._acked, tp, batch))
        finally:
            while lane:  # cancelled: fail the rest rather than strand their publishers
                lane.popleft().settle(BinderError("Kafka producer stopped before sending"))

    def _expire(self, tp: tuple[str, int], batch: _Batch) -> None:
        """Fail the publishers of a batch the broker has not acknowledged within
        ``delivery_timeout_ms`` of being sealed. One still in its lane is never
        sent; one the producer has keeps being retried (an idempotent producer retries
        until the broker answers), so it may still be written."""
        topic, partition = tp
        batch.settle(
            BinderError(
                f"Kafka did not acknowledge a record for topic '{topic}' (partition "
                f"{partition}) within delivery_timeout_ms ({self._delivery_timeout_ms} "
                "ms); the broker may still write it"
            )
        )

    def _acked(self, tp: tuple[str, int], batch: _Batch, ack: asyncio.Future[Any]) -> None:
        if ack.cancelled():  # the producer stopped; not this publisher's cancellation
            batch.settle(BinderError("the Kafka producer stopped before the broker acknowledged"))
            return
        exc = ack.exception()
        if exc is None:
            batch.settle(None)
            return
        if isinstance(exc, _REJECTED):
            self._rewind_sequence(tp, batch.builder.record_count())
        batch.settle(self._worded(tp, batch, exc))

    def _rewind_sequence(self, tp: tuple[str, int], count: int) -> None:
        """Give back the sequence numbers of a batch the broker rejected unwritten.

        aiokafka numbers an idempotent producer's batches per partition when it sends
        them and never takes a number back; the broker expects the rejected batch's
        number next, so without this every later batch of the partition fails.
        aiokafka keeps at most one batch per partition in flight with idempotence, and
        this runs (a callback of the batch's future) before its sender drains the next
        one, so no later batch holds a number yet.
        """
        manager = getattr(self._producer, "_txn_manager", None)
        numbers = getattr(manager, "_sequence_numbers", None)
        if numbers is None or getattr(manager, "transactional_id", None) is not None:
            return
        key = TopicPartition(*tp)
        if numbers[key] >= count:
            numbers[key] -= count

    def _worded(self, tp: tuple[str, int], batch: _Batch, exc: BaseException) -> BaseException:
        """The error the batch's publishers get for ``exc``: worded, cause kept."""
        if isinstance(exc, BinderError):
            return exc
        topic, partition = tp
        error: BinderError | None
        if isinstance(exc, _TOO_LARGE):
            error = RecordTooLarge(
                f"Kafka refused a batch of {batch.builder.size()} bytes for topic "
                f"'{topic}' (partition {partition}) as too large: raise the topic's "
                "max.message.bytes (kafka: {config: {max.message.bytes: ...}} on the "
                "binding that creates it, or kafka-configs --alter) or the broker's "
                "message.max.bytes"
            )
        elif isinstance(exc, KafkaTimeoutError):
            # send_batch waited for the partition's previous batch to leave.
            error = BinderError(
                f"Kafka did not take a record for topic '{topic}' (partition {partition}) "
                f"within request_timeout_ms ({self._request_timeout_ms} ms): the "
                "partition's earlier records were still waiting for the broker; this one "
                "was not written"
            )
        else:
            error = refusal(exc, f"producing to Kafka topic '{topic}'")
        if error is None:
            error = BinderError(
                f"Kafka did not accept a record for topic '{topic}' (partition "
                f"{partition}): {kafka_reason(exc)}"
            )
        error.__cause__ = exc
        return error

    async def close(self) -> None:
        """Refuse further sends, then flush."""
        self._closed = True
        await self.flush()
        if self._deadlines is not None:
            self._deadlines.clear()

    async def flush(self) -> None:
        """Seal every open batch and wait until all were handed to the producer."""
        for tp, batch in list(self._open.items()):
            self._seal(tp, batch)
        tasks = [t for t in self._lane_tasks.values() if not t.done()]
        if tasks:
            await asyncio.wait(tasks)
        await self._producer.flush()


class KafkaProducerBinding:
    """A producer binding for one topic.

    ``max_request_size`` is the largest record it sends: the binding's
    ``max_request_size`` option, else the binder's setting.
    """

    def __init__(
        self,
        spec: ProducerSpec,
        producer: AIOKafkaProducer,
        sender: RecordSender,
        partitions: int,
        max_request_size: int,
    ) -> None:
        self.spec = spec
        self._producer = producer
        self._sender = sender
        self._partitions = partitions
        self._max_request_size = max_request_size
        self._closed = False

    def publish(self, message: Message) -> asyncio.Future[None]:
        """Queue ``message``; the future resolves once the broker acknowledged it.

        Raises :class:`~binders.kafka.errors.RecordTooLarge` at once for a record larger
        than ``max_request_size`` or the topic's ``max.message.bytes``.
        """
        if self._closed:
            raise BinderError(f"producer binding '{self.spec.binding}' is closed")
        if message.partition is not None and message.partition >= self._partitions:
            raise BinderError(
                f"partition {message.partition} does not exist: topic "
                f"'{self.spec.destination}' has {self._partitions} partition(s)"
            )
        return self._sender.send(
            self.spec.destination,
            message,
            max_request_size=self._max_request_size,
            binding=self.spec.binding,
        )

    async def close(self) -> None:
        """Stop taking publishes; the shared producer is flushed by the binder."""
        if self._closed:
            return
        self._closed = True
        await self._sender.flush()
