"""A closed standard output (``binder tail ... | head -3``) ends the command quietly.

Python ignores SIGPIPE, so every later write to a closed pipe raises
``BrokenPipeError``: in a handler that prints, each message would fail, be retried and
be dead-lettered, with a traceback each. :class:`ClosedStdoutGuard` instead turns the
first such error into a request to stop, and sends later writes nowhere.
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any, TextIO

__all__ = ["ClosedStdoutGuard", "guard_stdout"]


class ClosedStdoutGuard:
    """Wraps ``sys.stdout``: writes go through until the reader is gone, then nowhere.

    ``on_closed`` is called once, from whichever thread wrote first after the reader
    went away.
    """

    def __init__(self, stream: TextIO, on_closed: Callable[[], None]) -> None:
        self._stream = stream
        self._on_closed = on_closed
        self._lock = threading.Lock()
        self.closed_by_reader = False

    def write(self, text: str) -> int:
        """Write ``text``, or swallow it once the reader has gone."""
        if self.closed_by_reader:
            return len(text)
        try:
            return self._stream.write(text)
        except OSError as exc:
            self._reader_gone(exc)
            return len(text)

    def flush(self) -> None:
        """Flush, unless the reader has gone."""
        if self.closed_by_reader:
            return
        try:
            self._stream.flush()
        except OSError as exc:
            self._reader_gone(exc)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)

    def _reader_gone(self, exc: OSError) -> None:
        if not isinstance(exc, BrokenPipeError) and exc.errno != errno.EPIPE:
            raise exc
        with self._lock:
            if self.closed_by_reader:
                return
            self.closed_by_reader = True
        # Point the descriptor at /dev/null so that the interpreter's own flush at exit
        # does not complain about the pipe either.
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
            os.close(devnull)
        self._on_closed()


@contextlib.contextmanager
def guard_stdout(on_closed: Callable[[], None]) -> Iterator[ClosedStdoutGuard]:
    """Install a :class:`ClosedStdoutGuard` as ``sys.stdout`` for the block."""
    import sys

    original = sys.stdout
    guard = ClosedStdoutGuard(original, on_closed)
    sys.stdout = guard
    try:
        yield guard
    finally:
        sys.stdout = original
