"""An app's suppliers at run time: each polled on its schedule, its results published.

A supplier's loop runs as a task of its own; an ``async def`` supplier is called on the
event loop, a plain ``def`` one in a worker thread of its own (unless
``threaded=False``).  A failing call is logged and tried again at the next tick.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from binder.dispatch import CallThreads

if TYPE_CHECKING:
    from binder.app import HandlerDecl
    from binder.output import OutputPort

__all__ = ["Suppliers"]

# The runtime's records keep the one logger name they always had.
log = logging.getLogger("binder.runtime")


class Suppliers:
    """The suppliers among ``handlers``, publishing to ``outputs`` (by handler name).

    ``outputs`` is read when a supplier runs, so it may be filled after construction.
    """

    def __init__(
        self, handlers: Mapping[str, HandlerDecl], outputs: Mapping[str, OutputPort]
    ) -> None:
        self._handlers = handlers
        self._outputs = outputs
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._threads: dict[str, CallThreads] = {}

    def start(self) -> None:
        """Start polling every supplier on its schedule."""
        for decl in self._handlers.values():
            if decl.kind == "supplier":
                task = asyncio.create_task(self._run(decl), name=f"supplier:{decl.name}")
                self._tasks.append(task)

    async def poll(self, name: str) -> Any:
        """Call supplier ``name`` once now and publish its result; return the value."""
        decl = self._handlers[name]
        if decl.kind != "supplier":
            raise ValueError(f"{name!r} is a {decl.kind}, not a supplier")
        value = await self._call(decl)
        if value is not None:
            await self._outputs[name].publish(value)
        return value

    async def stop(self) -> None:
        """End the loops (a call in progress is cancelled) and their threads."""
        self._stopping.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for threads in self._threads.values():
            threads.close()

    async def _call(self, decl: HandlerDecl) -> Any:
        """Call a supplier: ``async def`` on the loop, ``def`` in a thread of its own."""
        function = decl.invoker.function
        if decl.invoker.is_async:
            return await function()
        if not decl.invoker.threaded:
            return function()
        threads = self._threads.get(decl.name)
        if threads is None:
            threads = self._threads[decl.name] = CallThreads(1, f"eventbinder:supplier:{decl.name}")
        return await threads.call(function)

    async def _run(self, decl: HandlerDecl) -> None:
        loop = asyncio.get_running_loop()
        output = self._outputs[decl.name]
        assert decl.every is not None
        deadline = loop.time()
        while not self._stopping.is_set():
            try:
                value = await self._call(decl)
                if value is not None:
                    await output.publish(value)
            except Exception:
                log.exception("supplier %s failed; trying again in %.2fs", decl.name, decl.every)
            deadline += decl.every
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), max(0.0, deadline - loop.time()))
