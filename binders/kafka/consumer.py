"""Consumer bindings: fetch, dispatch per partition, commit what is done.

One ``AIOKafkaConsumer`` per binding.  A fetch loop pulls at most ``bound`` records
(``spec.prefetch``, else the ``max_poll_records`` option) into per-partition backlogs;
one worker task per partition hands them to the handler in offset order, at most
``spec.concurrency`` handler calls at once across partitions.  A partition whose
backlog is full is paused, so a slow handler never grows memory.

At-least-once: a partition's commit position only moves past a record once its handler
(and, since a partition is handled in order, every earlier record) succeeded.  Offsets
are committed every ``commit_interval`` seconds, when partitions are revoked in a
rebalance (after their in-flight handlers finished) and on close.

Kafka has no nack: when the handler raises, the partition's backlog is dropped, the
consumer seeks back to the failed record and pauses the partition for
``redelivery_delay``; the record is then fetched and delivered again with
``delivery_attempt`` increased.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import ConsumerStoppedError, IllegalStateError, KafkaError

from binder.errors import BinderError
from binder.message import Message
from binder.spi import ConsumerSpec, Failure, Handler
from binders.kafka.admin import TopicProvisioner
from binders.kafka.producer import RecordSender
from binders.kafka.records import from_record

__all__ = ["KafkaConsumerBinding", "dead_letter_topic"]

log = logging.getLogger(__name__)


def dead_letter_topic(destination: str, group: str | None) -> str:
    """The conventional dead-letter topic: ``error.<destination>.<group>``."""
    return f"error.{destination}.{group or 'anonymous'}"


@dataclass(slots=True)
class _Partition:
    """Dispatch state of one assigned partition."""

    tp: TopicPartition
    backlog: deque[Any] = field(default_factory=deque)
    current: Any = None
    current_id: str | None = None
    worker: asyncio.Task[None] | None = None
    next_offset: int | None = None
    done_offset: int | None = None
    committed_offset: int | None = None
    revoked: bool = False
    held: asyncio.TimerHandle | None = None

    @property
    def in_flight(self) -> int:
        return len(self.backlog) + (1 if self.current is not None else 0)


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, binding: KafkaConsumerBinding) -> None:
        self._binding = binding

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self._binding._on_revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: Any) -> None:
        self._binding._on_assigned(set(assigned))


class KafkaConsumerBinding:
    """A bound consumer on one topic (see the module docstring for the mechanics)."""

    def __init__(
        self,
        spec: ConsumerSpec,
        handler: Handler,
        *,
        settings: Mapping[str, Any],
        client_kwargs: Mapping[str, Any],
        producer: AIOKafkaProducer,
        sender: RecordSender,
        provisioner: TopicProvisioner,
        partitions: int,
    ) -> None:
        self.spec = spec
        self._handler = handler
        self._settings = settings
        self._producer = producer
        self._sender = sender
        self._provisioner = provisioner
        self._topic_partitions = partitions
        options = spec.options
        self.group_id = spec.group or f"anonymous.{uuid.uuid4().hex}"
        start = options.get("start_offset") or ("earliest" if spec.group else "latest")
        self._bound = spec.prefetch or int(options.get("max_poll_records") or 500)
        self._refill = max(1, self._bound // 2)
        self._redelivery_delay = float(options.get("redelivery_delay", 0.1))
        self._reset_target = options.get("reset_offsets")
        self._reset_target_once: str | float = "earliest"
        self._commit_interval = float(settings.get("commit_interval", 0.5))
        self._revoke_timeout = settings.get("max_poll_interval_ms", 300000) / 1000
        self._consumer = AIOKafkaConsumer(
            **client_kwargs,
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset=start,
            session_timeout_ms=settings.get("session_timeout_ms", 10000),
            heartbeat_interval_ms=settings.get("heartbeat_interval_ms", 500),
            max_poll_interval_ms=settings.get("max_poll_interval_ms", 300000),
            max_poll_records=self._bound,
            metadata_max_age_ms=settings.get("metadata_max_age_ms", 30000),
        )
        self._partitions: dict[TopicPartition, _Partition] = {}
        self._attempts: dict[tuple[TopicPartition, int], int] = {}
        self._concurrency = max(1, spec.concurrency)
        self._semaphore = asyncio.Semaphore(self._concurrency)
        self._space = asyncio.Event()
        self._space.set()
        self._in_flight = 0
        self._fresh: set[TopicPartition] = set()
        self._to_reset: set[TopicPartition] = set()
        self._ready = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False
        self._closed = False
        self._dlq_partitions: int | None = None

    # ------------------------------------------------------------------ lifecycle

    async def start(self, timeout: float) -> None:
        """Join the group and return once partitions are assigned and positioned."""
        await self._consumer.start()
        try:
            if self.spec.partitioned and self.spec.instance_count > 1:
                mine = [
                    TopicPartition(self.spec.destination, p)
                    for p in range(self._topic_partitions)
                    if p % self.spec.instance_count == self.spec.instance_index
                ]
                self._consumer.assign(mine)
                self._on_assigned(set(mine))
            else:
                self._consumer.subscribe([self.spec.destination], listener=_Listener(self))
            self._tasks = [
                asyncio.create_task(self._fetch_loop(), name=f"kafka-fetch-{self.spec.binding}"),
                asyncio.create_task(self._commit_loop(), name=f"kafka-commit-{self.spec.binding}"),
            ]
            ready = asyncio.create_task(self._ready.wait())
            done, _ = await asyncio.wait(
                [ready, self._tasks[0]], timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
            if ready not in done:
                ready.cancel()
                if self._tasks[0] in done:
                    self._tasks[0].result()
                raise BinderError(
                    f"Kafka consumer '{self.spec.binding}' got no partition assignment for "
                    f"topic '{self.spec.destination}' within {timeout:g}s"
                )
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Stop fetching, wait for in-flight handlers, commit, leave the group."""
        if self._closed:
            return
        self._closed = True
        self._closing = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for state in self._partitions.values():
            state.backlog.clear()
            if state.held is not None:
                state.held.cancel()
        workers = [s.worker for s in self._partitions.values() if s.worker is not None]
        if workers:
            await asyncio.wait(workers)
        await self._commit(list(self._partitions.values()))
        self._partitions.clear()
        with contextlib.suppress(Exception):
            await self._consumer.stop()

    def refresh_metadata(self) -> None:
        """Ask for fresh metadata now, so partitions added to the topic are picked up
        without waiting for ``metadata_max_age_ms``."""
        client = getattr(self._consumer, "_client", None)
        with contextlib.suppress(Exception):
            client.force_metadata_update()  # type: ignore[union-attr]

    # ---------------------------------------------------------------- rebalance

    def _on_assigned(self, assigned: set[TopicPartition]) -> None:
        for tp in assigned:
            if tp not in self._partitions:
                self._partitions[tp] = _Partition(tp)
        if self._reset_target is not None:
            self._to_reset |= assigned
            self._reset_target_once = self._reset_target
            self._reset_target = None
        self._fresh |= assigned
        self._space.set()  # wake the fetch loop to position the new partitions
        if not assigned:
            self._ready.set()

    async def _on_revoked(self, revoked: set[TopicPartition]) -> None:
        states = [self._partitions[tp] for tp in revoked if tp in self._partitions]
        for state in states:
            state.revoked = True
            self._drop_backlog(state)
            if state.held is not None:
                state.held.cancel()
        workers = [s.worker for s in states if s.worker is not None and not s.worker.done()]
        if workers:
            _, pending = await asyncio.wait(workers, timeout=self._revoke_timeout)
            if pending:
                log.warning(
                    "%d handler(s) of %s still running after revocation; their records "
                    "will be delivered again",
                    len(pending),
                    self.spec.binding,
                )
        await self._commit(states)
        for state in states:
            self._partitions.pop(state.tp, None)
            self._fresh.discard(state.tp)
            self._to_reset.discard(state.tp)
        self._attempts = {k: v for k, v in self._attempts.items() if k[0] not in revoked}

    async def _prepare_fresh(self) -> None:
        """Apply a pending replay seek and resolve positions of newly assigned partitions."""
        fresh, self._fresh = self._fresh, set()
        to_reset, self._to_reset = self._to_reset & fresh, self._to_reset - fresh
        if to_reset:
            await self._seek(sorted(to_reset), self._reset_target_once)
        for tp in fresh:
            state = self._partitions.get(tp)
            if state is None:
                continue
            if state.next_offset is None or tp in to_reset:
                state.next_offset = await self._position(tp)
        self._ready.set()

    async def _position(self, tp: TopicPartition) -> int | None:
        # position() can wait a full request timeout on a stale future when the first
        # offset lookup of a just-created topic fails (NotLeaderForPartition), so ask
        # again in short rounds.
        while not self._closing:
            try:
                return await asyncio.wait_for(self._consumer.position(tp), 0.5)
            except TimeoutError:
                continue
            except IllegalStateError:
                return None
        return None

    async def _seek(self, tps: list[TopicPartition], target: str | float) -> None:
        if target == "earliest":
            offsets = await self._consumer.beginning_offsets(tps)
        elif target == "latest":
            offsets = await self._consumer.end_offsets(tps)
        else:
            millis = int(float(target) * 1000)
            found = await self._consumer.offsets_for_times(dict.fromkeys(tps, millis))
            ends = await self._consumer.end_offsets(tps)
            offsets = {tp: found[tp].offset if found[tp] else ends[tp] for tp in tps}
        for tp, offset in offsets.items():
            self._consumer.seek(tp, offset)
        log.info("replay: %s seeks %s to %s", self.spec.binding, self.spec.destination, offsets)

    # ------------------------------------------------------------------ fetching

    def _partition_cap(self) -> int:
        # With several partitions one slow partition may hold half the bound, so the
        # others keep flowing; a lone partition may use all of it.
        return self._bound if len(self._partitions) <= 1 else self._refill

    async def _fetch_loop(self) -> None:
        while not self._closing:
            if self._fresh:
                await self._prepare_fresh()
            cap = self._partition_cap()
            eligible = [
                tp
                for tp, state in self._partitions.items()
                if state.held is None and len(state.backlog) < cap
            ]
            if self._in_flight > self._bound - self._refill or (self._partitions and not eligible):
                # Wait for handlers to make room (hysteresis: fetch in sizeable batches).
                self._space.clear()
                await self._space.wait()
                continue
            # Only partitions below their cap are read; the others' fetched data stays
            # in aiokafka's (bounded) buffer instead of being paused and dropped.
            only = eligible if len(eligible) < len(self._partitions) else ()
            try:
                batch = await self._consumer.getmany(
                    *only, timeout_ms=100, max_records=self._bound - self._in_flight
                )
            except ConsumerStoppedError:
                return
            except KafkaError as exc:
                log.warning("Kafka fetch for %s failed: %s; retrying", self.spec.binding, exc)
                await asyncio.sleep(0.5)
                continue
            for tp, records in batch.items():
                self._distribute(tp, records)

    def _distribute(self, tp: TopicPartition, records: list[Any]) -> None:
        state = self._partitions.get(tp)
        if state is None or state.revoked or tp in self._to_reset:
            return  # a partition about to be replayed is sought before it is read
        for record in records:
            if state.next_offset is not None and record.offset < state.next_offset:
                continue
            state.backlog.append(record)
            state.next_offset = record.offset + 1
            self._in_flight += 1
        if state.backlog and (state.worker is None or state.worker.done()):
            state.worker = asyncio.create_task(self._work(state))

    def _release(self, count: int, state: _Partition | None = None) -> None:
        self._in_flight -= count
        if self._in_flight <= self._bound - self._refill or (
            state is not None and len(state.backlog) == self._partition_cap() - 1
        ):
            self._space.set()

    def _drop_backlog(self, state: _Partition) -> None:
        dropped = len(state.backlog)
        state.backlog.clear()
        self._release(dropped)

    # ----------------------------------------------------------------- dispatch

    async def _work(self, state: _Partition) -> None:
        handler = self._handler
        while state.backlog and not state.revoked and not self._closing:
            record = state.backlog.popleft()
            state.current = record
            key = (state.tp, record.offset)
            attempt = self._attempts.get(key, 0) + 1 if self._attempts else 1
            try:
                message = from_record(record, attempt)
                state.current_id = message.message_id
                if len(self._partitions) > self._concurrency:
                    async with self._semaphore:
                        await handler(message)
                else:
                    # One handler per partition at a time already keeps within the limit.
                    await handler(message)
            except Exception as exc:
                self._attempts[key] = attempt
                log.warning(
                    "handler of %s failed on %s[%d]@%d (attempt %d): %s; delivering it again",
                    self.spec.binding,
                    record.topic,
                    record.partition,
                    record.offset,
                    attempt,
                    exc,
                )
                self._redeliver(state, record.offset)
                return
            else:
                if attempt > 1:
                    self._attempts.pop(key, None)
                state.done_offset = record.offset + 1
            finally:
                state.current = state.current_id = None
                self._release(1, state)

    def _redeliver(self, state: _Partition, offset: int) -> None:
        self._drop_backlog(state)
        if state.revoked or self._closing:
            return
        try:
            self._consumer.seek(state.tp, offset)
            self._consumer.pause(state.tp)
        except IllegalStateError:
            return
        state.next_offset = offset

        def resume() -> None:
            state.held = None
            if not state.revoked and not self._closing:
                with contextlib.suppress(IllegalStateError):
                    self._consumer.resume(state.tp)
                self._space.set()

        state.held = asyncio.get_running_loop().call_later(self._redelivery_delay, resume)

    # ------------------------------------------------------------------ commits

    async def _commit_loop(self) -> None:
        while not self._closing:
            await asyncio.sleep(self._commit_interval)
            await self._commit(list(self._partitions.values()))

    async def _commit(self, states: list[_Partition]) -> None:
        offsets = {
            s.tp: s.done_offset
            for s in states
            if s.done_offset is not None and s.done_offset != s.committed_offset
        }
        if not offsets:
            return
        try:
            await self._consumer.commit(offsets)
        except (KafkaError, IllegalStateError) as exc:
            log.info("commit of %s deferred: %s", self.spec.binding, exc)
            return
        for state in states:
            if state.tp in offsets:
                state.committed_offset = offsets[state.tp]

    async def wait_committed(self, timeout: float = 10.0) -> None:
        """Wait until every finished record is committed (for tests and shutdown)."""
        deadline = time.monotonic() + timeout
        while any(
            s.done_offset is not None and s.done_offset != s.committed_offset
            for s in self._partitions.values()
        ):
            if time.monotonic() > deadline:
                raise TimeoutError(f"offsets of {self.spec.binding} not committed in time")
            await asyncio.sleep(0.05)

    # -------------------------------------------------------------- dead letters

    def dead_letter_destination(self) -> str:
        """The topic this binding's dead letters go to."""
        target = self.spec.dead_letter
        if isinstance(target, str):
            return target
        return dead_letter_topic(self.spec.destination, self.spec.group)

    async def dead_letter(self, message: Message, failure: Failure) -> None:
        """Publish ``message`` with the failure headers; return once acknowledged."""
        if self.spec.dead_letter is False:
            raise BinderError(f"binding '{self.spec.binding}' has dead letters disabled")
        topic = self.dead_letter_destination()
        if self._dlq_partitions is None:
            plan = self._provisioner.plan(
                topic, {}, self._settings, partitions=self._topic_partitions
            )
            self._dlq_partitions = await self._provisioner.ensure(plan)
        origin = (message.destination or self.spec.destination, message.partition or 0, -1)
        if message.destination is not None and message.partition is not None:
            state = self._partitions.get(TopicPartition(message.destination, message.partition))
            if state is not None and state.current_id == message.message_id:
                record = state.current
                origin = (record.topic, record.partition, record.offset)
        headers = failure.headers()
        headers.update(
            {
                "x-original-topic": origin[0],
                "x-original-partition": str(origin[1]),
                "x-original-offset": str(origin[2]) if origin[2] >= 0 else "",
            }
        )
        # Same partition as the original when the dead-letter topic has it (Spring's
        # convention), else Kafka's key partitioner.
        partition = origin[1] if origin[1] < self._dlq_partitions else None
        await self._sender.send(topic, message.copy(partition=partition), headers)
