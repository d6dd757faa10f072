"""Debian packages: install what the named brokers miss, without the packages starting
their own services."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from .base import Broker
from .common import BrokerError, elapsed, log_hint, now, say
from .procs import run

#: The Debian packages start their service from postinst (invoke-rc.d, /etc/init.d):
#: rabbitmq-server would come up as the rabbitmq user on all interfaces with the
#: default node name, and its postinst fails the install when that start fails;
#: mosquitto would start with /etc/mosquitto/mosquitto.conf. A policy-rc.d that answers
#: 101 ("action forbidden") stops both; a machine that already has one (containers do)
#: keeps it.
POLICY_RC = Path("/usr/sbin/policy-rc.d")
POLICY_RC_TEXT = (
    "#!/bin/sh\n# scripts/brokers: no service starts during apt-get install\nexit 101\n"
)
APT = ("apt-get", "-q", "-o", "DPkg::Lock::Timeout=300", "-o", "Dpkg::Use-Pty=0")


def missing_packages(brokers: Iterable[Broker]) -> list[str]:
    """The Debian packages missing for these brokers, each once."""
    return list(dict.fromkeys(p for b in brokers for p in b.missing_packages()))


@contextmanager
def services_blocked(policy: Path = POLICY_RC) -> Iterator[None]:
    """No service starts from a package's scripts meanwhile (unless a policy exists)."""
    if policy.exists():
        yield
        return
    policy.write_text(POLICY_RC_TEXT)
    policy.chmod(0o755)
    try:
        yield
    finally:
        policy.unlink(missing_ok=True)


def apt_install(packages: list[str], state: Path) -> None:
    """``apt-get update``, then ``apt-get install --no-install-recommends PACKAGES``."""
    if not packages:
        return
    t0, log = now(), state / "apt.log"
    say(f"install: {' '.join(packages)} (apt-get, log {log})")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    with services_blocked():
        if run([*APT, "update"], log=log, env=env) != 0:
            log_hint(log)
            raise BrokerError(f"apt-get update failed, see {log}")
        if run([*APT, "install", "-y", "--no-install-recommends", *packages], log=log, env=env):
            log_hint(log)
            raise BrokerError(f"apt-get install {' '.join(packages)} failed, see {log}")
    say(f"install: done in {elapsed(t0)}")
