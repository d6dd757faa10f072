"""Waiting in tests: on a condition, with a deadline, never a fixed sleep.

The one wait helper of :mod:`binder.testing`: the harness, the collector and the
conformance suite all use it, and it fails with an :class:`AssertionError` that says
what was awaited (a test failure, not an error).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import Callable

__all__ = ["wait_until"]

#: How often a condition is looked at when nothing signals a change.
_POLL = 0.005


async def wait_until(
    condition: Callable[[], object],
    timeout: float = 10.0,
    what: str = "condition",
    *,
    changed: asyncio.Event | None = None,
    detail: Callable[[], str] | None = None,
) -> None:
    """Wait until ``condition()`` is true (truthy); fail after ``timeout`` seconds.

    ``condition`` is looked at every few milliseconds, and at once whenever ``changed``
    is set (the waiter clears it).  It may return an awaitable (an HTTP request to the
    app, say), which is awaited each time.  On timeout the :class:`AssertionError` names
    ``what`` and, when given, adds ``detail()`` (what was seen instead).
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await _holds(condition):
        remaining = deadline - loop.time()
        if remaining <= 0:
            extra = f"; {detail()}" if detail is not None else ""
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}{extra}")
        if changed is None:
            await asyncio.sleep(min(_POLL, remaining))
            continue
        changed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(changed.wait(), min(remaining, 10 * _POLL))


async def _holds(condition: Callable[[], object]) -> object:
    result = condition()
    if inspect.isawaitable(result):
        result = await result
    return result
