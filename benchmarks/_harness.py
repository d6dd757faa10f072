"""Shared pieces of the benchmarks: cases in subprocesses, result lines, medians, tables.

Standard library only, so a case can run under any interpreter (including the cached
virtualenv that holds third-party frameworks, see :func:`ensure_venv`).

A case is a subprocess that prints exactly one result line, ``RESULT {json}``, last;
:func:`run_case` runs it with a timeout and returns that JSON (or an error row).  The
child measures its own peak memory with :func:`peak_rss_mib` (that process alone: one
case per process).
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

__all__ = [
    "RESULT_PREFIX",
    "emit",
    "ensure_venv",
    "format_table",
    "median",
    "paired_ratios",
    "peak_rss_mib",
    "run_case",
]

RESULT_PREFIX = "RESULT "
Row = dict[str, Any]


def peak_rss_mib() -> float:
    """Peak resident set size of this process in MiB.

    Linux's ``VmHWM``: the high-water mark of this program's own memory.  Not
    ``ru_maxrss``: Linux carries the pre-``exec`` high-water mark over ``exec``, so a
    child's ``ru_maxrss`` is at least its parent's RSS when it was spawned (a parent
    that grew to 64 MiB made every later child report 64 MiB).  ``ru_maxrss`` is the
    fallback where ``/proc`` is missing.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def emit(row: Row) -> None:
    """Print a case's result line (the last line of its stdout)."""
    print(RESULT_PREFIX + json.dumps(row), flush=True)


def _tail(file: IO[bytes], lines: int = 25, size: int = 65536) -> str:
    """The last ``lines`` lines among the last ``size`` bytes of ``file``."""
    file.seek(0, os.SEEK_END)
    file.seek(max(0, file.tell() - size))
    text = file.read().decode("utf-8", "replace")
    return "\n".join(text.rstrip().splitlines()[-lines:])


def run_case(argv: Sequence[str], timeout: float) -> tuple[Row, str]:
    """Run one case; return (its result row, the tail of its stderr).

    A child that crashes, times out or prints no result line gives a row with an
    ``error`` key instead of raising, so one broken case does not end the run.  The
    child's output goes to temporary files, not into this process (a chatty child must
    not grow the parent: see :func:`peak_rss_mib`).
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        try:
            done = subprocess.run(list(argv), stdout=out, stderr=err, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"error": f"killed after {timeout:.0f}s without a result"}, _tail(err)
        for line in reversed(_tail(out, lines=50).splitlines()):
            if line.startswith(RESULT_PREFIX):
                row: Row = json.loads(line[len(RESULT_PREFIX) :])
                return row, _tail(err)
        return {"error": f"exit status {done.returncode}, no result line"}, _tail(err)


def median(values: Sequence[float]) -> float | None:
    """The median, or None for no values."""
    return statistics.median(values) if values else None


def paired_ratios(
    numerators: Sequence[float | None], denominators: Sequence[float | None]
) -> list[float]:
    """``a / b`` for each run where both sides have a figure (runs paired by index)."""
    return [a / b for a, b in zip(numerators, denominators, strict=False) if a is not None and b]


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]], indent: str = "") -> str:
    """A plain-text table; the first column is left-aligned, the others right-aligned."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        parts = [
            str(c).ljust(w) if i == 0 else str(c).rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return (indent + "  ".join(parts)).rstrip()

    return "\n".join([line(header), *(line(r) for r in rows)])


def ensure_venv(path: Path, candidates: Sequence[Sequence[str]]) -> Path:
    """Return the python of a cached virtualenv at ``path``, creating it on first use.

    ``candidates`` are pip requirement lists tried in order until one installs (e.g.
    first with a pinned dependency, then without the pin).  The virtualenv is created
    from this interpreter's base Python.  A marker file records what was installed; a
    virtualenv without it (an interrupted install) is built again.
    """
    python = path / "bin" / "python"
    marker = path / "eventbinder-bench.json"
    if python.exists() and marker.exists():
        return python
    print(f"creating {path} (once; later runs reuse it)", file=sys.stderr, flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(path)], check=True)
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    for requirements in candidates:
        done = subprocess.run([*pip, *requirements], capture_output=True, text=True, check=False)
        if done.returncode == 0:
            marker.write_text(json.dumps({"requirements": list(requirements)}) + "\n")
            return python
        print(
            f"pip install {' '.join(requirements)} failed:\n{done.stderr[-2000:]}",
            file=sys.stderr,
            flush=True,
        )
    raise RuntimeError(f"cannot install any of {candidates} into {path}")
