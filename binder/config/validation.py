"""Validation: raw configuration -> :class:`Settings`, with every error located.

Checks the top-level keys, ``binders:`` (each with its binder type's own rules),
``default_binder`` and ``runtime:`` here, the ``bindings:`` layers in
:mod:`binder.config.layers`.  Errors name the dotted key and, through :class:`_Raw`,
its file line or environment variable.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from binder.config.keys import Path_, _kind
from binder.config.layers import _validate_bindings
from binder.config.model import (
    IMPLICIT_BINDER,
    MANAGEMENT_SCHEMA,
    RUNTIME_SCHEMA,
    TOP_LEVEL_KEYS,
    BinderConfig,
    BinderTypes,
    Settings,
    WrittenOptions,
)
from binder.config.sources import _Raw
from binder.errors import ConfigError
from binder.schema import Option, did_you_mean, validate_section

# The package's one logger, as before it was split into modules.
log = logging.getLogger("binder.config")


def _all_secret_keys(registry: BinderTypes) -> dict[str, frozenset[str]]:
    keys: dict[str, frozenset[str]] = {}
    for name, binder_type in registry.types.items():
        try:
            keys[name] = frozenset(binder_type.secret_keys())
        except Exception:  # a broken plugin must not make us leak or crash here
            log.warning("binder type %r: secret_keys() failed", name, exc_info=True)
            keys[name] = frozenset()
    return keys


def _validate(raw: _Raw, registry: BinderTypes) -> Settings:
    data: Mapping[str, Any] = raw.data
    for key in data:
        if key not in TOP_LEVEL_KEYS:
            raise raw.error(
                f"unknown top-level key '{key}'{did_you_mean(str(key), TOP_LEVEL_KEYS)}; "
                f"allowed: {', '.join(TOP_LEVEL_KEYS)}",
                (str(key),),
            )
    binders = _validate_binders(raw, data.get("binders"), registry)
    default_binder = _default_binder(raw, data, binders)
    written = WrittenOptions()
    bindings = _validate_bindings(raw, data.get("bindings"), binders, registry, written)
    runtime = _validate_section(raw, data.get("runtime"), "runtime", RUNTIME_SCHEMA)
    management = _validate_section(raw, data.get("management"), "management", MANAGEMENT_SCHEMA)
    return Settings(
        source=raw.source,
        default_binder=default_binder,
        binders=MappingProxyType(binders),
        bindings=MappingProxyType({k: _freeze(v) for k, v in bindings.items()}),
        runtime=MappingProxyType(runtime),
        management=MappingProxyType(management),
        _lines=MappingProxyType(dict(raw.lines)),
        _env=MappingProxyType(dict(raw.env)),
        _secret_keys=MappingProxyType(_all_secret_keys(registry)),
        _types=MappingProxyType(dict(registry.types)),
        _written=written,
    )


def _validate_binders(raw: _Raw, section: Any, registry: BinderTypes) -> dict[str, BinderConfig]:
    if section is None or section == {}:
        # No binders at all (file and environment): the implicit in-memory binder.
        settings: Mapping[str, Any] = {}
        if IMPLICIT_BINDER in registry.types:
            settings = registry.get(IMPLICIT_BINDER).validate_settings({})
        return {IMPLICIT_BINDER: BinderConfig(IMPLICIT_BINDER, IMPLICIT_BINDER, _freeze(settings))}
    if not isinstance(section, Mapping):
        raise raw.error(f"expected a mapping of binder names, got {_kind(section)}", ("binders",))
    result: dict[str, BinderConfig] = {}
    for name, body in section.items():
        path: Path_ = ("binders", str(name))
        if body is None:
            body = {}
        if not isinstance(body, Mapping):
            raise raw.error(
                f"expected a mapping (type: and the binder's settings), got {_kind(body)}", path
            )
        type_name = body.get("type", name)
        if not isinstance(type_name, str) or not type_name:
            raise raw.error(f"expected a binder type name, got {_kind(type_name)}", (*path, "type"))
        try:
            binder_type = registry.get(type_name)
        except ConfigError as exc:
            where = (*path, "type") if "type" in body else path
            raise raw.error(exc.reason, where) from None
        rest = {k: v for k, v in body.items() if k != "type"}
        try:
            settings = binder_type.validate_settings(rest)
        except ConfigError as exc:
            raise raw.reraise(exc, path) from None
        result[str(name)] = BinderConfig(str(name), type_name, _freeze(settings))
    return result


def _validate_section(
    raw: _Raw, section: Any, name: str, schema: Mapping[str, Option]
) -> dict[str, Any]:
    """A top-level section of plain settings (``runtime:``, ``management:``)."""
    if section is None:
        section = {}
    if not isinstance(section, Mapping):
        raise raw.error(f"expected a mapping of {name} settings, got {_kind(section)}", (name,))
    try:
        return validate_section(section, schema, prefix=name)
    except ConfigError as exc:
        raise raw.error(exc.reason, exc.key) from None


def _default_binder(raw: _Raw, data: Mapping[str, Any], binders: Mapping[str, Any]) -> str:
    names = list(binders)
    value = data.get("default_binder")
    if value is None:
        if len(names) == 1:
            return names[0]
        raise raw.error(
            "default_binder is required when several binders are defined "
            f"(found: {', '.join(names)})",
            ("default_binder",),
        )
    if not isinstance(value, str):
        raise raw.error(f"expected a binder name, got {_kind(value)}", ("default_binder",))
    if value not in binders:
        raise raw.error(
            f"no binder named '{value}' under binders{did_you_mean(value, names)}; "
            f"defined: {', '.join(names)}",
            ("default_binder",),
        )
    return value


def _freeze(value: Any) -> Any:
    """Read-only mappings all the way down (lists are left as they are)."""
    if isinstance(value, Mapping):
        return MappingProxyType({k: _freeze(v) for k, v in value.items()})
    return value
