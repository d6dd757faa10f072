"""The engine for plain ``def`` handlers: attempts run in worker threads."""

from __future__ import annotations

import threading
from collections.abc import Callable
from time import perf_counter
from typing import Any

from binder.dispatch.calls import HandlerCall
from binder.dispatch.engine import (
    HANDED,
    RELEASE,
    RELEASING,
    RUNNING,
    Dispatcher,
    Lane,
)
from binder.dispatch.plan import BindingStats, DispatchPlan
from binder.dispatch.retry import is_permanent
from binder.dispatch.threads import WorkerThreads
from binder.log_format import JsonFormatter, message_context
from binder.message import Message
from binder.spi import Delivery

__all__ = ["ThreadDispatcher"]

# Outcomes of an attempt in a worker thread
_OK, _FAILED, _SKIPPED = 0, 1, 2

#: Unpinned deliveries queued per worker thread at most (pinned lanes are not capped:
#: their order forbids running them anywhere else).
_THREAD_QUEUE = 64


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
        # the loop, never both: both sides change its state from HANDED under this lock.
        self._claim = threading.Lock()
        self._handed_free: set[Delivery] = set()  # lane-less ones handed to a thread
        self._pinned_work: list[Lane] = []  # pinned lanes with deliveries to hand over
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

    def _release_lane(self, lane: Lane) -> None:
        super()._release_lane(lane)
        self._release_handed([d for d in lane.order if d._state == HANDED])

    def _release_handed(self, candidates: list[Delivery]) -> None:
        """Release deliveries queued in a thread that the thread has not started."""
        with self._claim:
            victims = [d for d in candidates if d._state == HANDED]
            for delivery in victims:
                delivery._state = RELEASING
        for delivery in victims:
            self._finish(delivery, RELEASE)

    def _lane_has_work(self, lane: Lane) -> None:
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
        if self._paused:
            return  # the pinned lanes wait in _pinned_work for resume()
        pinned, self._pinned_work = self._pinned_work, []
        for lane in pinned:
            lane.ready = False
            if lane.thread >= 0:
                self._push_lane(lane, lane.thread)
            elif lane.queued:
                self._lane_has_work(lane)
        if self._open:
            self._schedule()

    def _resumed(self) -> None:
        self._flush()
        self._schedule()

    def _schedule(self) -> None:
        if self._paused:
            return
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
                    delivery._state = HANDED
                self._handed_free.update(batch)
                threads.submit_all(index, batch)

    def _push_lane(self, lane: Lane, index: int) -> None:
        queued = lane.queued
        if not queued:
            return
        batch = list(queued)
        queued.clear()
        for delivery in batch:
            delivery._state = HANDED
        lane.in_thread += len(batch)
        self._threads.submit_all(index, batch)

    def _execute(self, delivery: Delivery) -> tuple[int, Any, int, float]:
        """In a worker thread: every attempt at ``delivery``."""
        with self._claim:
            if delivery._state != HANDED or self._stop.is_set():
                return _SKIPPED, None, 0, 0.0
            delivery._state = RUNNING
        message = delivery.message
        context = None
        if JsonFormatter.active:  # in this task's or thread's context: JSON logs name it
            context = message_context.set(
                (self.name, message.message_id, message.headers.get("traceparent"))
            )
        try:
            tracing = self.plan.tracing
            if tracing is None:
                return self._attempts(message, None)
            with tracing.process(
                message,
                system=self.plan.system,
                destination=self.plan.destination,
                group=self.plan.group,
            ) as span:
                return self._attempts(message, span)
        finally:
            if context is not None:
                message_context.reset(context)

    def _attempts(self, message: Message, span: Any) -> tuple[int, Any, int, float]:
        """In a worker thread: the attempts, until one succeeds or the last failed;
        (outcome, value or exception, attempts, seconds spent in the handler)."""
        failures = 0
        spent = 0.0
        while True:
            started = perf_counter()
            try:
                value = self._run_sync(message)
            except Exception as exc:
                spent += perf_counter() - started
                failures += 1
                if is_permanent(exc) or failures >= self._policy.max_attempts:
                    if span is not None:
                        self._trace_failure(span, exc, message, None, failures)
                    return _FAILED, exc, failures, spent
                delay = self._policy.delay(failures)
                if span is not None:
                    self._trace_failure(span, exc, message, delay, failures)
                self._log_retry(message.delivery_attempt, exc, delay)
                if self._stop.wait(delay):
                    return _SKIPPED, exc, failures, spent
                message = message.copy(delivery_attempt=message.delivery_attempt + 1)
            else:
                return _OK, value, failures + 1, spent + perf_counter() - started

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
            outcome, value, attempts, spent = result
            if outcome == _OK:
                if attempts > 1:
                    self._count_retries(attempts - 1, attempts - 1)
                self.stats.observe(spent)
                delivery._output = value
                self._returned(delivery)
            elif outcome == _FAILED:
                self._count_retries(attempts, attempts - 1)
                self.stats.observe(spent)
                self._failed(delivery, value, attempts)
            else:
                if attempts:
                    self._count_retries(attempts, attempts)
                self._finish(delivery, RELEASE)
        if self._open:
            self._schedule()
