"""Configuration: a file (YAML or TOML) plus environment variables -> validated settings.

Shape (see docs/configuration.md for the full reference)::

    default_binder: rabbit
    binders:
      rabbit: {type: rabbit, url: amqp://guest:guest@localhost:5672//}
      memory: {type: memory}
    bindings:
      default: {max_attempts: 3}
      bill-in-0: {destination: orders, group: billing, binder: rabbit, prefetch: 10}

Every :class:`ConfigError` raised here names its source (the file, ``<mapping>`` or
``environment variable EVENTBINDER_...``), the dotted key path and, for YAML files, the
1-based line of that key.  Error messages never contain secret values.
"""

from __future__ import annotations

import logging
import os
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from binder.bindings import BINDING_SCHEMA, Direction, binding_direction, normalize_name
from binder.errors import ConfigError
from binder.plugins import BinderRegistry
from binder.redaction import redact, scrub, secret_values
from binder.schema import Option, did_you_mean, non_negative, validate_section
from binder.spi import BinderType

__all__ = [
    "CONFIG_ENV",
    "CONFIG_FILENAMES",
    "ENV_PREFIX",
    "BinderConfig",
    "Settings",
    "find_config_file",
    "load_settings",
]

log = logging.getLogger(__name__)

CONFIG_FILENAMES = ("binder.yaml", "binder.yml", "binder.toml")
#: Environment variable naming the config file (not an override).
CONFIG_ENV = "EVENTBINDER_CONFIG"
#: Prefix of override variables: ``EVENTBINDER_<PATH>`` with ``__`` between levels.
ENV_PREFIX = "EVENTBINDER_"

TOP_LEVEL_KEYS = ("default_binder", "binders", "bindings", "runtime")

#: Process-wide settings under ``runtime:``.
RUNTIME_SCHEMA: Mapping[str, Option] = MappingProxyType(
    {
        "blocked_loop_warning": Option(
            float,
            1.0,
            check=non_negative,
            help="warn when the event loop was blocked this long, in seconds (0: never)",
        ),
    }
)
_RUNTIME_DEFAULTS: Mapping[str, Any] = MappingProxyType(
    {key: option.default for key, option in RUNTIME_SCHEMA.items()}
)

DEFAULT_LAYER = "default"
IMPLICIT_BINDER = "memory"
_ENV_SEP = "__"
_EMPTY: Mapping[str, Any] = MappingProxyType({})

Path_ = tuple[str, ...]


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class BinderConfig:
    """One entry of ``binders:``."""

    name: str
    """The key under ``binders:``."""
    type: str
    """The ``type:`` value; defaults to the name."""
    settings: Mapping[str, Any]
    """Everything but ``type``, as returned by ``BinderType.validate_settings``."""


@dataclass(frozen=True)
class Settings:
    """The validated configuration of one application."""

    source: str
    """The file path, ``<mapping>``, or ``<defaults>`` when there is no file."""
    default_binder: str
    """The binder used by bindings that do not name one; a key of :attr:`binders`."""
    binders: Mapping[str, BinderConfig]
    bindings: Mapping[str, Mapping[str, Any]]
    """Validated binding layers, only the keys written, including ``default``."""
    runtime: Mapping[str, Any] = field(default_factory=lambda: dict(_RUNTIME_DEFAULTS))
    """The ``runtime:`` section with its defaults filled in."""
    _lines: Mapping[str, int] = field(default_factory=dict, repr=False, compare=False)
    _env: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)
    _secret_keys: Mapping[str, frozenset[str]] = field(
        default_factory=dict, repr=False, compare=False
    )

    def binding_layer(self, name: str) -> Mapping[str, Any]:
        """The ``bindings.<name>`` layer, matching names with :func:`normalize_name`.

        Returns an empty mapping when the binding is not configured.  Only the name
        ``default`` itself returns the ``default`` layer.
        """
        wanted = normalize_name(name)
        for key, layer in self.bindings.items():
            if normalize_name(key) == wanted:
                if key == DEFAULT_LAYER and name != DEFAULT_LAYER:
                    continue
                return layer
        return _EMPTY

    def default_layer(self) -> Mapping[str, Any]:
        """The ``bindings.default`` layer, or an empty mapping."""
        return self.bindings.get(DEFAULT_LAYER, _EMPTY)

    def redacted(self) -> dict[str, Any]:
        """The effective configuration as plain data, with secrets replaced by ``***``."""
        binders: dict[str, Any] = {}
        for name, cfg in self.binders.items():
            keys = self._secret_keys.get(cfg.type, frozenset())
            binders[name] = {"type": cfg.type, **redact(cfg.settings, keys)}
        bindings: dict[str, Any] = {}
        for name, layer in self.bindings.items():
            out: dict[str, Any] = {}
            for key, value in layer.items():
                keys = self._secret_keys.get(key, frozenset()) if key not in BINDING_SCHEMA else ()
                out[key] = redact({key: value}, keys)[key]
            bindings[name] = out
        return {
            "default_binder": self.default_binder,
            "binders": binders,
            "bindings": bindings,
            "runtime": dict(self.runtime),
        }

    def error(self, message: str, key: str) -> ConfigError:
        """A :class:`ConfigError` about ``key`` (a dotted path) in this configuration.

        The source is the environment variable when the value came from one, else the
        file; the line is the YAML line of ``key`` (or of its nearest written parent).
        """
        source, line = _locate(key, self.source, self._lines, self._env)
        return ConfigError(message, source=source, key=key, line=line)


