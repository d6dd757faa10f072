"""The delivery engine: what happens between a binder's fetch and its settlement.

A binder hands each fetched message to a :class:`Dispatcher` (its
:class:`~binder.spi.DeliverySink`) as a :class:`~binder.spi.Delivery`.  The engine

* keeps order per lane: deliveries of one lane are handled one at a time, in order,
  and settled in order; deliveries without a lane need no order;
* calls the handler at most ``concurrency`` times at once, and holds at most
  ``window`` deliveries between fetch and settlement (``room`` tells a binder that
  pulls how many more it may fetch);
* pipelines settlement: the next delivery of a lane starts as soon as the previous
  handler *returned*; the output it produced is published without waiting, and a
  delivery is settled (``ack``) only when its handler returned and its output was
  confirmed by the broker.  Nothing is acknowledged before its effects are durable;
* retries a failing handler with jittered exponential backoff, in place (the lane
  waits), then dead-letters the message through the binding; an undecodable payload
  or a :class:`~binder.errors.PermanentError` is dead-lettered at once; an output the
  broker refuses is published again under the same policy, then dead-lettered;
* runs ``async def`` handlers on the event loop (:class:`LoopDispatcher`) and plain
  ``def`` handlers in worker threads (:class:`ThreadDispatcher`), so a handler that
  blocks never stops the binder's heartbeats.

Everything here runs on the event loop except the attempts of a
:class:`ThreadDispatcher`, which run in its worker threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import logging
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Collection, Hashable
from dataclasses import dataclass, field
from typing import Any

from binder.dispatch.calls import HandlerCall, RawCall
from binder.dispatch.retry import OutputFailed, RetryPolicy, is_permanent
from binder.dispatch.threads import CallThreads, WorkerThreads
from binder.errors import DecodeError
from binder.message import Message
from binder.middleware import Middleware, chain
from binder.spi import DEFAULT_PREFETCH, ConsumerBinding, Delivery, Failure, Handler

__all__ = [
    "BindingStats",
    "DispatchPlan",
    "Dispatcher",
    "LoopDispatcher",
    "ThreadDispatcher",
    "create_dispatcher",
]

log = logging.getLogger("binder.dispatch")

# Delivery._state: waiting in the engine, handed to a worker thread (not started),
# started, returned (output unconfirmed), being released, finished (settled or about to be)
_QUEUED, _HANDED, _RUNNING, _RETURNED, _RELEASING, _FINISHED = 0, 1, 2, 3, 4, 5
# Delivery._verdict: how a finished delivery is settled
_ACK, _NACK, _RELEASE = 1, 2, 3
# Outcomes of an attempt in a worker thread
_OK, _FAILED, _SKIPPED = 0, 1, 2

#: Unpinned deliveries queued per worker thread at most (pinned lanes are not capped:
#: their order forbids running them anywhere else).
_THREAD_QUEUE = 64
#: A worker that never waits (handlers that never suspend) yields after this long.
_YIELD_AFTER = 0.005

#: The delivery an on-loop attempt belongs to (read by the innermost middleware layer).
_current: contextvars.ContextVar[Delivery] = contextvars.ContextVar("binder_delivery")


@dataclass(slots=True)
class BindingStats:
    """Counters of one consumer binding, kept by its dispatcher."""

    received: int = 0
    """Deliveries taken from the binder."""
    handled: int = 0
    """Deliveries settled for good: handled successfully or dead-lettered."""
    dead_lettered: int = 0
    """Deliveries stored in the dead letters (or dropped, with dead letters off)."""
    failed: int = 0
    """Deliveries handed back to the binder unhandled (nack): the broker delivers them
    again where it can."""


@dataclass(frozen=True, slots=True)
class DispatchPlan:
    """What the engine does with each delivery of one consumer binding."""

    binding: str
    destination: str
    group: str | None
    call: HandlerCall | RawCall
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    concurrency: int = 1
    window: int = DEFAULT_PREFETCH
    threaded: bool = True
    """Run a plain ``def`` handler in worker threads (else on the event loop)."""
    middleware: tuple[Middleware, ...] = ()
    """Plugin middleware around each attempt, outermost first."""
    dead_letter: str | None = None
    """The dead-letter destination; ``None``: a message that failed for good is logged
    at ERROR and dropped."""
    nack_failures: bool = False
    """Hand a failed delivery straight back to the binder (no dead letter): binder
    tests and tools use it with a :class:`RawCall`."""


class _Lane:
    """The deliveries of one lane: waiting to start, and all of them until settled."""

    __slots__ = ("busy", "in_thread", "key", "order", "queued", "ready", "thread")

    def __init__(self, key: Hashable) -> None:
        self.key = key
        self.queued: deque[Delivery] = deque()
        self.order: deque[Delivery] = deque()
        self.busy = False  # a handler of this lane is running (on the loop)
        self.ready = False  # in the dispatcher's ready queue
        self.thread = -1  # the worker thread it is pinned to
        self.in_thread = 0  # its deliveries in that thread, not handed back yet


class Dispatcher:
    """The engine for one consumer binding; binders see it as a ``DeliverySink``.

    Lifecycle: ``start()``, then the binder binds with it as the sink, then
    ``attach(binding)``; to stop, ``stop_intake()``, ``await drain(timeout)``, close the
    binding, ``await close()``.
    """

    def __init__(
        self,
        plan: DispatchPlan,
        *,
        stats: BindingStats | None = None,
        on_handled: Callable[[], None] | None = None,
    ) -> None:
        self.plan = plan
        self.name = plan.binding
        self.stats = stats if stats is not None else BindingStats()
        self.window = max(1, plan.window)
        self.concurrency = max(1, plan.concurrency)
        self._on_handled = on_handled
        self._loop = asyncio.get_running_loop()
        self._lanes: dict[Hashable, _Lane] = {}
        self._free: deque[Delivery] = deque()
        self._ready: deque[_Lane] = deque()
        self._lane_turn = False
        self._count = 0
        self._open = True
        self._closed = False
        self._stopping = asyncio.Event()
        self._binding: asyncio.Future[ConsumerBinding] = self._loop.create_future()
        self._waiters: list[tuple[Callable[[], bool], asyncio.Future[None]]] = []
        self._republish: dict[Delivery, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._policy = plan.retry

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} in_flight={self._count}>"

    # -- lifecycle --------------------------------------------------------------------

    def start(self) -> None:
        """Start the workers (before the binder binds with this sink)."""

    def attach(self, binding: ConsumerBinding) -> None:
        """The bound consumer: dead letters go through it."""
        if not self._binding.done():
            self._binding.set_result(binding)

    def fail_attach(self, exc: BaseException) -> None:
        """Binding failed: dead letters waiting for the binding give up."""
        if not self._binding.done():
            self._binding.set_exception(exc)
            self._binding.exception()  # retrieved: may have no other reader

    def stop_intake(self) -> None:
        """Take no more deliveries and release those not started; interrupt backoffs."""
        if not self._open:
            return
        self._open = False
        self._stopping.set()
        free, self._free = self._free, deque()
        for delivery in free:
            self._finish(delivery, _RELEASE)
        self._ready.clear()
        for lane in list(self._lanes.values()):
            lane.ready = False
            self._release_lane(lane)
        for delivery, timer in list(self._republish.items()):
            timer.cancel()
            del self._republish[delivery]
            self._finish(delivery, _RELEASE)
        self._check_waiters()

    async def drain(self, timeout: float | None = None) -> bool:
        """Wait until every delivery taken is settled; False if ``timeout`` passed first."""
        self.stop_intake()
        try:
            await asyncio.wait_for(self._wait(lambda: self._count == 0), timeout)
        except TimeoutError:
            log.error(
                "%s: %d message(s) still in progress after %.0fs; they stay unacknowledged "
                "(the broker delivers them again where it can)",
                self.name,
                self._count,
                timeout,
            )
            return False
        return True

    async def close(self) -> None:
        """Stop workers and dead-letter tasks; later results are ignored.  Idempotent."""
        self.stop_intake()
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for _, waiter in self._waiters:
            if not waiter.done():
                waiter.cancel()
        self._waiters.clear()

    @property
    def in_flight(self) -> int:
        """Deliveries taken and not settled yet."""
        return self._count

    # -- the sink ---------------------------------------------------------------------

    def deliver(self, delivery: Delivery) -> None:
        """Take ``delivery`` (see :class:`~binder.spi.DeliverySink`)."""
        if not self._open:
            self._call(delivery.release, delivery)
            return
        self._count += 1
        self.stats.received += 1
        key = delivery.lane
        if key is None:
            self._free.append(delivery)
        else:
            lane = self._lanes.get(key)
            if lane is None:
                lane = self._lanes[key] = _Lane(key)
            delivery._lane = lane
            lane.order.append(delivery)
            lane.queued.append(delivery)
            self._lane_has_work(lane)
        if self._wants_schedule():
            self._schedule()

    @property
    def room(self) -> int:
        """How many more deliveries the window takes now."""
        return self.window - self._count if self._open else 0

    async def wait_for_room(self, at_least: int = 1) -> None:
        """Return once ``room >= at_least`` (never, once stopping)."""
        at_least = min(max(1, at_least), self.window)
        if self.room >= at_least:
            return
        await self._wait(lambda: self.room >= at_least)

    def discard(self, lanes: Collection[Hashable]) -> None:
        """Release the not-started deliveries of ``lanes``."""
        for key in lanes:
            lane = self._lanes.get(key)
            if lane is not None:
                self._release_lane(lane)
        self._check_waiters()

    async def revoke(self, lanes: Collection[Hashable]) -> None:
        """Release the not-started deliveries of ``lanes``; wait for the others to settle."""
        keys = list(lanes)
        self.discard(keys)
        await self._wait(lambda: not any(key in self._lanes for key in keys))

    # -- scheduling (the two flavours) ------------------------------------------------

    def _lane_has_work(self, lane: _Lane) -> None:
        raise NotImplementedError

    def _schedule(self) -> None:
        raise NotImplementedError

    def _wants_schedule(self) -> bool:
        """Whether a new delivery may start something now (cheap; saves calls)."""
        return True

    def _release_lane(self, lane: _Lane) -> None:
        """Release the deliveries of ``lane`` that have not started."""
        queued, lane.queued = lane.queued, deque()
        for delivery in queued:
            self._finish(delivery, _RELEASE)

    def _next_lane(self) -> _Lane | None:
        """The next ready lane that still has queued deliveries (discard may empty one)."""
        ready = self._ready
        while ready:
            lane = ready.popleft()
            lane.ready = False
            if lane.queued:
                return lane
        return None

    def _take(self) -> Delivery | None:
        """The next delivery to start on the loop: lanes and lane-less ones in turn."""
        self._lane_turn = not self._lane_turn
        if self._ready and (self._lane_turn or not self._free):
            lane = self._next_lane()
            if lane is not None:
                lane.busy = True
                return lane.queued.popleft()
        if self._free:
            return self._free.popleft()
        return None

    # -- after an attempt ------------------------------------------------------------

    def _returned(self, delivery: Delivery) -> None:
        """The handler returned; publish its output, or settle at once."""
        if delivery._output is None:
            self._finish(delivery, _ACK)
            return
        delivery._state = _RETURNED
        self._publish(delivery)

    def _publish(self, delivery: Delivery) -> None:
        call = self.plan.call
        assert isinstance(call, HandlerCall) and call.output is not None
        assert delivery._output is not None
        try:
            confirmed = call.output.producer.publish(delivery._output)
            if not isinstance(confirmed, asyncio.Future):
                confirmed = asyncio.ensure_future(confirmed)
        except Exception as exc:
            self._publish_failed(delivery, exc)
            return
        if confirmed.done():  # confirmed at once (in-memory): no trip through the loop
            self._published(delivery, confirmed)
        else:
            confirmed.add_done_callback(functools.partial(self._published, delivery))

    def _published(self, delivery: Delivery, confirmed: asyncio.Future[None]) -> None:
        if confirmed.cancelled():
            self._publish_failed(delivery, OutputFailed("the publish was cancelled"))
            return
        exc = confirmed.exception()
        if exc is None:
            self._finish(delivery, _ACK)
        else:
            self._publish_failed(delivery, exc)

    def _publish_failed(self, delivery: Delivery, exc: BaseException) -> None:
        if self._closed:
            return
        delivery._failures += 1
        failures = delivery._failures
        if not self._open:
            log.warning(
                "%s: publishing the output of message %s failed while stopping (%s); "
                "it is handed back unacknowledged",
                self.name,
                delivery.message.message_id,
                _describe(exc),
            )
            self._finish(delivery, _RELEASE)
            return
        if failures >= self._policy.max_attempts:
            error = OutputFailed(f"the broker did not accept the output: {_describe(exc)}")
            error.__cause__ = exc
            self._failed(delivery, error, failures)
            return
        delay = self._policy.delay(failures)
        log.warning(
            "%s: publishing the output of message %s failed (%s); trying again in %.2fs",
            self.name,
            delivery.message.message_id,
            _describe(exc),
            delay,
        )
        self._republish[delivery] = self._loop.call_later(delay, self._publish_again, delivery)

    def _publish_again(self, delivery: Delivery) -> None:
        if self._republish.pop(delivery, None) is not None and not self._closed:
            self._publish(delivery)

    def _failed(self, delivery: Delivery, exc: BaseException, attempts: int) -> None:
        """Every attempt failed: dead-letter the message (or drop it, or nack it)."""
        plan = self.plan
        if plan.nack_failures:
            log.debug("%s: handler failed; handing the message back", self.name, exc_info=exc)
            self._finish(delivery, _NACK)
            return
        failure = Failure.from_exception(
            exc, attempts=attempts, destination=plan.destination, group=plan.group
        )
        if plan.dead_letter is None:
            self._log_failure(delivery, failure, exc, None)
            self.stats.dead_lettered += 1
            self._finish(delivery, _ACK)
            return
        task = self._loop.create_task(self._dead_letter(delivery, failure, exc))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _dead_letter(self, delivery: Delivery, failure: Failure, exc: BaseException) -> None:
        try:
            binding = await asyncio.shield(self._binding)
            await binding.dead_letter(delivery, failure)
        except asyncio.CancelledError:
            if not self._closed:
                self._finish(delivery, _RELEASE)
            raise
        except Exception as error:
            log.error(
                "%s: cannot dead-letter message %s (%s); handing it back to the binder "
                "unacknowledged",
                self.name,
                delivery.message.message_id,
                _describe(error),
            )
            self._finish(delivery, _NACK)
            return
        self._log_failure(delivery, failure, exc, self.plan.dead_letter)
        self.stats.dead_lettered += 1
        self._finish(delivery, _ACK)

    def _log_failure(
        self, delivery: Delivery, failure: Failure, exc: BaseException, target: str | None
    ) -> None:
        reason = "undecodable payload" if isinstance(exc, DecodeError) else "handler failed"
        if isinstance(exc, OutputFailed):
            reason = "output not accepted"
        log.log(
            logging.WARNING if target is not None else logging.ERROR,
            "%s: %s after %d attempt(s); message %s %s: %s: %s",
            self.name,
            reason,
            failure.attempts,
            delivery.message.message_id,
            f"dead-lettered to {target}" if target is not None else "dropped (dead_letter is off)",
            failure.exception_type,
            failure.exception_message,
        )

    # -- settlement ------------------------------------------------------------------

    def _finish(self, delivery: Delivery, verdict: int) -> None:
        """``delivery`` is done; settle it and whatever it held back in its lane."""
        if delivery._state == _FINISHED:
            return
        delivery._state = _FINISHED
        delivery._verdict = verdict
        lane = delivery._lane
        if lane is None:
            self._settle(delivery)
        else:
            order = lane.order
            while order and order[0]._state == _FINISHED:
                self._settle(order.popleft())
            if not order and self._lanes.get(lane.key) is lane:
                del self._lanes[lane.key]
        if self._waiters:  # after the lane is gone: revoke() waits for exactly that
            self._check_waiters()

    def _settle(self, delivery: Delivery) -> None:
        verdict = delivery._verdict
        delivery._output = None
        self._count -= 1
        try:
            if verdict == _ACK:
                self.stats.handled += 1
                delivery.ack()
            elif verdict == _NACK:
                self.stats.failed += 1
                delivery.nack()
            else:
                delivery.release()
        except Exception:
            log.exception("%s: settling message %s failed", self.name, delivery.message.message_id)
        if verdict == _ACK and self._on_handled is not None:
            self._on_handled()

    def _call(self, settle: Callable[[], None], delivery: Delivery) -> None:
        try:
            settle()
        except Exception:
            log.exception("%s: settling message %s failed", self.name, delivery.message.message_id)

    async def _wait(self, condition: Callable[[], bool]) -> None:
        if condition():
            return
        waiter: asyncio.Future[None] = self._loop.create_future()
        entry = (condition, waiter)
        self._waiters.append(entry)
        try:
            await waiter
        finally:
            with contextlib.suppress(ValueError):
                self._waiters.remove(entry)

    def _check_waiters(self) -> None:
        for condition, waiter in list(self._waiters):
            if not waiter.done() and condition():
                waiter.set_result(None)

    async def _interrupted(self, delay: float) -> bool:
        """Sleep ``delay`` seconds; True when the binding began stopping meanwhile."""
        if self._stopping.is_set():
            return True
        try:
            await asyncio.wait_for(self._stopping.wait(), delay)
        except TimeoutError:
            return False
        return True

    def _log_retry(self, attempt: int, exc: BaseException, delay: float) -> None:
        log.warning(
            "%s: attempt %d failed (%s); retrying in %.2fs",
            self.name,
            attempt,
            _describe(exc),
            delay,
        )


class LoopDispatcher(Dispatcher):
    """Runs attempts on the event loop: ``async def`` handlers, ``threaded=False`` ones,
    and plain handlers wrapped by plugin middleware (whose attempts then each go
    through a worker thread)."""

    def __init__(
        self,
        plan: DispatchPlan,
        *,
        stats: BindingStats | None = None,
        on_handled: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(plan, stats=stats, on_handled=on_handled)
        self._workers: list[asyncio.Task[None]] = []
        self._idle: deque[asyncio.Future[None]] = deque()
        self._threads: CallThreads | None = None
        self._build_attempt()

    def _build_attempt(self) -> None:
        """How one attempt runs: straight calls without plugin middleware, else a chain
        of middleware whose innermost layer finds its delivery in a context variable."""
        call = self.plan.call
        self._sync: Callable[[Message], Message | None] | None = None
        self._direct: Callable[[Message], Awaitable[Message | None]] | None = None
        self._chain: Handler | None = None
        if call.is_async:
            direct = call.run_async
        elif self.plan.threaded:
            threads = self._threads = CallThreads(self.concurrency, f"eventbinder:{self.name}")

            async def direct(message: Message) -> Message | None:
                return await threads.call(functools.partial(call.run_sync, message))  # type: ignore[no-any-return]

        else:
            self._sync = call.run_sync

            async def direct(message: Message) -> Message | None:
                return call.run_sync(message)

        if not self.plan.middleware:
            self._direct = direct
            return
        self._sync = None

        async def inner(message: Message) -> None:
            _current.get()._output = await direct(message)

        self._chain = chain(inner, self.plan.middleware)

    def start(self) -> None:
        """Start ``concurrency`` worker tasks."""
        if not self._workers:
            self._workers = [
                self._loop.create_task(self._work(), name=f"eventbinder:{self.name}:{i}")
                for i in range(self.concurrency)
            ]

    async def close(self) -> None:
        """Stop the workers and the threads (if any); idempotent."""
        await super().close()
        for worker in self._workers:
            worker.cancel()
        if self._workers:
            await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers = []
        if self._threads is not None:
            self._threads.close()

    def _lane_has_work(self, lane: _Lane) -> None:
        if not lane.busy and not lane.ready:
            lane.ready = True
            self._ready.append(lane)

    def _wants_schedule(self) -> bool:
        return bool(self._idle)

    def _schedule(self) -> None:
        idle = self._idle
        available = len(self._free) + len(self._ready)
        while idle and available > 0:
            waiter = idle.popleft()
            if not waiter.done():
                waiter.set_result(None)
                available -= 1

    async def _work(self) -> None:
        loop = self._loop
        last_yield = loop.time()
        since_yield = 0
        while True:
            delivery = self._take() if self._open else None
            if delivery is None:
                waiter: asyncio.Future[None] = loop.create_future()
                self._idle.append(waiter)
                await waiter
                last_yield = loop.time()
                continue
            delivery._state = _RUNNING
            await self._run(delivery)
            lane = delivery._lane
            if lane is not None:
                lane.busy = False
                if lane.queued and self._open:
                    lane.ready = True
                    self._ready.append(lane)
                    self._schedule()
            since_yield += 1
            if since_yield >= 16:  # look at the clock every few deliveries only
                since_yield = 0
                if loop.time() - last_yield > _YIELD_AFTER:
                    await asyncio.sleep(0)  # let heartbeats and I/O run
                    last_yield = loop.time()

    async def _run(self, delivery: Delivery) -> None:
        """Every attempt at ``delivery``, then hand it on (publish, dead-letter, settle)."""
        message = delivery.message
        failures = 0
        while True:
            try:
                if self._sync is not None:
                    delivery._output = self._sync(message)
                elif self._direct is not None:
                    delivery._output = await self._direct(message)
                else:
                    assert self._chain is not None
                    token = _current.set(delivery)
                    try:
                        await self._chain(message)
                    finally:
                        _current.reset(token)
            except asyncio.CancelledError:
                self._finish(delivery, _RELEASE)
                raise
            except Exception as exc:
                failures += 1
                if is_permanent(exc) or failures >= self._policy.max_attempts:
                    self._failed(delivery, exc, failures)
                    return
                delay = self._policy.delay(failures)
                self._log_retry(message.delivery_attempt, exc, delay)
                if await self._interrupted(delay):
                    self._finish(delivery, _RELEASE)
                    return
                message = message.copy(delivery_attempt=message.delivery_attempt + 1)
            else:
                self._returned(delivery)
                return


class ThreadDispatcher(Dispatcher):
    """Runs plain ``def`` handlers in ``concurrency`` worker threads.

    A lane is pinned to one thread while it has deliveries there, and all of its
    deliveries are queued on that thread as they arrive: the thread runs them back to
    back, in order, without a round trip through the event loop between them.  Retries
    (with their backoff) happen in the thread, so the lane keeps its order; lane-less
    deliveries go to the least loaded thread.  Results come back to the loop in
    batches, where outputs are published and deliveries settled.
    """

    def __init__(
        self,
        plan: DispatchPlan,
        *,
        stats: BindingStats | None = None,
        on_handled: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(plan, stats=stats, on_handled=on_handled)
        call = plan.call
        assert isinstance(call, HandlerCall)
        self._run_sync = call.run_sync
        self._threads: WorkerThreads[Delivery] = WorkerThreads(
            self.concurrency, f"eventbinder:{self.name}", self._execute, self._results
        )
        self._stop = threading.Event()
        # A delivery handed to a thread is either started by the thread or released by
        # the loop, never both: both sides change its state from _HANDED under this lock.
        self._claim = threading.Lock()
        self._handed_free: set[Delivery] = set()  # lane-less ones handed to a thread
        self._pinned_work: list[_Lane] = []  # pinned lanes with deliveries to hand over
        self._flush_scheduled = False

    async def close(self) -> None:
        """Stop the threads once their queued deliveries are skipped; idempotent."""
        self._stop.set()
        await super().close()
        self._threads.close()

    def stop_intake(self) -> None:
        """As :meth:`Dispatcher.stop_intake`; also releases deliveries queued in the
        threads and wakes attempts waiting in a backoff."""
        self._stop.set()
        was_open = self._open
        super().stop_intake()
        if was_open:
            self._release_handed(list(self._handed_free))

    def _release_lane(self, lane: _Lane) -> None:
        super()._release_lane(lane)
        self._release_handed([d for d in lane.order if d._state == _HANDED])

    def _release_handed(self, candidates: list[Delivery]) -> None:
        """Release deliveries queued in a thread that the thread has not started."""
        with self._claim:
            victims = [d for d in candidates if d._state == _HANDED]
            for delivery in victims:
                delivery._state = _RELEASING
        for delivery in victims:
            self._finish(delivery, _RELEASE)

    def _lane_has_work(self, lane: _Lane) -> None:
        if lane.thread >= 0:
            if not lane.ready:  # for a pinned lane: "in self._pinned_work"
                lane.ready = True
                self._pinned_work.append(lane)
        elif not lane.ready:
            lane.ready = True
            self._ready.append(lane)

    def _wants_schedule(self) -> bool:
        # Hand over what arrives in one turn of the loop together, with one put per
        # thread: a fetch delivers a few hundred records in a row.
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)
        return False

    def _flush(self) -> None:
        self._flush_scheduled = False
        pinned, self._pinned_work = self._pinned_work, []
        for lane in pinned:
            lane.ready = False
            if lane.thread >= 0:
                self._push_lane(lane, lane.thread)
            elif lane.queued:
                self._lane_has_work(lane)
        if self._open:
            self._schedule()

    def _schedule(self) -> None:
        threads = self._threads
        while self._ready or self._free:
            index = threads.least_loaded()
            room = _THREAD_QUEUE - threads.load[index]
            if room <= 0:
                return
            self._lane_turn = not self._lane_turn
            if self._ready and (self._lane_turn or not self._free):
                lane = self._next_lane()
                if lane is not None:
                    lane.thread = index
                    self._push_lane(lane, index)
            else:
                # Lane-less deliveries: a share of the free ones, so the other threads
                # get theirs on the next turn of this loop.
                free = self._free
                take = min(room, max(1, len(free) // threads.size), len(free))
                batch = [free.popleft() for _ in range(take)]
                for delivery in batch:
                    delivery._state = _HANDED
                self._handed_free.update(batch)
                threads.submit_all(index, batch)

    def _push_lane(self, lane: _Lane, index: int) -> None:
        queued = lane.queued
        if not queued:
            return
        batch = list(queued)
        queued.clear()
        for delivery in batch:
            delivery._state = _HANDED
        lane.in_thread += len(batch)
        self._threads.submit_all(index, batch)

    def _execute(self, delivery: Delivery) -> tuple[int, Any, int]:
        """In a worker thread: every attempt at ``delivery``."""
        with self._claim:
            if delivery._state != _HANDED or self._stop.is_set():
                return _SKIPPED, None, 0
            delivery._state = _RUNNING
        message = delivery.message
        failures = 0
        while True:
            try:
                return _OK, self._run_sync(message), failures + 1
            except Exception as exc:
                failures += 1
                if is_permanent(exc) or failures >= self._policy.max_attempts:
                    return _FAILED, exc, failures
                delay = self._policy.delay(failures)
                self._log_retry(message.delivery_attempt, exc, delay)
                if self._stop.wait(delay):
                    return _SKIPPED, exc, failures
                message = message.copy(delivery_attempt=message.delivery_attempt + 1)

    def _results(self, batch: list[tuple[Delivery, Any]]) -> None:
        """On the loop: outputs, dead letters and settlement for finished attempts."""
        for delivery, result in batch:
            lane = delivery._lane
            if lane is not None:
                lane.in_thread -= 1
                if lane.in_thread == 0:
                    lane.thread = -1
                    if lane.queued:
                        self._lane_has_work(lane)
            else:
                self._handed_free.discard(delivery)
            if self._closed:
                continue
            if isinstance(result, BaseException):  # the worker itself broke
                self._failed(delivery, result, 1)
                continue
            outcome, value, attempts = result
            if outcome == _OK:
                delivery._output = value
                self._returned(delivery)
            elif outcome == _FAILED:
                self._failed(delivery, value, attempts)
            else:
                self._finish(delivery, _RELEASE)
        if self._open:
            self._schedule()


def create_dispatcher(
    plan: DispatchPlan,
    *,
    stats: BindingStats | None = None,
    on_handled: Callable[[], None] | None = None,
) -> Dispatcher:
    """The dispatcher ``plan`` calls for, started.

    Plain ``def`` handlers run in worker threads unless ``plan.threaded`` is false or
    plugin middleware wraps the attempts (middleware is asynchronous, so each attempt
    then goes through the loop, and through a thread for the handler call).
    """
    call = plan.call
    if not call.is_async and plan.threaded and not plan.middleware:
        dispatcher: Dispatcher = ThreadDispatcher(plan, stats=stats, on_handled=on_handled)
    else:
        dispatcher = LoopDispatcher(plan, stats=stats, on_handled=on_handled)
    dispatcher.start()
    return dispatcher


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
