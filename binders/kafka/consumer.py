"""Consumer bindings: fetch records into the delivery engine, commit what it settled.

One ``AIOKafkaConsumer`` per binding.  A fetch loop pulls records and hands each to the
engine (:mod:`binder.dispatch`) as a :class:`KafkaDelivery` whose lane is its
partition: the engine handles a partition's records in offset order and settles them
in that order, so a partition's commit position simply follows the acknowledgements.
At most ``spec.prefetch`` records are unsettled per binding; with several partitions
one partition may hold at most half of that, so a slow partition never starves the
others.  Partitions are never paused for space: only partitions below their cap are
read, and the others' data waits in aiokafka's bounded fetch buffer.

At-least-once: a partition's commit position moves past a record only once the engine
acknowledged it (handler returned and output confirmed, or dead-lettered) and every
earlier record.  Offsets are committed every ``commit_interval`` seconds, when
partitions are revoked in a rebalance (after the engine settled their records) and on
close.

Kafka has no nack: a nacked record (it could not even be dead-lettered) makes the
consumer seek back to it; the partition's records not started yet are discarded from
the engine, the partition is paused for ``redelivery_delay``, and the record is
fetched and delivered again with ``delivery_attempt`` increased.  Records of the
partition still in progress finish, but their acknowledgements no longer move the
commit position (they belong to an older *epoch* of the partition).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import ConsumerStoppedError, IllegalStateError, KafkaError

from binder.backoff import Backoff
from binder.errors import BinderError
from binder.message import Message
from binder.spi import ConsumerSpec, Delivery, DeliverySink, Failure
from binders.kafka.admin import TopicProvisioner
from binders.kafka.assignment import assignors, parse_strategies
from binders.kafka.dead_letters import spring_headers
from binders.kafka.errors import group_protocol_mismatch, kafka_errors, kafka_reason, refusal
from binders.kafka.mapping import from_record
from binders.kafka.producer import RecordSender

__all__ = ["KafkaConsumerBinding", "KafkaDelivery", "dead_letter_topic"]

log = logging.getLogger(__name__)

#: Waits between fetches that failed (the broker is restarting, say).
_FETCH_BACKOFF = Backoff(0.1, 2.0, 5.0)

#: Room a dead letter needs beyond its record: the failure headers (the stacktrace is
#: cut to a few kilobytes).
_DEAD_LETTER_HEADROOM = 65536


def dead_letter_topic(destination: str, group: str | None) -> str:
    """The conventional dead-letter topic: ``error.<destination>.<group>``."""
    return f"error.{destination}.{group or 'anonymous'}"


@dataclass(slots=True, eq=False)
class _Partition:
    """Fetch and commit state of one assigned partition."""

    tp: TopicPartition
    owner: KafkaConsumerBinding
    next_offset: int | None = None
    """The next offset to hand to the engine (records below it were handed already)."""
    done_offset: int | None = None
    """The commit position: every record below it was settled."""
    committed_offset: int | None = None
    start_offset: int | None = None
    """Where reading began on assignment: the position handled up to until a record
    is settled (for the lag of a consumer that has handled nothing yet)."""
    in_flight: int = 0
    """Records handed to the engine and not settled yet."""
    epoch: int = 0
    """Incremented by a seek back: older deliveries no longer move ``done_offset``."""
    revoked: bool = False
    held: asyncio.TimerHandle | None = None


class KafkaDelivery(Delivery):
    """One record in the engine; settling it moves its partition's commit position."""

    __slots__ = ("epoch", "record", "state")

    def __init__(self, message: Message, record: Any, state: _Partition) -> None:
        super().__init__(message, state.tp)
        self.record = record
        self.state = state
        self.epoch = state.epoch

    def ack(self) -> None:
        """Settled: the partition may commit past this record."""
        state = self.state
        if self.epoch == state.epoch:
            state.done_offset = self.record.offset + 1
        state.owner._settled(state)

    def nack(self) -> None:
        """Not handled nor dead-lettered: seek back and deliver it again."""
        state = self.state
        if self.epoch == state.epoch:
            state.owner._rewind(state, self.record.offset, self.message.delivery_attempt)
        state.owner._settled(state)

    def release(self) -> None:
        """Not handled (stopping, or revoked): it stays uncommitted, Kafka keeps it."""
        self.state.owner._settled(self.state)


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
        sink: DeliverySink,
        *,
        settings: Mapping[str, Any],
        client_kwargs: Mapping[str, Any],
        sender: RecordSender,
        provisioner: TopicProvisioner,
        partitions: int,
    ) -> None:
        self.spec = spec
        self._sink = sink
        self._settings = settings
        self._sender = sender
        self._provisioner = provisioner
        self._topic_partitions = partitions
        options = spec.options
        self.group_id = spec.group or f"anonymous.{uuid.uuid4().hex}"
        start = options["start_offset"] or ("earliest" if spec.group else "latest")
        self._bound = max(1, spec.prefetch)
        self._refill = max(1, self._bound // 2)
        self._max_records = int(options["max_poll_records"])
        self._redelivery_delay = float(options["redelivery_delay"])
        self._reset_target = options["reset_offsets"]
        self._reset_target_once: str | float = "earliest"
        self._commit_interval = float(settings["commit_interval"])
        self._revoke_timeout = settings["max_poll_interval_ms"] / 1000
        self._strategies = parse_strategies(
            options.get("partition_assignment_strategy")
            or settings["partition_assignment_strategy"]
        )
        self._consumer = AIOKafkaConsumer(
            **client_kwargs,
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset=start,
            session_timeout_ms=settings["session_timeout_ms"],
            heartbeat_interval_ms=settings["heartbeat_interval_ms"],
            max_poll_interval_ms=settings["max_poll_interval_ms"],
            max_poll_records=min(self._max_records, self._bound),
            metadata_max_age_ms=settings["metadata_max_age_ms"],
            max_partition_fetch_bytes=options.get("max_partition_fetch_bytes")
            or settings["max_partition_fetch_bytes"],
            fetch_max_bytes=options.get("fetch_max_bytes") or settings["fetch_max_bytes"],
            partition_assignment_strategy=assignors(self._strategies),
        )
        self._partitions: dict[TopicPartition, _Partition] = {}
        self._attempts: dict[tuple[TopicPartition, int], int] = {}
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
        self._paused = False

    def pause(self) -> None:
        """Fetch nothing more, but keep polling (with every partition paused), so the
        consumer stays in its group however long the pause lasts."""
        self._paused = True
        with contextlib.suppress(IllegalStateError):
            self._consumer.pause(*self._consumer.assignment())
        self._space.set()

    def resume(self) -> None:
        """Fetch again (partitions held back for a redelivery stay held)."""
        self._paused = False
        held = {tp for tp, state in self._partitions.items() if state.held is not None}
        with contextlib.suppress(IllegalStateError):
            self._consumer.resume(*(tp for tp in self._consumer.assignment() if tp not in held))
        self._space.set()

    def lag(self) -> dict[int, int]:
        """Per assigned partition: the high watermark of the last fetch minus the offset
        handled up to (the position commits move to; before anything was handled, where
        reading began)."""
        found: dict[int, int] = {}
        for tp, state in self._partitions.items():
            if state.revoked:
                continue
            high = self._consumer.highwater(tp)
            done = next(
                (
                    offset
                    for offset in (state.done_offset, state.committed_offset, state.start_offset)
                    if offset is not None
                ),
                None,
            )
            if high is None or done is None:
                continue
            found[tp.partition] = max(0, high - done)
        return found

    @property
    def client(self) -> Any:
        """The aiokafka client under the binding's consumer (for a connection watch)."""
        return self._consumer._client

    # ------------------------------------------------------------------ lifecycle

    async def start(self, timeout: float) -> None:
        """Join the group and return once partitions are assigned and positioned."""
        await self._consumer.start()
        try:
            if self.spec.instance_count > 1:
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
        """Stop fetching, commit what the engine settled, leave the group; idempotent."""
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
            if state.held is not None:
                state.held.cancel()
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
                self._partitions[tp] = _Partition(tp, self)
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
            if state.held is not None:
                state.held.cancel()
        if states:
            try:
                await asyncio.wait_for(
                    self._sink.revoke([s.tp for s in states]), self._revoke_timeout
                )
            except TimeoutError:
                log.warning(
                    "handler(s) of %s still running after revocation; their records will "
                    "be delivered again",
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
                state.start_offset = state.next_offset
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
        failures = 0
        while not self._closing:
            if self._fresh:
                await self._prepare_fresh()
            if self._paused:
                if not await self._poll_paused():
                    return  # the consumer stopped
                continue
            room = min(self._sink.room, self._bound - self._in_flight)
            cap = self._partition_cap()
            eligible = [
                tp
                for tp, state in self._partitions.items()
                if state.held is None and state.in_flight < cap
            ]
            if (
                room <= 0
                or self._in_flight > self._bound - self._refill
                or (self._partitions and not eligible)
            ):
                # Wait for the engine to settle (hysteresis: fetch in sizeable batches).
                self._space.clear()
                await self._space.wait()
                continue
            # Only partitions below their cap are read; the others' fetched data stays
            # in aiokafka's (bounded) buffer instead of being paused and dropped.
            only = eligible if len(eligible) < len(self._partitions) else ()
            try:
                batch = await self._consumer.getmany(
                    *only, timeout_ms=100, max_records=min(room, self._max_records)
                )
            except ConsumerStoppedError:
                return
            except KafkaError as exc:
                refused = refusal(exc, self._doing())
                if refused is not None and not self._ready.is_set():
                    raise refused from None  # bind_consumer raises it
                mismatch = group_protocol_mismatch(
                    exc, binding=self.spec.binding, group=self.group_id, offered=self._strategies
                )
                if mismatch is not None and not self._ready.is_set():
                    raise mismatch from None
                failures += 1
                delay = _FETCH_BACKOFF.delay(failures)
                log.warning(
                    "Kafka fetch for %s failed: %s; retrying in %.1fs",
                    self.spec.binding,
                    refused if refused is not None else kafka_reason(exc),
                    delay,
                )
                await asyncio.sleep(delay)
                continue
            failures = 0
            for tp, records in batch.items():
                self._distribute(tp, records)

    async def _poll_paused(self) -> bool:
        """Poll with every partition paused: nothing is fetched, the group membership
        (max_poll_interval_ms) is kept; partitions assigned meanwhile are paused too.
        False once the consumer stopped."""
        with contextlib.suppress(IllegalStateError):
            self._consumer.pause(*self._consumer.assignment())
        try:
            batch = await self._consumer.getmany(timeout_ms=100, max_records=1)
        except ConsumerStoppedError:
            return False
        except KafkaError:
            await asyncio.sleep(0.5)  # pacing: the normal loop reports errors once resumed
            return True
        for tp, records in batch.items():
            self._distribute(tp, records)
        return True

    def _doing(self) -> str:
        group = f"group '{self.spec.group}'" if self.spec.group else "an anonymous group"
        return f"consuming Kafka topic '{self.spec.destination}' in {group}"

    def _distribute(self, tp: TopicPartition, records: list[Any]) -> None:
        state = self._partitions.get(tp)
        if state is None or state.revoked or tp in self._to_reset:
            return  # a partition about to be replayed is sought before it is read
        deliver = self._sink.deliver
        attempts = self._attempts
        for record in records:
            if state.next_offset is not None and record.offset < state.next_offset:
                continue
            state.next_offset = record.offset + 1
            state.in_flight += 1
            self._in_flight += 1
            attempt = attempts.pop((tp, record.offset), 0) + 1 if attempts else 1
            deliver(KafkaDelivery(from_record(record, attempt), record, state))

    def _settled(self, state: _Partition) -> None:
        """The engine settled one of ``state``'s records: maybe fetch more."""
        state.in_flight -= 1
        self._in_flight -= 1
        if self._in_flight <= self._bound - self._refill or (
            state.in_flight == self._partition_cap() - 1
        ):
            self._space.set()

    def _rewind(self, state: _Partition, offset: int, attempt: int) -> None:
        """Seek back to ``offset`` to deliver it again (the engine nacked it)."""
        state.epoch += 1
        self._sink.discard([state.tp])
        if state.revoked or self._closing:
            return
        try:
            self._consumer.seek(state.tp, offset)
            self._consumer.pause(state.tp)
        except IllegalStateError:
            return
        log.warning(
            "%s: %s[%d]@%d could not be handled nor dead-lettered; delivering it again",
            self.spec.binding,
            state.tp.topic,
            state.tp.partition,
            offset,
        )
        self._attempts[(state.tp, offset)] = attempt
        state.next_offset = offset
        if state.held is not None:
            state.held.cancel()

        def resume() -> None:
            state.held = None
            if not state.revoked and not self._closing and not self._paused:
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
            log.info("commit of %s deferred: %s", self.spec.binding, kafka_reason(exc))
            return
        for state in states:
            if state.tp in offsets:
                state.committed_offset = offsets[state.tp]

    async def wait_committed(self, timeout: float = 10.0) -> None:
        """Wait until every settled record is committed (for tests and shutdown)."""
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
        return self.spec.dead_letter or dead_letter_topic(self.spec.destination, self.spec.group)

    async def dead_letter(self, delivery: Delivery, failure: Failure) -> None:
        """Publish the record's message with the failure headers; return once acknowledged."""
        topic = self.dead_letter_destination()
        partitions = self._dlq_partitions
        if partitions is None:
            with kafka_errors(f"provisioning dead-letter topic '{topic}'"):
                partitions = await self._provision_dead_letters(topic)
            self._dlq_partitions = partitions
        message = delivery.message
        topic_of_origin = message.destination or self.spec.destination
        partition_of_origin, offset, timestamp_ms, timestamp_type = (
            message.partition or 0,
            -1,
            None,
            None,
        )
        if isinstance(delivery, KafkaDelivery):
            record = delivery.record
            topic_of_origin, partition_of_origin = record.topic, record.partition
            offset, timestamp_ms = record.offset, record.timestamp
            timestamp_type = record.timestamp_type
        headers: dict[str, str | bytes] = dict(failure.headers())
        headers.update(
            spring_headers(
                topic=topic_of_origin,
                partition=partition_of_origin,
                offset=offset,
                timestamp_ms=timestamp_ms,
                timestamp_type=timestamp_type,
                group=self.spec.group,
                failure=failure,
            )
        )
        # Same partition as the original when the dead-letter topic has it (Spring's
        # convention), else Kafka's key partitioner.
        partition = partition_of_origin if partition_of_origin < partitions else None
        await self._sender.send(topic, message.copy(partition=partition), headers)

    async def _provision_dead_letters(self, topic: str) -> int:
        """Create the dead-letter topic when missing, able to take every record of the
        consumed topic: its ``max.message.bytes`` is the consumed topic's plus room for
        the failure headers.  Dead letters are held to that limit only, not to a
        ``max_request_size``: their record already went through Kafka.  Returns the
        topic's partition count."""
        config: dict[str, str] = {}
        limit = await self._provisioner.message_limit(self.spec.destination)
        if limit is not None:
            config["max.message.bytes"] = str(limit + _DEAD_LETTER_HEADROOM)
        plan = self._provisioner.plan(
            topic, {"config": config}, self._settings, partitions=self._topic_partitions
        )
        partitions = await self._provisioner.ensure(plan)
        await self._sender.know(
            topic, partitions, message_limit=await self._provisioner.message_limit(topic)
        )
        return partitions