# --------------------------------------------------------------------------- discovery


def find_config_file(
    cwd: Path | None = None, environ: Mapping[str, str] | None = None
) -> Path | None:
    """The config file to use: ``$EVENTBINDER_CONFIG``, else the first of
    :data:`CONFIG_FILENAMES` in ``cwd``; None when there is none.

    A relative ``EVENTBINDER_CONFIG`` is taken relative to ``cwd``; naming a file that
    does not exist is an error.
    """
    environ = os.environ if environ is None else environ
    base = Path.cwd() if cwd is None else Path(cwd)
    named = environ.get(CONFIG_ENV)
    if named:
        path = Path(named).expanduser()
        if not path.is_absolute():
            path = base / path
        if not path.is_file():
            raise ConfigError(
                f"config file {str(path)!r} does not exist",
                source=f"environment variable {CONFIG_ENV}",
            )
        return path
    found = [base / name for name in CONFIG_FILENAMES if (base / name).is_file()]
    if len(found) > 1:
        log.warning("several config files in %s; using %s", base, found[0].name)
    return found[0] if found else None


# --------------------------------------------------------------------------- loading


@dataclass
class _Raw:
    """Parsed but unvalidated configuration, with where each key came from."""

    data: Any
    source: str
    lines: dict[str, int] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)

    def error(self, message: str, path: Path_ | str | None) -> ConfigError:
        key = _dotted(path) if isinstance(path, tuple) else path
        if not key:
            return ConfigError(message, source=self.source)
        source, line = _locate(key, self.source, self.lines, self.env)
        return ConfigError(message, source=source, key=key, line=line)

    def reraise(self, exc: ConfigError, prefix: Path_) -> ConfigError:
        """Re-issue a ConfigError whose key is relative to ``prefix`` with our location."""
        path = prefix + tuple(exc.key.split(".")) if exc.key else prefix
        return self.error(exc.reason, path)


def load_settings(
    source: str | Path | Mapping[str, Any] | None = None,
    *,
    registry: BinderRegistry,
    environ: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    discover: bool = True,
) -> Settings:
    """Load, merge with the environment, and validate the configuration.

    ``source`` is a file path, a mapping (source ``<mapping>``) or None: with
    ``discover`` the file is found by :func:`find_config_file`, and without a file the
    defaults apply (one ``memory`` binder, the default).  ``environ`` defaults to
    :data:`os.environ`; its ``EVENTBINDER_...`` overrides apply to every kind of source.
    """
    environ = os.environ if environ is None else environ
    if isinstance(source, Mapping):
        raw = _Raw(_plain(source), "<mapping>")
    else:
        path: Path | None
        if source is None:
            path = find_config_file(cwd, environ) if discover else None
        else:
            path = Path(source).expanduser()
            if not path.is_absolute() and cwd is not None:
                path = Path(cwd) / path
        raw = _read_file(path) if path is not None else _Raw({}, "<defaults>")
    if raw.data is None:
        raw.data = {}
    if not isinstance(raw.data, Mapping):
        raise ConfigError(
            "the top level must be a mapping with the keys default_binder, binders and "
            f"bindings; got {_kind(raw.data)}",
            source=raw.source,
        )
    secret_keys = _all_secret_keys(registry)
    try:
        _apply_environment(raw, environ)
        return _validate(raw, registry)
    except ConfigError as exc:
        # Last line of defence: no secret from the configuration in any message.
        secrets = secret_values(raw.data, frozenset().union(*secret_keys.values()))
        reason = scrub(exc.reason, secrets)
        raise ConfigError(reason, source=exc.source, key=exc.key, line=exc.line) from None


def _all_secret_keys(registry: BinderRegistry) -> dict[str, frozenset[str]]:
    keys: dict[str, frozenset[str]] = {}
    for name, binder_type in registry.types.items():
        try:
            keys[name] = frozenset(binder_type.secret_keys())
        except Exception:  # a broken plugin must not make us leak or crash here
            log.warning("binder type %r: secret_keys() failed", name, exc_info=True)
            keys[name] = frozenset()
    return keys


