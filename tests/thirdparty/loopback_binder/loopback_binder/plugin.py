"""Registers the ``loopback`` binder type (entry point group ``binder.binders``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from binder.plugins import hookimpl
from binder.schema import Option, positive, secret_keys, validate_section
from binder.spi import Binder, BinderType, Direction

__all__ = ["LoopbackBinderType", "binder_types"]

SETTINGS = {
    "queue_size": Option(int, 100, check=positive, help="messages buffered per subscriber"),
}


class LoopbackBinderType:
    """Settings validation and construction of :class:`LoopbackBinder`."""

    name = "loopback"
    description = "example third-party binder: in-process queues, anonymous subscribers only"

    def validate_settings(self, settings: Mapping[str, Any]) -> dict[str, Any]:
        """``queue_size`` (default 100) bounds each subscriber's buffer."""
        return validate_section(settings, SETTINGS)

    def validate_binding_options(
        self, options: Mapping[str, Any], direction: Direction
    ) -> dict[str, Any]:
        """The loopback binder takes no per-binding options."""
        return validate_section(options, {})

    def secret_keys(self) -> frozenset[str]:
        """The settings declared ``secret=True`` (none)."""
        return secret_keys(SETTINGS)

    def create(self, name: str, settings: Mapping[str, Any]) -> Binder:
        """Build an unstarted binder; the implementation is imported only now."""
        from loopback_binder.binder import LoopbackBinder

        return LoopbackBinder(name, settings)


@hookimpl
def binder_types() -> list[BinderType]:
    """The loopback binder type."""
    return [LoopbackBinderType()]
