"""Registers the ``memory`` binder type; loaded through the ``binder.binders`` entry point."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from binder.plugins import hookimpl
from binder.schema import Option, secret_keys, validate_section
from binder.spi import Binder, BinderType, Direction

if TYPE_CHECKING:
    from binder.asyncapi.protocols import Broker

__all__ = ["MemoryBinderType", "binder_types"]

#: The memory binder takes no settings and no binding options.
SETTINGS: dict[str, Option] = {}
BINDING_OPTIONS: dict[str, Option] = {}


class MemoryBinderType:
    """The in-memory broker: no settings, no binding options."""

    name = "memory"
    description = "in-process broker for tests and demos (groups, partitions, dead letters)"

    def validate_settings(self, settings: Mapping[str, Any]) -> dict[str, Any]:
        """The memory binder takes no settings."""
        return validate_section(settings, SETTINGS)

    def validate_binding_options(
        self, options: Mapping[str, Any], direction: Direction
    ) -> dict[str, Any]:
        """The memory binder takes no binding options."""
        return validate_section(options, BINDING_OPTIONS)

    def secret_keys(self) -> frozenset[str]:
        """The options declared ``secret=True`` (none)."""
        return secret_keys(SETTINGS, BINDING_OPTIONS)

    def create(self, name: str, settings: Mapping[str, Any]) -> Binder:
        """Build a fresh binder with its own broker state."""
        from binders.memory.binder import MemoryBinder

        return MemoryBinder(name, settings)

    def asyncapi(self) -> Broker:
        """How ``binder asyncapi`` describes this binder's broker."""
        from binders.memory.asyncapi import MemoryBroker

        return MemoryBroker()


@hookimpl
def binder_types() -> list[BinderType]:
    """The memory binder type."""
    return [MemoryBinderType()]