def _read_file(path: Path) -> _Raw:
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("config file does not exist", source=source) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file: {exc}", source=source) from None
    if path.suffix.lower() == ".toml":
        try:
            return _Raw(tomllib.loads(text), source)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"invalid TOML: {exc}", source=source) from None
    raw = _Raw(None, source)
    raw.data = _load_yaml(text, raw)
    return raw


# --------------------------------------------------------------------------- YAML


def _load_yaml(text: str, raw: _Raw) -> Any:
    """Compose ``text`` to nodes and build plain data, recording the line of each key."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        return _build(node, (), loader, raw)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        what = "; ".join(part for part in (exc.context, exc.problem) if part)
        raise ConfigError(
            f"invalid YAML: {what or 'syntax error'}",
            source=raw.source,
            line=mark.line + 1 if mark is not None else None,
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML: {type(exc).__name__}", source=raw.source) from None
    finally:
        loader.dispose()


def _build(node: yaml.Node, path: Path_, loader: yaml.SafeLoader, raw: _Raw) -> Any:
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = _yaml_key(key_node, path, raw)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise ConfigError(
                    f"duplicate key '{key}' (first written on line {seen[key]})",
                    source=raw.source,
                    key=_dotted((*path, key)),
                    line=line,
                )
            seen[key] = line
        loader.flatten_mapping(node)  # resolve `<<: *anchor` merges
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = _yaml_key(key_node, path, raw)
            child = (*path, key)
            result[key] = _build(value_node, child, loader, raw)
            raw.lines[_dotted(child)] = key_node.start_mark.line + 1
        return result
    if isinstance(node, yaml.SequenceNode):
        items = []
        for index, item in enumerate(node.value):
            child = (*path, str(index))
            raw.lines[_dotted(child)] = item.start_mark.line + 1
            items.append(_build(item, child, loader, raw))
        return items
    return loader.construct_object(node, deep=True)


def _yaml_key(node: yaml.Node, path: Path_, raw: _Raw) -> str:
    """Keys are names: take the scalar text as written (so ``on:`` stays "on")."""
    if not isinstance(node, yaml.ScalarNode):
        raise ConfigError(
            "keys must be plain names, not lists or mappings",
            source=raw.source,
            key=_dotted(path) or None,
            line=node.start_mark.line + 1,
        )
    return str(node.value)


# --------------------------------------------------------------------------- environment


def _apply_environment(raw: _Raw, environ: Mapping[str, str]) -> None:
    """Merge ``EVENTBINDER_<PATH>`` variables into ``raw.data`` (env wins)."""
    for var in sorted(environ):
        if not var.upper().startswith(ENV_PREFIX) or var.upper() == CONFIG_ENV:
            continue
        rest = var[len(ENV_PREFIX) :]
        segments = rest.split(_ENV_SEP)
        first = normalize_name(segments[0])
        if first not in TOP_LEVEL_KEYS:
            # EVENTBINDER_RABBIT_PORT and friends belong to other tools; only a likely
            # typo of a top-level key (EVENTBINDER_BINDING__...) is an error.
            hint = did_you_mean(first, TOP_LEVEL_KEYS)
            if len(segments) > 1 and hint:
                raise ConfigError(
                    f"unknown top-level key '{first}'{hint}", source=f"environment variable {var}"
                )
            continue
        source = f"environment variable {var}"
        if any(not segment for segment in segments):
            raise ConfigError(
                "empty path segment: separate levels with exactly two underscores", source=source
            )
        _set_from_env(raw, segments, _env_value(environ[var]), var)


def _env_value(text: str) -> Any:
    """Parse a variable's value as a YAML scalar: int, float, bool, else the string."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, bool | int | float | str):
        return value
    return text


def _set_from_env(raw: _Raw, segments: list[str], value: Any, var: str) -> None:
    node: Any = raw.data
    path: Path_ = ()
    for index, segment in enumerate(segments):
        key = _match_key(node, segment)
        path = (*path, key)
        dotted = _dotted(path)
        if index == len(segments) - 1:
            node[key] = value
            raw.env[dotted] = var
            return
        child = node.get(key)
        if child is None:
            child = node[key] = {}
            raw.env.setdefault(dotted, var)
        elif not isinstance(child, dict):
            raise ConfigError(
                f"cannot set a key below '{dotted}': it is {_kind(child)}, not a mapping",
                source=f"environment variable {var}",
                key=dotted,
            )
        node = child


