"""``run_app``: run an app on the in-memory binder and talk to it from a test."""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

from binder.app import App
from binder.backoff import Backoff
from binder.codecs import encode
from binder.config import BinderConfig, load_settings
from binder.message import Message
from binder.plugins import BinderRegistry, load_registry
from binder.runtime import Runtime
from binder.spi import Binder
from binders.memory.binder import MemoryBinder

__all__ = ["Harness", "run_app"]


class Harness:
    """A running app on one in-memory binder, plus tools to drive and observe it.

    Every message published to any destination (by the app or by :meth:`send`) is
    recorded; :meth:`receive` returns them one at a time per destination.
    """

    def __init__(self, app: App, binder: MemoryBinder) -> None:
        self.app = app
        self.binder = binder
        self.runtime: Runtime | None = None
        self._published: dict[str, list[Message]] = defaultdict(list)
        self._cursors: dict[str, int] = defaultdict(int)
        self._changed = asyncio.Event()

    def _record(self, destination: str, message: Message) -> None:
        self._published[destination].append(message.copy())
        self._changed.set()

    async def send(
        self,
        destination: str,
        payload: Any,
        *,
        headers: Mapping[str, str] | None = None,
        key: str | None = None,
        content_type: str = "application/json",
    ) -> Message:
        """Publish ``payload`` (encoded for ``content_type``) to ``destination``."""
        message = Message(
            encode(payload, content_type),
            dict(headers or {}),
            key,
            content_type,
            destination=destination,
        )
        self.binder.broker.publish(destination, message.copy())
        return message

    def published(self, destination: str) -> list[Message]:
        """Every message published to ``destination`` so far, oldest first."""
        return list(self._published.get(destination, ()))

    async def receive(self, destination: str, timeout: float = 2.0) -> Message:
        """The next message published to ``destination`` not yet received here.

        Raises :class:`TimeoutError` when none arrives within ``timeout`` seconds.
        """
        await self.wait_for(
            lambda: len(self._published.get(destination, ())) > self._cursors[destination],
            timeout=timeout,
            what=f"a message on {destination!r}",
        )
        message = self._published[destination][self._cursors[destination]]
        self._cursors[destination] += 1
        return message

    def dead_letters(self, destination: str, group: str | None = None) -> list[Message]:
        """Dead letters of ``destination`` for ``group`` (None: anonymous consumers)."""
        return self.binder.dead_letters(destination, group)

    @property
    def handled(self) -> int:
        """Messages the app's consumer bindings finished (handled or dead-lettered)."""
        return self.runtime.handled if self.runtime else 0

    async def wait_for(
        self, condition: Callable[[], bool], timeout: float = 2.0, what: str = "condition"
    ) -> None:
        """Wait until ``condition()`` is true, re-checking on every publish and tick."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not condition():
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                # Wake on publishes; re-check at least every 10 ms for other state.
                await asyncio.wait_for(self._changed.wait(), min(remaining, 0.01))

    async def wait_handled(self, count: int, timeout: float = 2.0) -> None:
        """Wait until the app finished ``count`` messages in total."""
        await self.wait_for(lambda: self.handled >= count, timeout, f"{count} handled message(s)")

    async def poll(self, supplier: str) -> Any:
        """Call supplier ``supplier`` once now and publish what it returns."""
        assert self.runtime is not None
        return await self.runtime.poll_supplier(supplier)


@contextlib.asynccontextmanager
async def run_app(
    app: App,
    config: str | Path | Mapping[str, Any] | None = None,
    *,
    suppliers: bool = True,
    registry: BinderRegistry | None = None,
) -> AsyncIterator[Harness]:
    """Run ``app`` on one in-memory binder, whatever binders the config names.

    ``config`` (a file path or a mapping) supplies destinations, groups, retry
    settings and so on; without it the app runs on its decorator defaults.  The
    working directory's ``binder.yaml`` is not read.  ``suppliers=False`` keeps
    suppliers from running on their schedule (call :meth:`Harness.poll` instead).
    """
    registry = registry or load_registry()
    settings = load_settings(config, registry=registry, discover=False, environ={})
    memory = MemoryBinder("memory")
    harness = Harness(app, memory)
    untap = memory.broker.add_tap(harness._record)

    def same_memory_binder(_: BinderConfig) -> Binder:
        return memory

    runtime = Runtime(
        app,
        settings,
        registry,
        binder_factory=same_memory_binder,
        start_suppliers=suppliers,
        connect_backoff=Backoff(0.0, 1.0, 0.0),
        drain_timeout=10.0,
    )
    harness.runtime = runtime
    await runtime.start()
    try:
        yield harness
    finally:
        await runtime.stop()
        untap()
