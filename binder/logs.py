"""Logging helpers: keep a failure that repeats from flooding the log.

The ``binder`` command installs :class:`RepeatFilter` on its log handler. An
application that configures logging itself can do the same::

    handler.addFilter(RepeatFilter())
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["RepeatFilter"]


@dataclass
class _Window:
    started: float
    passed: int = 0
    suppressed: int = 0


class RepeatFilter(logging.Filter):
    """Let through at most ``burst`` records of one kind per ``interval`` seconds.

    A kind is a logger, a level and a message template (the format string before its
    arguments are filled in, as structured loggers such as zap sample by message), so
    "message 17 failed: ..." and "message 18 failed: ..." count as the same kind.
    Records below ``level`` always pass. The last record let through in a window says
    that more will be suppressed, and the first one after a window in which some were
    says how many, so nothing disappears without a word.
    """

    def __init__(
        self,
        *,
        burst: int = 5,
        interval: float = 10.0,
        level: int = logging.WARNING,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        if burst < 1 or interval <= 0:
            raise ValueError("burst must be >= 1 and interval > 0")
        self.burst = burst
        self.interval = interval
        self.level = level
        self._clock = clock
        self._windows: dict[tuple[str, int, str], _Window] = {}
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        """Return whether ``record`` is logged; may note suppressions on it."""
        if record.levelno < self.level:
            return True
        key = (record.name, record.levelno, str(record.msg))
        now = self._clock()
        with self._lock:
            window = self._windows.get(key)
            suppressed = 0
            if window is None or now - window.started >= self.interval:
                suppressed = window.suppressed if window is not None else 0
                window = self._windows[key] = _Window(started=now)
                if len(self._windows) > 1024:
                    self._forget_old(now)
            if window.passed >= self.burst:
                window.suppressed += 1
                return False
            window.passed += 1
            closing = window.passed == self.burst
            remaining = self.interval - (now - window.started)
        notes = []
        if suppressed:
            notes.append(f"{suppressed} more like this were suppressed")
        if closing:
            notes.append(f"more like this are suppressed for {remaining:.0f}s")
        if notes:
            record.msg = f"{record.msg} [{'; '.join(notes)}]"
        return True

    def _forget_old(self, now: float) -> None:
        for key, window in list(self._windows.items()):
            if now - window.started >= self.interval and not window.suppressed:
                del self._windows[key]
