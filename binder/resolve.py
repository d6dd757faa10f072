"""Resolving an app's declared bindings against the configuration.

A binding's settings are its layers merged, lowest first: the schema's defaults,
``bindings.default``, the decorator, ``bindings.<name>`` (environment variables are
already in the two file layers).  Each layer was validated where it was written; here
the merged binding is checked across keys, and the section of its binder type, merged
from the layers as written, is validated once more by the binder type, so that the
binder receives complete options.  An error names the layer that wrote the offending
key: the file (and line), the environment variable, or the decorator's file and line.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from binder.bindings import BindingSettings, binding_direction, check_binding, normalize_name
from binder.config.model import DEFAULT_LAYER
from binder.errors import ConfigError
from binder.schema import did_you_mean
from binder.spi import Direction

if TYPE_CHECKING:
    from binder.app import App, BindingDecl
    from binder.config import Settings

__all__ = ["check_configured_bindings", "resolve_binding", "resolve_bindings", "resolve_dynamic"]

#: A handler binding's name, after :func:`normalize_name`: ``<fn>_in_<n>``, ``<fn>_out_<n>``.
_HANDLER_BINDING = re.compile(r".+_(in|out)_\d+", re.DOTALL)


def resolve_binding(decl: BindingDecl, settings: Settings) -> BindingSettings:
    """Merge defaults, ``bindings.default``, the decorator and ``bindings.<name>``."""
    return _resolve(decl.name, decl.destination, settings, decl)


def resolve_dynamic(destination: str, settings: Settings) -> BindingSettings:
    """Settings for ``App.send(destination, ...)``: a binding named after the destination,
    a producer whatever its name (``orders-in-7`` too)."""
    return _resolve(destination, destination, settings, None, "producer")


def resolve_bindings(
    app: App, settings: Settings, *, strict: bool = True
) -> dict[str, BindingSettings]:
    """Every binding the app declares, by name, with its effective settings.

    ``strict`` (the default) also refuses configured handler bindings the app does not
    declare (see :func:`check_configured_bindings`); tools that borrow an app's file,
    such as ``binder send``, pass ``False``.
    """
    if strict:
        check_configured_bindings(app, settings)
    resolved: dict[str, BindingSettings] = {}
    for decl in app.handlers.values():
        for binding in (decl.input, decl.output):
            if binding is not None:
                resolved[binding.name] = resolve_binding(binding, settings)
    return resolved


def check_configured_bindings(app: App, settings: Settings) -> None:
    """Refuse ``bindings.<name>`` entries named like a handler's binding
    (``<fn>-in-<n>``, ``<fn>-out-<n>``) that no handler of ``app`` declares: a typo
    such as ``pricee-in-0`` would otherwise be ignored without a word.

    Other names configure destinations used with ``App.send`` and are not checked.
    """
    declared = [
        binding.name
        for decl in app.handlers.values()
        for binding in (decl.input, decl.output)
        if binding is not None
    ]
    known = {normalize_name(name) for name in declared}
    for key in settings.bindings:
        wanted = normalize_name(key)
        if key == DEFAULT_LAYER or wanted in known or not _HANDLER_BINDING.fullmatch(wanted):
            continue
        candidates = {normalize_name(name): name for name in declared}
        close = difflib.get_close_matches(wanted, sorted(candidates), n=1, cutoff=0.6)
        hint = f' (did you mean "{candidates[close[0]]}"?)' if close else ""
        listed = ", ".join(sorted(declared)) or "none"
        raise settings.error(
            f"binding {key!r} is not declared by any handler of app {app.name!r}{hint}; "
            f"its bindings: {listed}",
            f"bindings.{key}",
        )


class _Layers:
    """A binding's layers, lowest first, each able to locate an error about its keys."""

    def __init__(
        self,
        name: str,
        settings: Settings,
        decl: BindingDecl | None,
        direction: Direction | None = None,
    ) -> None:
        self.name = name
        self.settings = settings
        self.decl = decl
        self.direction: Direction = direction or binding_direction(name)
        self.default = settings.default_layer()
        self.own = settings.binding_layer(name)

    def mappings(self) -> list[Mapping[str, Any]]:
        middle = [self.decl.options] if self.decl is not None else []
        return [self.default, *middle, self.own]

    def written_options(self, type_name: str) -> dict[str, Any]:
        """The ``<type>:`` sections as written, merged (decorators have none)."""
        merged = self.settings.written_options(DEFAULT_LAYER, type_name, self.direction)
        merged.update(self.settings.written_options(self.name, type_name, self.direction))
        return merged

    def error(self, message: str, path: str) -> ConfigError:
        """An error about ``path`` (relative to the binding), located at the highest
        layer that wrote it, else at the binding."""
        if _has(self.own, path):
            return self.settings.error(message, f"bindings.{self.name}.{path}")
        if self.decl is not None and _has(self.decl.options, path):
            return self.decl.error(message, path)
        if _has(self.default, path):
            return self.settings.error(message, f"bindings.default.{path}")
        return self.settings.error(message, f"bindings.{self.name}.{path}")


def _has(layer: Mapping[str, Any], path: str) -> bool:
    node: Any = layer
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False
        node = node[part]
    return True


def _resolve(
    name: str,
    destination: str,
    settings: Settings,
    decl: BindingDecl | None,
    direction: Direction | None = None,
) -> BindingSettings:
    layers = _Layers(name, settings, decl, direction)
    resolved = BindingSettings.merge(
        name,
        *layers.mappings(),
        default_destination=destination,
        default_binder=settings.default_binder,
        direction=layers.direction,
    )
    values = {field.name: getattr(resolved, field.name) for field in dataclasses.fields(resolved)}
    problem = check_binding(values)
    if problem is not None:
        key, reason = problem
        raise layers.error(reason, key)
    _check_binder(resolved, settings)
    type_name = settings.binders[resolved.binder].type
    try:
        options = settings.validate_binding_options(
            type_name, layers.written_options(type_name), resolved.direction
        )
    except ConfigError as exc:
        path = f"{type_name}.{exc.key}" if exc.key else type_name
        raise layers.error(exc.reason, path) from None
    sections = {**resolved.options, type_name: MappingProxyType(options)}
    return dataclasses.replace(resolved, options=MappingProxyType(sections))


def _check_binder(binding: BindingSettings, settings: Settings) -> None:
    if binding.binder not in settings.binders:
        raise settings.error(
            f"binding {binding.name!r} uses binder {binding.binder!r}, which is not defined "
            f"under 'binders'{did_you_mean(binding.binder, list(settings.binders))}",
            f"bindings.{binding.name}.binder",
        )
