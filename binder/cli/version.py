"""``binder --version``: eventbinder's version and the client libraries installed."""

from __future__ import annotations

import platform
from importlib import metadata

__all__ = ["version_text"]

#: Distributions worth naming in a bug report, in this order.
CLIENT_LIBRARIES = ("kombu", "amqp", "aiokafka", "paho-mqtt", "pluggy")


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def version_text() -> str:
    """``eventbinder 0.1.0 (Python 3.11.7; kombu 5.5.4, ...)``."""
    own = _version("eventbinder") or "unknown (not installed as a distribution)"
    parts = [f"Python {platform.python_version()}"]
    for name in CLIENT_LIBRARIES:
        found = _version(name)
        parts.append(f"{name} {found}" if found else f"{name} not installed")
    return f"eventbinder {own} ({'; '.join(parts)})"
