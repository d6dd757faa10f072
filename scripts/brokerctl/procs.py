"""Processes and ports: TCP checks, pid files, waiting with deadlines, graceful then
forced stops, and running commands with their output in logs."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from pathlib import Path

from .common import HOST, err, now


def port_open(port: int, host: str = HOST) -> bool:
    """Something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


def cmdline(pid: int) -> str | None:
    """The process's command line, arguments joined by spaces (None when gone)."""
    try:
        return (
            Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        )
    except OSError:
        return None


def pid_of(pidfile: Path, pattern: str) -> int | None:
    """The pid in ``pidfile`` if that process lives and its command line contains
    ``pattern`` (a stale pid file or a reused pid does not count)."""
    try:
        digits = "".join(c for c in pidfile.read_text(errors="replace") if c in "0123456789")
    except OSError:
        return None
    if not digits or int(digits) <= 0:
        return None
    pid = int(digits)
    if not alive(pid):
        return None
    command = cmdline(pid)
    return pid if command is not None and pattern in command else None


def find_process(pattern: str) -> bool:
    """Some other process's command line contains ``pattern`` (like ``pgrep -f``)."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            command = cmdline(int(entry.name))
            if command is not None and pattern in command:
                return True
    return False


def terminate(pid: int, sig: int = signal.SIGTERM) -> None:
    with suppress(OSError):
        os.kill(pid, sig)


def wait_exit(pid: int, seconds: float) -> None:
    """Wait for a process to exit; SIGKILL it after ``seconds``."""
    deadline = now() + seconds
    while alive(pid):
        if now() >= deadline:
            err(f"pid {pid} did not exit within {seconds:g} s, killing it")
            terminate(pid, signal.SIGKILL)
            time.sleep(0.5)
            return
        time.sleep(0.2)


def wait_until(
    ready: Callable[[], bool],
    seconds: float,
    interval: float,
    check: Callable[[], None] | None = None,
) -> bool:
    """Call ``ready`` every ``interval`` s until it is true (True) or ``seconds`` have
    passed (False); ``check``, called after each miss, raises to give up early."""
    deadline = now() + seconds
    while not ready():
        if check is not None:
            check()
        if now() >= deadline:
            return False
        time.sleep(interval)
    return True


# Process groups of commands running with a timeout (they are not in the terminal's
# group): ended by kill_children() when the run is interrupted.
_children: set[int] = set()


def run(
    argv: Sequence[str | Path],
    *,
    log: Path | None = None,
    stderr_log: Path | None = None,
    append: bool = True,
    timeout: float | None = None,
    cwd: str | Path | None = None,
    env: Mapping[str, str] | None = None,
) -> int:
    """Run a command to its end and return its exit code. Its stdin is /dev/null, its
    stdout goes to ``log`` (else nowhere), its stderr to ``stderr_log``, else ``log``.
    After ``timeout`` seconds its process group gets SIGTERM (SIGKILL 5 s later) and
    124 is returned, as with timeout(1). No file descriptor of this process but those
    is inherited (close_fds): a daemon it leaves behind never holds the lock."""
    mode = "ab" if append else "wb"
    with (
        open(log, mode) if log else open(os.devnull, "wb") as out,
        open(stderr_log, "ab") if stderr_log else open(os.devnull, "wb") as errors,
    ):
        proc = subprocess.Popen(
            [str(a) for a in argv],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=errors if stderr_log or not log else subprocess.STDOUT,
            cwd=cwd,
            env=None if env is None else dict(env),
            close_fds=True,
            process_group=0 if timeout else None,
        )
    if not timeout:
        return proc.wait()
    _children.add(proc.pid)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        _signal_group(proc.pid, signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            _signal_group(proc.pid, signal.SIGKILL)
            proc.wait()
        return 124
    finally:
        _children.discard(proc.pid)


def _signal_group(pgid: int, sig: int) -> None:
    with suppress(OSError):
        os.killpg(pgid, sig)


def kill_children() -> None:
    for pgid in list(_children):
        _signal_group(pgid, signal.SIGTERM)
