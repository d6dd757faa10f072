"""Deadlines for many things that share one timeout: one timer for all of them.

Binders use it to fail publishes the broker has not acknowledged in time (MQTT QoS 1
publishes, Kafka record batches, RabbitMQ publishes whose I/O thread is held up in a
reconnect).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

__all__ = ["Deadlines"]


class _Settles(Protocol):
    def done(self) -> bool: ...


K = TypeVar("K")
T = TypeVar("T", bound=_Settles)


class Deadlines(Generic[K, T]):
    """Calls ``on_expired(key, item)`` for an item (a future, say) not ``done()``
    ``timeout`` seconds after :meth:`add`, on the event loop.

    The items share one timeout, so they expire in the order they were added: a queue
    in that order and one timer for its head do, instead of a timer each. Done items
    leave the head of the queue as new ones are added (acknowledgements come mostly in
    order), so the queue holds about the items not done yet.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        timeout: float,
        on_expired: Callable[[K, T], None],
    ) -> None:
        self._loop = loop
        self._timeout = timeout
        self._on_expired = on_expired
        self._queue: deque[tuple[float, K, T]] = deque()
        self._timer: asyncio.TimerHandle | None = None

    def __len__(self) -> int:
        return len(self._queue)

    def add(self, key: K, item: T) -> None:
        """Watch ``item`` (``key`` is handed back to ``on_expired``)."""
        queue = self._queue
        while queue and queue[0][2].done():
            queue.popleft()
        queue.append((self._loop.time() + self._timeout, key, item))
        if self._timer is None:
            self._timer = self._loop.call_at(queue[0][0], self._fire)

    def _fire(self) -> None:
        self._timer = None
        queue, now = self._queue, self._loop.time()
        while queue and (queue[0][2].done() or queue[0][0] <= now):
            _, key, item = queue.popleft()
            if not item.done():
                self._on_expired(key, item)
        if queue:
            self._timer = self._loop.call_at(queue[0][0], self._fire)

    def clear(self) -> None:
        """Forget every item; stop the timer."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._queue.clear()
