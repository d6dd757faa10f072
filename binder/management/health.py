"""Liveness and readiness of a running app, in the shape Spring Boot's actuator uses
(``{"status": "UP", "components": {...}}``), so probes and dashboards read it as they
read a Spring app's."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from binder.spi import ReportsConnections

if TYPE_CHECKING:
    from binder.runtime import Runtime

__all__ = ["DOWN", "UP", "liveness", "readiness"]

UP, DOWN = "UP", "DOWN"
#: Binding states that count as ready: paused or stopped through the bindings control
#: are idle on purpose (once the app stops, it is not ready anyway).
_READY_STATES = frozenset({"running", "paused", "stopped"})


def liveness() -> dict[str, Any]:
    """The process answers: its event loop runs (a blocked loop cannot answer)."""
    return {"status": UP}


def readiness(runtime: Runtime) -> dict[str, Any]:
    """UP when the app has started, every binder is connected and every binding bound.

    ``components.binders.components.<name>`` gives each binder's state and its
    connections; ``components.bindings.components.<name>`` each binding's state.
    """
    started = runtime.binder_status()
    binders: dict[str, Any] = {}
    for name in sorted(set(started) | set(runtime.binders)):
        state = started.get(name, "pending")
        binder = runtime.binders.get(name)
        connections: dict[str, bool] = {}
        if binder is not None and isinstance(binder, ReportsConnections):
            connections = dict(binder.connections())
        up = state == "connected" and all(connections.values())
        binders[name] = {
            "status": UP if up else DOWN,
            "details": {"state": state, "connections": connections},
        }
    bindings = {
        name: {"status": UP if state in _READY_STATES else DOWN, "details": {"state": state}}
        for name, state in sorted(runtime.status().items())
    }
    ready = (
        runtime.running
        and all(b["status"] == UP for b in binders.values())
        and all(b["status"] == UP for b in bindings.values())
    )
    return {
        "status": UP if ready else DOWN,
        "components": {
            "binders": {"status": _all_up(binders), "components": binders},
            "bindings": {"status": _all_up(bindings), "components": bindings},
        },
    }


def _all_up(components: dict[str, Any]) -> str:
    return UP if all(c["status"] == UP for c in components.values()) else DOWN
