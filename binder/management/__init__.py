"""Operating a running app: the management HTTP endpoint (health, bindings, Prometheus
metrics), off by default; ``binder run --http HOST:PORT``, ``management: {http: ...}``
in the configuration, or ``app.run(http=...)``. See docs/operations.md."""

from __future__ import annotations

from binder.management.health import liveness, readiness
from binder.management.server import ManagementServer

__all__ = ["ManagementServer", "liveness", "readiness"]
