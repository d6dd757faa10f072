"""Stable client ids for group consumers that never collide on one host.

A group consumer's client id names its persistent session, so it must be the same
after a restart (to get the messages queued while it was away) yet different for two
live consumers (the broker would hand the session back and forth between them).  Each
candidate id is claimed with an exclusive ``flock`` on a file under the temp folder:
the lock dies with its process, so a restarted consumer claims its old id again, while
a second live process on the same host moves on to ``<id>-2``, ``<id>-3``, ...
Consumers on different hosts must differ by ``instance_index`` (see the docs).
"""

from __future__ import annotations

import fcntl
import hashlib
import itertools
import os
import tempfile
from pathlib import Path

__all__ = ["ClientIdClaim", "claim_client_id"]


class ClientIdClaim:
    """A claimed client id; :meth:`release` gives it back (idempotent)."""

    def __init__(self, client_id: str, fd: int | None) -> None:
        self.client_id = client_id
        self._fd = fd

    def release(self) -> None:
        """Unlock the id so another consumer may use it."""
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None


def _lock_dir() -> Path:
    directory = Path(tempfile.gettempdir()) / "eventbinder-mqtt-client-ids"
    directory.mkdir(mode=0o700, exist_ok=True)
    return directory


def claim_client_id(base: str, address: str) -> ClientIdClaim:
    """Claim ``base`` (or the first free ``base-N``) for the broker at ``address``."""
    directory = _lock_dir()
    for n in itertools.count(1):
        candidate = base if n == 1 else f"{base}-{n}"
        name = hashlib.sha1(f"{address}|{candidate}".encode()).hexdigest()
        fd = os.open(directory / f"{name}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        return ClientIdClaim(candidate, fd)
    raise AssertionError("unreachable")
