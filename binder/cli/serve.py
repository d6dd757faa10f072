"""Serving an app until a signal, ``--max-messages``, ``--duration`` or a closed stdout."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal

from binder.cli.stdout import guard_stdout
from binder.running import AppRun

__all__ = ["FORCED_EXIT", "NEVER_STARTED", "serve"]

log = logging.getLogger("binder.cli")
#: Exit code after a second signal (no draining), as a shell reports SIGINT.
FORCED_EXIT = 130
#: Exit code when ``--duration`` ran out before the app could start.
NEVER_STARTED = 1


async def serve(run: AppRun, duration: float | None) -> int:
    """Start ``run`` (what ``app.run(...)`` returned) and run it until asked to stop;
    stop it; return an exit code.

    ``duration`` bounds the whole run, the time spent waiting for a broker included.
    """
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = 0

    def on_signal(signum: int) -> None:
        nonlocal signals
        signals += 1
        if signals == 1:
            log.warning(
                "%s received: finishing in-flight messages (again to force exit)",
                signal.Signals(signum).name,
            )
            stop.set()
        else:
            log.error("second signal: exiting without draining")
            os._exit(FORCED_EXIT)

    def on_stdout_closed() -> None:
        def request_stop() -> None:
            if not stop.is_set():
                log.info("standard output was closed: stopping")
                stop.set()

        loop.call_soon_threadsafe(request_stop)

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal, signum)
    deadline = None if duration is None else loop.time() + duration
    with guard_stdout(on_stdout_closed):
        try:
            return await _run(run, stop, deadline)
        finally:
            await run.stop()
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)


async def _run(run: AppRun, stop: asyncio.Event, deadline: float | None) -> int:
    loop = asyncio.get_running_loop()
    runtime = run.runtime
    starting = asyncio.ensure_future(run.start())
    stopping = asyncio.ensure_future(stop.wait())
    done = asyncio.ensure_future(runtime.done.wait())
    timeout = None if deadline is None else max(0.0, deadline - loop.time())
    try:
        await asyncio.wait({starting, stopping}, timeout=timeout, return_when="FIRST_COMPLETED")
        if not starting.done():
            states = sorted(set(runtime.status().values()))
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await starting
            if stop.is_set():
                return 0
            log.error(
                "--duration ran out before the app started (%s)", "; ".join(states) or "starting"
            )
            return NEVER_STARTED
        starting.result()
        timeout = None if deadline is None else max(0.0, deadline - loop.time())
        await asyncio.wait({stopping, done}, timeout=timeout, return_when="FIRST_COMPLETED")
        return 0
    finally:
        stopping.cancel()
        done.cancel()
