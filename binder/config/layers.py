"""Validating ``bindings:``: each layer's core keys and its binder type sections.

A layer keeps only the keys written (and what validation derived from them), so that
layers merge at resolve time without a default of one layer hiding a value of another;
the merged binder section of a binding is validated once more when it is resolved
(:mod:`binder.resolve`), which fills in the defaults.  ``bindings.default`` applies to
consumers and producers alike.  What each binder section held as written, and which
keys of ``bindings.default``'s each direction takes, is noted in a
:class:`~binder.config.model.WrittenOptions` for that final validation.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from binder.bindings import BINDING_SCHEMA, binding_direction, normalize_name
from binder.config.keys import Path_, _dotted, _kind
from binder.config.model import DEFAULT_LAYER, BinderConfig, BinderTypes, WrittenOptions
from binder.config.sources import _plain, _Raw
from binder.errors import ConfigError
from binder.schema import did_you_mean, validate_section
from binder.spi import BinderType, Direction

_DIRECTIONS: tuple[Direction, ...] = ("consumer", "producer")


def _validate_bindings(
    raw: _Raw,
    section: Any,
    binders: Mapping[str, BinderConfig],
    registry: BinderTypes,
    written: WrittenOptions,
) -> dict[str, dict[str, Any]]:
    """Validate ``bindings:``; note the binder sections as written in ``written``."""
    if section is None:
        return {}
    if not isinstance(section, Mapping):
        raise raw.error(f"expected a mapping of binding names, got {_kind(section)}", ("bindings",))
    result: dict[str, dict[str, Any]] = {}
    normalized: dict[str, str] = {}
    for name, layer in section.items():
        name = str(name)
        path: Path_ = ("bindings", name)
        same = normalized.get(normalize_name(name))
        if same is not None:
            raise raw.error(f"'{name}' and '{same}' name the same binding; merge them", path)
        normalized[normalize_name(name)] = name
        result[name] = _validate_layer(raw, name, layer, binders, registry, written)
    return result


def _validate_layer(
    raw: _Raw,
    name: str,
    layer: Any,
    binders: Mapping[str, BinderConfig],
    registry: BinderTypes,
    written: WrittenOptions,
) -> dict[str, Any]:
    path: Path_ = ("bindings", name)
    if layer is None:
        return {}
    if not isinstance(layer, Mapping):
        raise raw.error(f"expected a mapping of binding settings, got {_kind(layer)}", path)
    candidates = [*BINDING_SCHEMA, *registry.types]
    core: dict[str, Any] = {}
    result: dict[str, Any] = {}
    for key, value in layer.items():
        key = str(key)
        if key in BINDING_SCHEMA:
            core[key] = value
        elif key in registry.types:
            result[key] = _validate_binder_section(raw, name, key, value, registry, written)
            written.sections.setdefault(name, {})[key] = _plain(value or {})
        else:
            raise raw.error(
                f"unknown key '{key}'{did_you_mean(key, candidates)}; allowed: "
                f"{', '.join(BINDING_SCHEMA)}, or a binder type section "
                f"({', '.join(sorted(registry.types)) or 'none installed'})",
                (*path, key),
            )
    if core:
        try:
            checked = validate_section(core, BINDING_SCHEMA, prefix=_dotted(path))
        except ConfigError as exc:
            raise raw.error(exc.reason, exc.key) from None
        result = {**{k: checked[k] for k in core}, **result}
    binder = result.get("binder")
    if binder is not None and binder not in binders:
        raise raw.error(
            f"no binder named '{binder}' under binders{did_you_mean(binder, list(binders))}; "
            f"defined: {', '.join(binders)}",
            (*path, "binder"),
        )
    # keep the order as written
    return {str(k): result[str(k)] for k in layer}


def _validate_binder_section(
    raw: _Raw,
    name: str,
    type_name: str,
    section: Any,
    registry: BinderTypes,
    written: WrittenOptions,
) -> dict[str, Any]:
    """Validate ``bindings.<name>.<type>`` with the binder type's own rules.

    Only keys that were written, or that validation changed from the type's defaults,
    are kept, so a layer never overrides a lower layer with a default it did not write.
    ``bindings.default`` applies to consumers and producers alike: it is validated for
    both directions and a key is accepted when either direction takes it (an error
    is raised only for a key both reject); the results are merged, and the keys each
    direction took are noted in ``written`` (a consumer binding inherits only the
    consumer's).
    """
    path: Path_ = ("bindings", name, type_name)
    if section is None:
        section = {}
    if not isinstance(section, Mapping):
        raise raw.error(
            f"expected a mapping of {type_name} binding options, got {_kind(section)}", path
        )
    binder_type = registry.get(type_name)
    if name != DEFAULT_LAYER:
        direction = binding_direction(name)
        try:
            checked = binder_type.validate_binding_options(dict(section), direction)
        except ConfigError as exc:
            raise raw.reraise(exc, path) from None
        return _written(binder_type, section, checked, direction)
    # bindings.default: each key must suit consumers or producers (or both).
    kept: dict[str, Any] = {}
    rejected: dict[str, ConfigError] = {}
    accepted: dict[Direction, frozenset[str]] = {}
    for direction in _DIRECTIONS:
        remaining = dict(section)
        while True:
            try:
                checked = binder_type.validate_binding_options(dict(remaining), direction)
            except ConfigError as exc:
                top = exc.key.split(".")[0] if exc.key else None
                if top is None or top not in remaining:
                    raise raw.reraise(exc, path) from None
                rejected.setdefault(top, exc)
                del remaining[top]
                continue
            taken = _written(binder_type, remaining, checked, direction)
            for key, value in taken.items():
                kept.setdefault(key, value)
            accepted[direction] = frozenset(taken)
            break
    for key, refusal in rejected.items():
        if key not in kept:
            raise raw.reraise(refusal, path) from None
    written.directions[type_name] = accepted
    return {key: kept[key] for key in [*section, *kept] if key in kept}


def _written(
    binder_type: BinderType,
    section: Mapping[str, Any],
    checked: Mapping[str, Any],
    direction: Direction,
) -> dict[str, Any]:
    """The keys of ``checked`` that were written or differ from the type's defaults."""
    try:
        base = binder_type.validate_binding_options({}, direction)
    except ConfigError:
        base = {}
    return {
        key: value
        for key, value in checked.items()
        if key in section or key not in base or base[key] != value
    }
