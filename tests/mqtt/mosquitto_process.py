"""Throwaway Mosquitto brokers for tests: started on free loopback ports, killed after.

Each broker is a ``mosquitto`` process with a minimal configuration file of its own
(anonymous, no persistence, plus what a test adds, a bridge say), its output in a log
file next to it.  Starting waits until
the port answers (a deadline, no fixed sleep); a broker whose port was taken meanwhile
is started again on another port.  Where the ``mosquitto`` binary is missing the test
is skipped on a laptop and fails in CI, as for a broker that is not running.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from binder.testing.brokers import in_ci

__all__ = [
    "Mosquitto",
    "MosquittoFactory",
    "free_port",
    "mosquitto_brokers",
    "require_mosquitto",
]

HOST = "127.0.0.1"
#: Seconds a broker may take to listen, or to exit after SIGTERM before SIGKILL.
_DEADLINE = 10.0
_POLL = 0.02


def require_mosquitto() -> str:
    """The ``mosquitto`` binary; skip (laptop) or fail (CI) when it is missing."""
    binary = shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if Path(p).exists()),
        None,
    )
    if binary is None:
        reason = "the mosquitto binary is not installed (apt-get install mosquitto)"
        if in_ci():
            pytest.fail(f"CI=true and {reason}", pytrace=False)
        pytest.skip(reason)
    return binary


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _answers(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


class Mosquitto:
    """One running broker process."""

    def __init__(self, binary: str, directory: Path, name: str, extra: str = "") -> None:
        self.name = name
        self._extra = extra
        self._binary = binary
        self._directory = directory
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        return f"<Mosquitto {self.name} {self.address}>"

    @property
    def address(self) -> str:
        """``host:port``."""
        return f"{HOST}:{self.port}"

    def url(self, userinfo: str = "") -> str:
        """``mqtt://[userinfo@]host:port``."""
        return f"mqtt://{userinfo + '@' if userinfo else ''}{self.address}"

    @property
    def log_path(self) -> Path:
        return self._directory / f"{self.name}.log"

    def start(self) -> None:
        """Start on a free port; return once the port answers."""
        for _ in range(5):  # the free port may be taken before mosquitto binds it
            self.port = free_port()
            config = self._directory / f"{self.name}.conf"
            config.write_text(
                f"listener {self.port} {HOST}\nallow_anonymous true\npersistence false\n"
                + self._extra
            )
            with self.log_path.open("ab") as log:
                self.process = subprocess.Popen(
                    [self._binary, "-c", str(config)],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                )
            if self._wait_listening():
                return
        raise AssertionError(f"{self.name} did not start: {self.log_path.read_text()[-2000:]}")

    def _wait_listening(self) -> bool:
        deadline = time.monotonic() + _DEADLINE
        process = self.process
        assert process is not None
        while time.monotonic() < deadline:
            if process.poll() is not None:
                return False  # exited: the port was taken, say
            if _answers(self.port):
                return True
            time.sleep(_POLL)  # polling a condition with a deadline, not a fixed wait
        self.kill(signal.SIGKILL)
        return False

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` (a crash by default); SIGTERM falls back to SIGKILL after the
        deadline.  Returns once the process is gone."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(sig)
        try:
            process.wait(_DEADLINE if sig != signal.SIGKILL else None)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def freeze(self) -> None:
        """SIGSTOP: the broker keeps its sockets (TCP still accepts bytes) but answers
        nothing, as a hung broker."""
        if self.process is not None:
            self.process.send_signal(signal.SIGSTOP)


class MosquittoFactory:
    """Starts brokers in one directory; :meth:`close` kills whatever still runs."""

    def __init__(self, directory: Path) -> None:
        self._binary = require_mosquitto()
        self._directory = directory
        self._brokers: list[Mosquitto] = []

    def start(self, name: str, extra: str = "") -> Mosquitto:
        """Start broker ``name``; ``extra`` is appended to its configuration file."""
        broker = Mosquitto(self._binary, self._directory, name, extra)
        self._brokers.append(broker)
        broker.start()
        return broker

    def close(self) -> None:
        for broker in self._brokers:
            broker.kill(signal.SIGTERM if not _stopped(broker) else signal.SIGKILL)


def _stopped(broker: Mosquitto) -> bool:
    """True for a frozen (SIGSTOPped) process, which SIGTERM would not end."""
    process = broker.process
    if process is None or process.poll() is not None:
        return False
    try:
        status = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return status == "T"


@contextlib.contextmanager
def mosquitto_brokers(directory: Path) -> Iterator[MosquittoFactory]:
    """A :class:`MosquittoFactory` whose brokers are killed on leaving."""
    factory = MosquittoFactory(directory)
    try:
        yield factory
    finally:
        factory.close()
