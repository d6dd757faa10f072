"""A handler that records what it receives, for tests of apps and binders."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from binder.message import Message
from binder.testing.waiting import wait_until

__all__ = ["Collector"]


class Collector:
    """An ``async (Message) -> None`` handler that records messages.

    ``attempts`` holds every call, ``messages`` the calls that succeeded.  With
    ``fail``, a call for which ``fail(message)`` is true raises (the engine then
    retries or hands the message back, as for any failing handler).
    """

    def __init__(self, fail: Callable[[Message], bool] | None = None) -> None:
        self.messages: list[Message] = []
        self.attempts: list[Message] = []
        self._fail = fail
        self._changed = asyncio.Event()

    async def __call__(self, message: Message) -> None:
        """Record ``message`` (or fail on it)."""
        self.attempts.append(message)
        self._changed.set()
        if self._fail is not None and self._fail(message):
            raise RuntimeError(f"collector: deliberate failure of {message.message_id}")
        self.messages.append(message)

    async def wait_until(
        self, condition: Callable[[], object], timeout: float = 10.0, what: str = "condition"
    ) -> None:
        """Wait for ``condition``, looking again whenever a message arrives."""
        await wait_until(
            condition,
            timeout,
            what,
            changed=self._changed,
            detail=lambda: f"got {len(self.messages)} message(s) in {len(self.attempts)} call(s)",
        )

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[Message]:
        """Wait until ``count`` messages were received; return all received so far."""
        await self.wait_until(lambda: len(self.messages) >= count, timeout, f"{count} message(s)")
        return self.messages

    def payloads(self) -> list[Any]:
        """The JSON payloads received so far."""
        return [m.json() for m in self.messages]
