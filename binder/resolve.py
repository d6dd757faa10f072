"""Resolving an app's declared bindings against the configuration."""

from __future__ import annotations

from typing import TYPE_CHECKING

from binder.bindings import BindingSettings
from binder.schema import did_you_mean

if TYPE_CHECKING:
    from binder.app import App, BindingDecl
    from binder.config import Settings

__all__ = ["resolve_binding", "resolve_bindings", "resolve_dynamic"]


def resolve_binding(decl: BindingDecl, settings: Settings) -> BindingSettings:
    """Merge defaults, ``bindings.default``, the decorator and ``bindings.<name>``."""
    resolved = BindingSettings.merge(
        decl.name,
        settings.default_layer(),
        decl.options,
        settings.binding_layer(decl.name),
        default_destination=decl.destination,
        default_binder=settings.default_binder,
    )
    _check_binder(resolved, settings)
    return resolved


def resolve_dynamic(destination: str, settings: Settings) -> BindingSettings:
    """Settings for ``App.send(destination, ...)``: a binding named after the destination."""
    resolved = BindingSettings.merge(
        destination,
        settings.default_layer(),
        settings.binding_layer(destination),
        default_destination=destination,
        default_binder=settings.default_binder,
    )
    _check_binder(resolved, settings)
    return resolved


def resolve_bindings(app: App, settings: Settings) -> dict[str, BindingSettings]:
    """Every binding the app declares, by name, with its effective settings."""
    resolved: dict[str, BindingSettings] = {}
    for decl in app.handlers.values():
        for binding in (decl.input, decl.output):
            if binding is not None:
                resolved[binding.name] = resolve_binding(binding, settings)
    return resolved


def _check_binder(binding: BindingSettings, settings: Settings) -> None:
    if binding.binder not in settings.binders:
        raise settings.error(
            f"binding {binding.name!r} uses binder {binding.binder!r}, which is not defined "
            f"under 'binders'{did_you_mean(binding.binder, list(settings.binders))}",
            f"bindings.{binding.name}.binder",
        )
