"""How ``binder asyncapi`` describes the in-memory binder: an in-process server that
nothing can connect to."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from binder.asyncapi.protocols import Broker, Server


class MemoryBroker(Broker):
    """The in-memory binder: no network at all."""

    type_name = "memory"

    def server(self, name: str, settings: Mapping[str, Any]) -> Server:
        """A server marked as not reachable over a network (``protocol: memory``)."""
        return Server(
            {
                "host": "in-process",
                "protocol": "memory",
                "title": f"{name} (in-memory binder)",
                "description": (
                    f"eventbinder's in-memory binder `{name}`: messages stay inside the "
                    "application's process. Not a network server: nothing can connect to it."
                ),
            }
        )
