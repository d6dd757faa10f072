"""Shared helpers: settings from the environment, output and log hints, timing,
generated files and the machine-wide lock (processes and ports: procs.py)."""

from __future__ import annotations

import fcntl
import os
import shutil
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

#: Every broker listens on loopback only.
HOST = "127.0.0.1"
#: scripts/, where the configuration templates live.
SCRIPTS = Path(__file__).resolve().parent.parent
#: Appended to PATH for every command (rabbitmq-server and friends live in sbin).
EXTRA_PATH = ("/usr/local/sbin", "/usr/sbin", "/sbin")
#: How long a run waits for another one's lock.
LOCK_WAIT = 600.0


class BrokerError(Exception):
    """Ends a run (or one broker's part of it): shown as ``brokers: error: MESSAGE``."""


@dataclass(frozen=True)
class Settings:
    state: Path  # EVENTBINDER_STATE: pid files, data, logs, generated configs
    cache: Path  # EVENTBINDER_CACHE: downloads kept across state folders (Kafka's jars)
    timeout: int  # EVENTBINDER_BROKER_TIMEOUT: seconds each broker may take to answer

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Settings:
        home = env.get("HOME") or "/root"
        raw = env.get("EVENTBINDER_BROKER_TIMEOUT") or "90"
        try:
            timeout = int(raw)
        except ValueError:
            raise BrokerError(f"EVENTBINDER_BROKER_TIMEOUT={raw!r}: want whole seconds") from None
        return cls(
            state=Path(env.get("EVENTBINDER_STATE") or "/tmp/eventbinder-brokers").absolute(),
            cache=Path(env.get("EVENTBINDER_CACHE") or f"{home}/.cache/eventbinder").absolute(),
            timeout=timeout,
        )


def prepare_environment() -> None:
    """What every command the tool runs gets: sbin on PATH and a UTF-8 C locale."""
    path = os.environ.get("PATH", "").split(os.pathsep)
    os.environ["PATH"] = os.pathsep.join(path + [d for d in EXTRA_PATH if d not in path])
    os.environ["LC_ALL"] = "C.UTF-8"


# ------------------------------------------------------------------------------ output
# One line at a time, flushed, so that brokers started in parallel threads interleave
# by whole lines (as the background jobs of the shell script did).
_output = threading.Lock()


def say(message: str) -> None:
    with _output:
        sys.stdout.write(message + "\n")
        sys.stdout.flush()


def err(message: str) -> None:
    with _output:
        sys.stderr.write(f"brokers: {message}\n")
        sys.stderr.flush()


def log_hint(*files: Path, lines: int = 15) -> None:
    """The end of each non-empty log, on stderr, for error messages."""
    for path in files:
        try:
            if path.stat().st_size == 0:
                continue
            with path.open("rb") as f:
                f.seek(max(0, path.stat().st_size - 64 * 1024))
                tail = f.read().decode(errors="replace").splitlines()[-lines:]
        except OSError:
            continue
        with _output:
            sys.stderr.write(f"brokers: ---- last lines of {path} ----\n")
            sys.stderr.write("".join(line + "\n" for line in tail))
            sys.stderr.flush()


def now() -> float:
    return time.monotonic()


def elapsed(start: float) -> str:
    """Seconds since ``start`` (from :func:`now`) with one decimal, e.g. ``4.2s``."""
    ms = int((time.monotonic() - start) * 1000)
    return f"{ms // 1000}.{ms % 1000 // 100}s"


def timestamp() -> str:
    """Like ``date -Is``: 2025-01-31T12:00:00+00:00."""
    return datetime.now().astimezone().isoformat(timespec="seconds")


# ------------------------------------------------------------------------------ files
def ensure_dirs(*paths: Path, mode: int = 0o755, owner: str | None = None) -> None:
    """Like ``install -d [-o OWNER -g OWNER] -m MODE PATH...``."""
    for path in paths:
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(mode)
        if owner is not None:
            shutil.chown(path, owner, owner)


def write_atomic(path: Path, text: str) -> None:
    """Write ``path`` through ``path.new`` and a rename: never half written."""
    new = path.with_name(path.name + ".new")
    new.write_text(text)
    new.replace(path)


def render(template: Path, values: Mapping[str, str]) -> str:
    """The template with each placeholder (``@NAME@``) replaced by its value."""
    text = template.read_text()
    for placeholder, value in values.items():
        text = text.replace(placeholder, value)
    return text


def append_line(path: Path, line: str) -> None:
    with path.open("a") as f:
        f.write(line + "\n")


# ------------------------------------------------------------------------------- lock
@contextmanager
def locked(state: Path) -> Iterator[None]:
    """One up/down/restart at a time on this machine: ``flock`` on state/brokers.lock.
    Python opens the file close-on-exec and subprocesses close other descriptors, so no
    daemon started under the lock inherits it."""
    state.mkdir(parents=True, exist_ok=True)
    path = state / "brokers.lock"
    with path.open("a") as f:
        if not _try_lock(f.fileno()):
            say(f"brokers: waiting for another scripts/brokers run (lock {path})")
            deadline = now() + LOCK_WAIT
            while not _try_lock(f.fileno()):
                if now() >= deadline:
                    raise BrokerError(
                        f"another scripts/brokers run still holds {path} after {LOCK_WAIT:g} s"
                    )
                time.sleep(0.2)
        yield


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True
