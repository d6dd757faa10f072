"""Worker threads for blocking handler code, with results handed back in batches.

A thread hop per call costs two wake-ups (the thread's, then the event loop's): about
60 µs here, which would cap a handler at ~16,000 calls a second however cheap it is.
So each thread has its own FIFO inbox and keeps working while it has items, and
results go back to the loop in batches: one ``call_soon_threadsafe`` per batch, not
per call.  With the inbox kept full, a call costs a few microseconds.

The threads are daemons and started lazily.  A handler that never returns keeps its
thread, never the process: shutdown gives up on it after the drain timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from collections import deque
from collections.abc import Callable
from typing import Any, Generic, TypeVar

__all__ = ["CallThreads", "WorkerThreads"]

log = logging.getLogger("binder.dispatch")

Item = TypeVar("Item")
_STOP = object()


class WorkerThreads(Generic[Item]):
    """``size`` threads, each running ``work(item)`` on the items submitted to it.

    ``work`` runs in the thread and must not raise; ``done(batch)`` runs on the event
    loop with a list of ``(item, result)`` pairs, in the order each thread finished
    them.  Items submitted to one thread run one at a time, in submission order.
    """

    def __init__(
        self,
        size: int,
        name: str,
        work: Callable[[Item], Any],
        done: Callable[[list[tuple[Item, Any]]], None],
    ) -> None:
        self.size = max(1, size)
        self.name = name
        self._work = work
        self._done = done
        self._loop = asyncio.get_running_loop()
        self._inboxes: list[queue.SimpleQueue[Any]] = [
            queue.SimpleQueue() for _ in range(self.size)
        ]
        self._threads: list[threading.Thread | None] = [None] * self.size
        #: Items submitted to each thread and not handed back yet (event loop side).
        self.load = [0] * self.size
        self._results: deque[tuple[int, Item, Any]] = deque()
        self._posted = False
        self._closed = False

    def least_loaded(self) -> int:
        """The index of the thread with the fewest unfinished items."""
        load = self.load
        if self.size == 1:
            return 0
        return min(range(self.size), key=load.__getitem__)

    def submit(self, index: int, item: Item) -> None:
        """Queue ``item`` on thread ``index`` (started on first use)."""
        self.submit_all(index, [item])

    def submit_all(self, index: int, items: list[Item]) -> None:
        """Queue ``items`` on thread ``index``, in order, with one hand-over."""
        if self._closed:
            raise RuntimeError(f"{self.name}: worker threads are closed")
        self.load[index] += len(items)
        if self._threads[index] is None:
            thread = threading.Thread(
                target=self._run, args=(index,), name=f"{self.name}-{index}", daemon=True
            )
            self._threads[index] = thread
            thread.start()
        self._inboxes[index].put(items)

    def close(self) -> None:
        """Let each thread end once the items queued before this call are done.

        Idempotent and never waits.  ``done`` is still called for those items.
        """
        if self._closed:
            return
        self._closed = True
        for index, thread in enumerate(self._threads):
            if thread is not None:
                self._inboxes[index].put(_STOP)

    # -- in the threads -------------------------------------------------------------

    def _run(self, index: int) -> None:
        inbox = self._inboxes[index]
        work = self._work
        results = self._results
        while True:
            items = inbox.get()
            if items is _STOP:
                return
            for item in items:
                try:
                    result = work(item)
                except BaseException as exc:  # work() must not raise; never lose the thread
                    log.error("%s: internal error in a worker thread: %r", self.name, exc)
                    result = exc
                results.append((index, item, result))
                if not self._posted:
                    self._posted = True
                    with contextlib.suppress(RuntimeError):  # the loop is closed
                        self._loop.call_soon_threadsafe(self._hand_back)

    # -- on the event loop ----------------------------------------------------------

    def _hand_back(self) -> None:
        # Clear the flag before taking results: a thread that appends after this line
        # posts again, one that appended before is taken below.
        self._posted = False
        results = self._results
        load = self.load
        batch: list[tuple[Item, Any]] = []
        while results:
            index, item, result = results.popleft()
            load[index] -= 1
            batch.append((item, result))
        if batch:
            self._done(batch)


class CallThreads:
    """Run plain callables in worker threads and await their results."""

    def __init__(self, size: int, name: str) -> None:
        self._threads: WorkerThreads[tuple[asyncio.Future[Any], Callable[[], Any]]] = WorkerThreads(
            size, name, self._call, self._resolve
        )

    @staticmethod
    def _call(item: tuple[asyncio.Future[Any], Callable[[], Any]]) -> tuple[bool, Any]:
        try:
            return True, item[1]()
        except BaseException as exc:
            return False, exc

    @staticmethod
    def _resolve(batch: list[tuple[tuple[asyncio.Future[Any], Any], tuple[bool, Any]]]) -> None:
        for (future, _), (ok, value) in batch:
            if future.done():
                continue
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)

    def call(self, fn: Callable[[], Any]) -> asyncio.Future[Any]:
        """Run ``fn()`` in the least loaded thread; the future gets its result."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        threads = self._threads
        threads.submit(threads.least_loaded(), (future, fn))
        return future

    def close(self) -> None:
        """Let the threads end once the calls already queued are done; never waits."""
        self._threads.close()
