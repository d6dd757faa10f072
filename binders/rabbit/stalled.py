"""What a reconnected link could not restore yet, and when to try it again.

After a reconnect the link re-declares its recorded topology and re-opens its consumers.
In a cluster one of them may fail while the rest can go on: a classic queue whose home
node is down answers ``404 NOT_FOUND - home node ... is down`` until that node is back.
One such queue must not keep the whole link down (every other queue, and every
publish, would wait for the dead node), so the link carries on without it and retries
it with a growing, jittered wait until it succeeds.  I/O thread only.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from binder.backoff import Backoff

__all__ = ["Stalled"]

log = logging.getLogger("binders.rabbit")


class Stalled:
    """Declarations and consumers waiting for another attempt, with their backoff."""

    def __init__(self, label: str, backoff: Backoff) -> None:
        self._label = label
        self._backoff = backoff
        self.declarations: dict[Any, str] = {}
        """Declaration -> why it failed last."""
        self.consumers: dict[Any, str] = {}
        """Consumer handle -> why it could not resume last."""
        self._failures = 0
        self._retry_at = 0.0

    def __bool__(self) -> bool:
        return bool(self.declarations or self.consumers)

    def declaration_failed(self, decl: Any, reason: str) -> None:
        """``decl`` could not be declared; it is tried again later."""
        self.declarations[decl] = reason

    def consumer_failed(self, handle: Any, reason: str) -> None:
        """``handle`` could not resume consuming; it is tried again later."""
        self.consumers[handle] = reason

    def forget_consumer(self, handle: Any) -> None:
        """The consumer was closed meanwhile: nothing to resume."""
        self.consumers.pop(handle, None)

    def due(self, now: float) -> bool:
        """Whether something waits and its next attempt is due."""
        return bool(self) and now >= self._retry_at

    def schedule(self) -> None:
        """After a round of attempts: log what still waits, and when it is tried again
        (the wait grows with every round that left something behind)."""
        if not self:
            self._failures = 0
            return
        self._failures += 1
        delay = self._backoff.delay(self._failures)
        self._retry_at = time.monotonic() + delay
        what = [f"declare {_name(d)} ({why})" for d, why in self.declarations.items()] + [
            f"consume from queue '{h.queue}' ({why})" for h, why in self.consumers.items()
        ]
        log.warning(
            "%s: cannot %s; the rest goes on; next attempt in %.1fs",
            self._label,
            "; cannot ".join(what),
            delay,
        )

    def clear(self) -> None:
        """A new connection restores everything afresh."""
        self.declarations.clear()
        self.consumers.clear()
        self._failures = 0
        self._retry_at = 0.0


def _name(decl: Any) -> str:
    kind = type(decl).__name__.removesuffix("Decl").lower()
    if kind == "bind":
        return f"the binding of queue '{decl.queue}' to exchange '{decl.exchange}'"
    return f"{kind} '{decl.name}'"
