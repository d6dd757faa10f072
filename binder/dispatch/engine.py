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
  broker refuses is published again under the same policy (unless the binder raised
  a ``PermanentError``, such as a record too large), then its input is dead-lettered;
* runs ``async def`` handlers on the event loop
  (:class:`~binder.dispatch.loop_dispatcher.LoopDispatcher`) and plain ``def``
  handlers in worker threads
  (:class:`~binder.dispatch.thread_dispatcher.ThreadDispatcher`), so a handler that
  blocks never stops the binder's heartbeats.

This module holds what both have in common: intake, lanes, the window, outputs,
failures and settlement.  Everything runs on the event loop except the attempts of a
``ThreadDispatcher``, which run in its worker threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import logging
from collections import deque
from collections.abc import Callable, Collection, Hashable
from typing import Any

from binder.dispatch.calls import HandlerCall
from binder.dispatch.plan import BindingStats, DispatchPlan
from binder.dispatch.retry import OutputFailed, is_permanent
from binder.errors import DecodeError, describe_error
from binder.message import Message
from binder.spi import ConsumerBinding, Delivery, Failure

__all__ = ["Dispatcher"]

log = logging.getLogger("binder.dispatch")

# Delivery._state: waiting in the engine, handed to a worker thread (not started),
# started, returned (output unconfirmed), being released, finished (settled or about to be)
QUEUED, HANDED, RUNNING, RETURNED, RELEASING, FINISHED = 0, 1, 2, 3, 4, 5
# Delivery._verdict: how a finished delivery is settled
ACK, NACK, RELEASE = 1, 2, 3

#: The delivery an on-loop attempt belongs to (read by the innermost middleware layer).
current_delivery: contextvars.ContextVar[Delivery] = contextvars.ContextVar("binder_delivery")


