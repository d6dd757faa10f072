"""A watchdog thread that notices when the event loop is blocked, and says by whom.

Heartbeats (Kafka's group membership, MQTT keepalives) and acknowledgements all run on
the event loop; code that blocks it (``time.sleep``, a synchronous database call in an
``async def`` handler) silently costs the app its broker sessions.  The watchdog's
thread checks that a timer on the loop keeps firing; when it has not fired for longer
than ``threshold`` seconds, it logs one WARNING naming the handler (and so the binding)
found on the loop thread's stack, with the file and line where it is stuck.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import threading
import time
from collections.abc import Mapping
from types import CodeType, FrameType

__all__ = ["LoopWatchdog"]

log = logging.getLogger("binder.watchdog")

_OWN_CODE = ("/asyncio/", "/binder/", "/binders/", "/threading.py", "/selectors.py")


class LoopWatchdog:
    """Warn once per stall when the loop has not run for ``threshold`` seconds.

    ``handlers`` maps handler code objects to the binding names they serve, so the
    warning can name the binding whose handler is blocking.
    """

    def __init__(self, threshold: float, handlers: Mapping[CodeType, str] | None = None) -> None:
        self.threshold = threshold
        self.handlers = dict(handlers or {})
        self.stalls = 0
        """Stalls noticed so far."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._last_beat = time.monotonic()
        self._timer: asyncio.TimerHandle | None = None
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start watching the running loop (no-op with a threshold of 0)."""
        if self.threshold <= 0 or self._thread is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._beat()
        self._thread = threading.Thread(
            target=self._watch, name="eventbinder-watchdog", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop watching; idempotent."""
        self._stopped.set()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._thread = None

    def _beat(self) -> None:
        self._last_beat = time.monotonic()
        if not self._stopped.is_set() and self._loop is not None:
            self._timer = self._loop.call_later(self.threshold / 4, self._beat)

    def _watch(self) -> None:
        warned = False
        interval = self.threshold / 4
        while not self._stopped.wait(interval):
            blocked = time.monotonic() - self._last_beat
            if blocked <= self.threshold:
                if warned:
                    log.info("the event loop runs again (it was blocked for about %.1fs)", blocked)
                warned = False
                continue
            if not warned:
                warned = True
                self.stalls += 1
                with contextlib.suppress(Exception):
                    log.warning("%s", self.describe(blocked))

    def describe(self, blocked: float) -> str:
        """The warning for a stall of ``blocked`` seconds so far."""
        frame = sys._current_frames().get(self._loop_thread)
        binding, where = self._culprit(frame)
        who = f"the handler of binding {binding!r}" if binding else "code running on it"
        at = f" at {where}" if where else ""
        return (
            f"the event loop has been blocked for {blocked:.1f}s by {who}{at}; heartbeats "
            "and acknowledgements wait meanwhile. Blocking code belongs in a plain def "
            "handler (run in a worker thread) or behind asyncio.to_thread"
        )

    def _culprit(self, frame: FrameType | None) -> tuple[str | None, str | None]:
        """The binding whose handler is on the stack, and the line to look at: in that
        handler if it is there, else the innermost frame outside asyncio and eventbinder."""
        where = None
        while frame is not None:
            code = frame.f_code
            if code in self.handlers:
                return self.handlers[code], _position(frame)
            if where is None and not any(part in code.co_filename for part in _OWN_CODE):
                where = _position(frame)
            frame = frame.f_back
        return None, where


def _position(frame: FrameType) -> str:
    code = frame.f_code
    return f"{code.co_filename}:{frame.f_lineno} in {code.co_name}"
