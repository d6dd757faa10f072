"""A bounded, order-keeping hand-off from paho's network thread to the event loop."""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["Handoff"]

T = TypeVar("T")
_POLL = 0.2


class Handoff(Generic[T]):
    """Move items from one producer thread to the event loop, in order, bounded.

    ``put`` (network thread) takes one of ``capacity`` slots, blocking while none is
    free, so a slow consumer stops paho reading the socket: TCP pushes back on the
    broker instead of memory growing.  With QoS 1 and MQTT 5 the broker never has more
    than the receive maximum (= ``capacity``) messages outstanding, so ``put`` does
    not block in practice.  The event loop is woken once per batch, not per item.
    ``release`` (event loop) frees a slot when an item is completely finished.
    """

    def __init__(
        self, loop: asyncio.AbstractEventLoop, capacity: int, deliver: Callable[[T], None]
    ) -> None:
        self._loop = loop
        self._deliver = deliver
        self._slots = threading.Semaphore(capacity)
        self._lock = threading.Lock()
        self._buffer: deque[T] = deque()
        self._scheduled = False
        self._closed = False

    def put(self, item: T) -> bool:
        """Queue ``item`` for the event loop; False once closed (the item is dropped)."""
        while not self._slots.acquire(timeout=_POLL):
            if self._closed:
                return False
        if self._closed:
            self._slots.release()
            return False
        with self._lock:
            self._buffer.append(item)
            if self._scheduled:
                return True
            self._scheduled = True
        try:
            self._loop.call_soon_threadsafe(self._drain)
        except RuntimeError:  # loop closed
            return False
        return True

    def _drain(self) -> None:
        with self._lock:
            items = list(self._buffer)
            self._buffer.clear()
            self._scheduled = False
        for item in items:
            self._deliver(item)

    def release(self) -> None:
        """Free the slot of a finished item."""
        self._slots.release()

    def close(self) -> None:
        """Stop accepting items; a blocked ``put`` returns False within a moment."""
        self._closed = True