class Lane:
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
        self._lanes: dict[Hashable, Lane] = {}
        self._free: deque[Delivery] = deque()
        self._ready: deque[Lane] = deque()
        self._lane_turn = False
        self._count = 0
        self._open = True
        self._paused = False
        self._closed = False
        self._stopping = asyncio.Event()
        self._binding: asyncio.Future[ConsumerBinding] = self._loop.create_future()
        self._waiters: list[tuple[Callable[[], bool], asyncio.Future[None]]] = []
        self._republish: dict[Delivery, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._policy = plan.retry
        #: Called with the message and the failure after each dead letter was stored
        #: (the test harness records them here, whatever the binder).
        self.dead_letter_listeners: list[Callable[[Message, Failure], None]] = []

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
            self._finish(delivery, RELEASE)
        self._ready.clear()
        for lane in list(self._lanes.values()):
            lane.ready = False
            self._release_lane(lane)
        for delivery, timer in list(self._republish.items()):
            timer.cancel()
            del self._republish[delivery]
            self._finish(delivery, RELEASE)
        self._check_waiters()

    async def drain(self, timeout: float | None = None) -> bool:
        """Wait until every delivery taken is settled; False if ``timeout`` passed first."""
        self.stop_intake()
        try:
            await asyncio.wait_for(self._wait(lambda: self._count == 0), timeout)
        except TimeoutError:
            log.error(
                "%s: %d message(s) still in progress after %gs; they stay unacknowledged "
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
    def paused(self) -> bool:
        """True between :meth:`pause` and :meth:`resume`."""
        return self._paused

    def pause(self) -> None:
        """Start no more handlers; those running finish and are settled. Deliveries
        still arrive until the window is full, and wait (unacknowledged) for
        :meth:`resume`; the binding stays subscribed (a group member)."""
        self._paused = True

    def resume(self) -> None:
        """Start handlers again, beginning with the deliveries that waited."""
        if self._paused:
            self._paused = False
            self._resumed()

    def _resumed(self) -> None:
        self._schedule()

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
                lane = self._lanes[key] = Lane(key)
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

    def _lane_has_work(self, lane: Lane) -> None:
        raise NotImplementedError

    def _schedule(self) -> None:
        raise NotImplementedError

    def _wants_schedule(self) -> bool:
        """Whether a new delivery may start something now (cheap; saves calls)."""
        return True

    def _release_lane(self, lane: Lane) -> None:
        """Release the deliveries of ``lane`` that have not started."""
        queued, lane.queued = lane.queued, deque()
        for delivery in queued:
            self._finish(delivery, RELEASE)

    def _next_lane(self) -> Lane | None:
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
            self._finish(delivery, ACK)
            return
        delivery._state = RETURNED
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
            self.stats.published += 1
            self._finish(delivery, ACK)
        else:
            self._publish_failed(delivery, exc)

    def _publish_failed(self, delivery: Delivery, exc: BaseException) -> None:
        if self._closed:
            return
        self.stats.publish_failures += 1
        delivery._failures += 1
        failures = delivery._failures
        if not self._open:
            log.warning(
                "%s: publishing the output of message %s failed while stopping (%s); "
                "it is handed back unacknowledged",
                self.name,
                delivery.message.message_id,
                describe_error(exc),
            )
            self._finish(delivery, RELEASE)
            return
        if failures >= self._policy.max_attempts or is_permanent(exc):
            error = OutputFailed(f"the broker did not accept the output: {describe_error(exc)}")
            error.__cause__ = exc
            self._failed(delivery, error, failures)
            return
        delay = self._policy.delay(failures)
        log.warning(
            "%s: publishing the output of message %s failed (%s); trying again in %.2fs",
            self.name,
            delivery.message.message_id,
            describe_error(exc),
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
            self._finish(delivery, NACK)
            return
        failure = Failure.from_exception(
            exc, attempts=attempts, destination=plan.destination, group=plan.group
        )
        if plan.dead_letter is None:
            self._log_failure(delivery, failure, exc, None)
            self.stats.dead_lettered += 1
            self._finish(delivery, ACK)
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
                self._finish(delivery, RELEASE)
            raise
        except Exception as error:
            log.error(
                "%s: cannot dead-letter message %s (%s); handing it back to the binder "
                "unacknowledged",
                self.name,
                delivery.message.message_id,
                describe_error(error),
            )
            self._finish(delivery, NACK)
            return
        self._log_failure(delivery, failure, exc, self.plan.dead_letter)
        self.stats.dead_lettered += 1
        for listener in self.dead_letter_listeners:
            try:
                listener(delivery.message, failure)
            except Exception:
                log.exception("%s: a dead-letter listener failed", self.name)
        self._finish(delivery, ACK)

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
        if delivery._state == FINISHED:
            return
        delivery._state = FINISHED
        delivery._verdict = verdict
        lane: Lane | None = delivery._lane
        if lane is None:
            self._settle(delivery)
        else:
            order = lane.order
            while order and order[0]._state == FINISHED:
                self._settle(order.popleft())
            key = lane.key
            if not order and self._lanes.get(key) is lane:
                del self._lanes[key]
        if self._waiters:  # after the lane is gone: revoke() waits for exactly that
            self._check_waiters()

    def _settle(self, delivery: Delivery) -> None:
        verdict = delivery._verdict
        delivery._output = None
        self._count -= 1
        try:
            if verdict == ACK:
                self.stats.handled += 1
                delivery.ack()
            elif verdict == NACK:
                self.stats.failed += 1
                delivery.nack()
            else:
                delivery.release()
        except Exception:
            log.exception("%s: settling message %s failed", self.name, delivery.message.message_id)
        if verdict == ACK and self._on_handled is not None:
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

    def _trace_failure(
        self, span: Any, exc: BaseException, message: Message, delay: float | None, attempts: int
    ) -> None:
        """Span events of a failed attempt: the exception, then a retry or, after the
        last attempt, where the message goes (dead letters)."""
        tracing = self.plan.tracing
        assert tracing is not None
        tracing.failed_attempt(span, exc, message.delivery_attempt, delay)
        if delay is None:
            tracing.dead_lettered(span, self.plan.dead_letter, attempts)

    def _count_retries(self, failed: int, retried: int) -> None:
        """``failed`` attempts failed, ``retried`` of them were tried again."""
        stats = self.stats
        stats.attempts_failed += failed
        stats.retried += retried

    def _log_retry(self, attempt: int, exc: BaseException, delay: float) -> None:
        log.warning(
            "%s: attempt %d failed (%s); retrying in %.2fs",
            self.name,
            attempt,
            describe_error(exc),
            delay,
        )
