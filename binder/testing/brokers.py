"""Broker availability for tests: skip on a laptop, fail in CI.

In CI (``CI=true``) a test that needs a broker fails when the broker is missing; on a
laptop it is skipped with a reason that says how to start it.
"""

from __future__ import annotations

import os
import socket

import pytest

__all__ = ["BROKER_PORTS", "broker_available", "broker_port", "in_ci", "require_broker"]

#: Loopback ports ``scripts/brokers up`` starts the brokers on.
BROKER_PORTS = {
    "rabbit": 5672,
    "kafka": 9092,
    "mqtt": 1883,
    "rabbit-cluster": 5681,
    "kafka-cluster": 9192,
    "toxiproxy": 8474,
}


def in_ci() -> bool:
    """True when running under CI (``CI`` set to a true value)."""
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def broker_port(name: str) -> int:
    """The port broker ``name`` is expected on (``EVENTBINDER_<NAME>_PORT`` overrides)."""
    if name not in BROKER_PORTS:
        known = ", ".join(sorted(BROKER_PORTS))
        raise ValueError(f"unknown broker {name!r} in a broker marker; known: {known}")
    variable = f"EVENTBINDER_{name.upper().replace('-', '_')}_PORT"
    return int(os.environ.get(variable, BROKER_PORTS[name]))


def broker_available(name: str, host: str = "127.0.0.1", timeout: float = 1.0) -> bool:
    """True when something accepts TCP connections on the broker's port."""
    port = broker_port(name)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def require_broker(name: str) -> None:
    """Skip (laptop) or fail (CI) the calling test when broker ``name`` is down."""
    if broker_available(name):
        return
    reason = (
        f"{name} broker is not running on 127.0.0.1:{broker_port(name)}; "
        f"start it with `scripts/brokers up {name}`"
    )
    if in_ci():
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    pytest.skip(reason)