def _match_key(node: Mapping[str, Any], segment: str) -> str:
    """The existing key ``segment`` names (case and ``-``/``_`` ignored), else lowercase."""
    wanted = normalize_name(segment)
    for key in node:
        if isinstance(key, str) and normalize_name(key) == wanted:
            return key
    return segment.lower()


# --------------------------------------------------------------------------- validation


def _validate(raw: _Raw, registry: BinderRegistry) -> Settings:
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
    bindings = _validate_bindings(raw, data.get("bindings"), binders, registry)
    runtime = _validate_runtime(raw, data.get("runtime"))
    return Settings(
        source=raw.source,
        default_binder=default_binder,
        binders=MappingProxyType(binders),
        bindings=MappingProxyType({k: _freeze(v) for k, v in bindings.items()}),
        runtime=MappingProxyType(runtime),
        _lines=MappingProxyType(dict(raw.lines)),
        _env=MappingProxyType(dict(raw.env)),
        _secret_keys=MappingProxyType(_all_secret_keys(registry)),
    )


def _validate_binders(raw: _Raw, section: Any, registry: BinderRegistry) -> dict[str, BinderConfig]:
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


def _validate_runtime(raw: _Raw, section: Any) -> dict[str, Any]:
    if section is None:
        section = {}
    if not isinstance(section, Mapping):
        raise raw.error(
            f"expected a mapping of runtime settings, got {_kind(section)}", ("runtime",)
        )
    try:
        return validate_section(section, RUNTIME_SCHEMA, prefix="runtime")
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


def _validate_bindings(
    raw: _Raw, section: Any, binders: Mapping[str, BinderConfig], registry: BinderRegistry
) -> dict[str, dict[str, Any]]:
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
        result[name] = _validate_layer(raw, name, layer, binders, registry)
    return result


def _validate_layer(
    raw: _Raw,
    name: str,
    layer: Any,
    binders: Mapping[str, BinderConfig],
    registry: BinderRegistry,
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
            result[key] = _validate_binder_section(raw, name, key, value, registry)
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
    raw: _Raw, name: str, type_name: str, section: Any, registry: BinderRegistry
) -> dict[str, Any]:
    """Validate ``bindings.<name>.<type>`` with the binder type's own rules.

    Only keys that were written, or that validation changed from the type's defaults,
    are kept, so a layer never overrides a lower layer with a default it did not write.
    ``bindings.default`` applies to consumers and producers alike: it is validated for
    both directions and a key is accepted when either direction takes it (an error
    is raised only for a key both reject); the results are merged.
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
    directions: tuple[Direction, ...] = ("consumer", "producer")
    for direction in directions:
        remaining = dict(section)
        while True:
            try:
                checked = binder_type.validate_binding_options(dict(remaining), direction)
            except ConfigError as exc:
                top = exc.key.split(".")[0] if exc.key else None
                if top not in remaining:
                    raise raw.reraise(exc, path) from None
                rejected.setdefault(top, exc)
                del remaining[top]
                continue
            for key, value in _written(binder_type, remaining, checked, direction).items():
                kept.setdefault(key, value)
            break
    for key, exc in rejected.items():
        if key not in kept:
            raise raw.reraise(exc, path) from None
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


# --------------------------------------------------------------------------- helpers


def _locate(
    key: str, source: str, lines: Mapping[str, int], env: Mapping[str, str]
) -> tuple[str, int | None]:
    """Source and line for ``key``: the nearest written ancestor decides."""
    for candidate in _ancestors(key):
        var = _lookup(env, candidate)
        if var is not None:
            return f"environment variable {var}", None
        line = _lookup(lines, candidate)
        if line is not None:
            return source, line
    return source, None


def _ancestors(key: str) -> Iterator[str]:
    parts = key.split(".")
    for end in range(len(parts), 0, -1):
        yield ".".join(parts[:end])


def _lookup(table: Mapping[str, Any], key: str) -> Any:
    if key in table:
        return table[key]
    wanted = normalize_name(key)  # binding names may be written bill_in_0 or bill-in-0
    for candidate, value in table.items():
        if normalize_name(candidate) == wanted:
            return value
    return None


def _dotted(path: Path_ | None) -> str:
    return ".".join(path) if path else ""


def _kind(value: Any) -> str:
    return {
        dict: "a mapping",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        int: "an integer",
        float: "a number",
    }.get(type(value), type(value).__name__)


def _plain(value: Any) -> Any:
    """A deep copy of ``value`` with mappings as dicts with string keys."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _freeze(value: Any) -> Any:
    """Read-only mappings all the way down (lists are left as they are)."""
    if isinstance(value, Mapping):
        return MappingProxyType({k: _freeze(v) for k, v in value.items()})
    return value
