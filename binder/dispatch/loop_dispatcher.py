"""The engine for coroutine handlers: attempts run on the event loop."""

from __future__ import annotations

import asyncio
import functools
from collections import deque
from collections.abc import Awaitable, Callable
from time import perf_counter

from binder.dispatch.engine import (
    RELEASE,
    RUNNING,
    Dispatcher,
    Lane,
    current_delivery,
)
from binder.dispatch.plan import BindingStats, DispatchPlan
from binder.dispatch.retry import is_permanent
from binder.dispatch.threads import CallThreads
from binder.log_format import JsonFormatter, message_context
from binder.message import Message
from binder.middleware import chain
from binder.spi import Delivery, Handler

__all__ = ["LoopDispatcher"]

#: A worker that never waits (handlers that never suspend) yields after this long.
_YIELD_AFTER = 0.005


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
            current_delivery.get()._output = await direct(message)

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

    def _lane_has_work(self, lane: Lane) -> None:
        if not lane.busy and not lane.ready:
            lane.ready = True
            self._ready.append(lane)

    def _wants_schedule(self) -> bool:
        return bool(self._idle)

    def _schedule(self) -> None:
        if self._paused:
            return
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
            delivery = self._take() if self._open and not self._paused else None
            if delivery is None:
                waiter: asyncio.Future[None] = loop.create_future()
                self._idle.append(waiter)
                await waiter
                last_yield = loop.time()
                continue
            delivery._state = RUNNING
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
        context = None
        if JsonFormatter.active:  # in this task's or thread's context: JSON logs name it
            context = message_context.set(
                (self.name, message.message_id, message.headers.get("traceparent"))
            )
        tracing, scope, span = self.plan.tracing, None, None
        if tracing is not None:
            scope = tracing.process(
                message,
                system=self.plan.system,
                destination=self.plan.destination,
                group=self.plan.group,
            )
            span = scope.__enter__()
        try:
            failures = 0
            spent = 0.0
            while True:
                started = perf_counter()
                try:
                    if self._sync is not None:
                        delivery._output = self._sync(message)
                    elif self._direct is not None:
                        delivery._output = await self._direct(message)
                    else:
                        assert self._chain is not None
                        token = current_delivery.set(delivery)
                        try:
                            await self._chain(message)
                        finally:
                            current_delivery.reset(token)
                except asyncio.CancelledError:
                    self._finish(delivery, RELEASE)
                    raise
                except Exception as exc:
                    spent += perf_counter() - started
                    failures += 1
                    if is_permanent(exc) or failures >= self._policy.max_attempts:
                        self.stats.observe(spent)
                        self._count_retries(1, 0)
                        if span is not None:
                            self._trace_failure(span, exc, message, None, failures)
                        self._failed(delivery, exc, failures)
                        return
                    self._count_retries(1, 1)
                    delay = self._policy.delay(failures)
                    if span is not None:
                        self._trace_failure(span, exc, message, delay, failures)
                    self._log_retry(message.delivery_attempt, exc, delay)
                    if await self._interrupted(delay):
                        self._finish(delivery, RELEASE)
                        return
                    message = message.copy(delivery_attempt=message.delivery_attempt + 1)
                else:
                    self.stats.observe(spent + perf_counter() - started)
                    self._returned(delivery)
                    return
        finally:
            if context is not None:
                message_context.reset(context)
            if scope is not None:
                scope.__exit__(None, None, None)
