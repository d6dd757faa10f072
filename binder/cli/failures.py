"""Reporting an exception raised by user code: its message and the user's frames.

Frames of eventbinder itself, of the standard library and of the import machinery are
left out unless the log level is DEBUG, where the whole traceback is shown.
"""

from __future__ import annotations

import os
import sysconfig
import traceback
from pathlib import Path

import binder

__all__ = ["describe_failure", "user_frames"]

_HIDDEN = tuple(
    str(Path(p).resolve()) + os.sep
    for p in (
        Path(binder.__file__).parent,
        Path(binder.__file__).parent.parent / "binders",
        sysconfig.get_paths()["stdlib"],
        sysconfig.get_paths()["platstdlib"],
    )
)
#: At most this many of the innermost user frames are shown.
MAX_FRAMES = 8


def _hidden(filename: str) -> bool:
    if filename.startswith("<"):  # <frozen importlib._bootstrap>, <string>
        return True
    return str(Path(filename).resolve()).startswith(_HIDDEN)


def _shown_path(filename: str) -> str:
    try:
        relative = os.path.relpath(filename)
    except ValueError:
        return filename
    return filename if relative.startswith("..") else relative


def user_frames(error: BaseException) -> list[str]:
    """``  file, line N, in function: code`` for each frame of user code in the
    traceback of ``error``, innermost last."""
    frames = [f for f in traceback.extract_tb(error.__traceback__) if not _hidden(f.filename)]
    lines = []
    for frame in frames[-MAX_FRAMES:]:
        code = f": {frame.line.strip()}" if frame.line else ""
        lines.append(f"  {_shown_path(frame.filename)}, line {frame.lineno}, in {frame.name}{code}")
    if len(frames) > MAX_FRAMES:
        lines.insert(0, f"  ... {len(frames) - MAX_FRAMES} outer frame(s)")
    return lines


def describe_failure(error: BaseException, *, debug: bool) -> list[str]:
    """Lines under the one-line error: the user's frames, or with ``debug`` the whole
    traceback."""
    if debug:
        return "".join(traceback.format_exception(error)).rstrip().splitlines()
    lines = user_frames(error)
    lines.append("  (--log-level DEBUG shows the whole traceback)")
    return lines
