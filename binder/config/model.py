"""The validated configuration: :class:`Settings`, :class:`BinderConfig`, and its shape.

The constants here describe what a configuration may hold (the top-level keys, the
``runtime:`` options, the ``default`` layer, the implicit binder), and
:class:`BinderTypes` what it is validated against; loading
(:mod:`binder.config.loading`) produces a :class:`Settings` from them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Protocol

from binder.bindings import BINDING_SCHEMA, normalize_name
from binder.config.keys import _locate
from binder.config.sources import _plain
from binder.errors import ConfigError
from binder.redaction import redact
from binder.schema import Option, non_negative, secret_keys, validate_section
from binder.spi import BinderType, Direction

__all__ = [
    "DEFAULT_LAYER",
    "IMPLICIT_BINDER",
    "MANAGEMENT_SCHEMA",
    "RUNTIME_SCHEMA",
    "TOP_LEVEL_KEYS",
    "BinderConfig",
    "BinderTypes",
    "Settings",
    "WrittenOptions",
]

#: The keys a configuration may have at its top level.
TOP_LEVEL_KEYS = ("default_binder", "binders", "bindings", "runtime", "management")

#: Process-wide settings under ``runtime:``.
RUNTIME_SCHEMA: Mapping[str, Option] = MappingProxyType(
    {
        "blocked_loop_warning": Option(
            float,
            1.0,
            check=non_negative,
            help="warn when the event loop was blocked this long, in seconds (0: never)",
        ),
        "retry_access_refused": Option(
            bool,
            False,
            help="keep retrying a broker that refused the credentials or permissions",
        ),
        "tracing": Option(
            bool,
            False,
            help="OpenTelemetry spans for every send and every delivery, trace context "
            "in the message headers (needs eventbinder[otel]; docs/operations.md)",
        ),
    }
)
_RUNTIME_DEFAULTS: Mapping[str, Any] = MappingProxyType(
    {key: option.default for key, option in RUNTIME_SCHEMA.items()}
)


def _host_port(value: Any) -> str:
    text = str(value).strip()
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"expected HOST:PORT (e.g. 127.0.0.1:8080), got {value!r}")
    return f"{host or '127.0.0.1'}:{int(port)}"


#: The management endpoint (docs/operations.md) under ``management:``.
MANAGEMENT_SCHEMA: Mapping[str, Option] = MappingProxyType(
    {
        "http": Option(
            str,
            None,
            check=_host_port,
            help="HOST:PORT of the health, bindings and metrics endpoint (default: off)",
        ),
        "token": Option(
            str,
            None,
            secret=True,
            help="bearer token the bindings control routes (POST) require; none: open",
        ),
    }
)
_MANAGEMENT_DEFAULTS: Mapping[str, Any] = MappingProxyType(
    {key: option.default for key, option in MANAGEMENT_SCHEMA.items()}
)

#: The layer under every binding's own: ``bindings.default``.
DEFAULT_LAYER = "default"
#: The binder a configuration without ``binders:`` gets.
IMPLICIT_BINDER = "memory"
_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass
class WrittenOptions:
    """The binder sections of ``bindings:`` as written (environment applied).

    Layers keep validated values; a binding's merged binder section is validated once
    more when the binding is resolved (which fills in the defaults), from what was
    written, so a binder type validates user input only, never its own output.
    """

    sections: dict[str, dict[str, Mapping[str, Any]]] = field(default_factory=dict)
    """Layer name (as written) -> binder type -> section."""
    directions: dict[str, dict[Direction, frozenset[str]]] = field(default_factory=dict)
    """``bindings.default`` only: binder type -> direction -> the keys that direction
    takes (a consumer binding does not inherit a producer-only option)."""


class BinderTypes(Protocol):
    """The binder types configuration is validated against.

    :class:`binder.plugins.BinderRegistry` is one; configuration needs nothing else of
    the plugin manager.
    """

    @property
    def types(self) -> Mapping[str, BinderType]:
        """The installed binder types by name."""
        ...

    def get(self, type_name: str) -> BinderType:
        """The binder type ``type_name``; a :class:`ConfigError` listing all if unknown."""
        ...


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
    management: Mapping[str, Any] = field(default_factory=lambda: dict(_MANAGEMENT_DEFAULTS))
    """The ``management:`` section with its defaults filled in."""
    _lines: Mapping[str, int] = field(default_factory=dict, repr=False, compare=False)
    _env: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)
    _secret_keys: Mapping[str, frozenset[str]] = field(
        default_factory=dict, repr=False, compare=False
    )
    _types: Mapping[str, BinderType] = field(default_factory=dict, repr=False, compare=False)
    _written: WrittenOptions = field(default_factory=WrittenOptions, repr=False, compare=False)

    def binding_layer(self, name: str) -> Mapping[str, Any]:
        """The ``bindings.<name>`` layer, matching names with :func:`normalize_name`.

        Returns an empty mapping when the binding is not configured.  Only the name
        ``default`` itself returns the ``default`` layer.
        """
        key = self._layer_key(name)
        return _EMPTY if key is None else self.bindings[key]

    def _layer_key(self, name: str) -> str | None:
        wanted = normalize_name(name)
        for key in self.bindings:
            if normalize_name(key) == wanted:
                if key == DEFAULT_LAYER and name != DEFAULT_LAYER:
                    continue
                return key
        return None

    def default_layer(self) -> Mapping[str, Any]:
        """The ``bindings.default`` layer, or an empty mapping."""
        return self.bindings.get(DEFAULT_LAYER, _EMPTY)

    def written_options(self, name: str, type_name: str, direction: Direction) -> dict[str, Any]:
        """The ``<type>:`` section of the layer ``bindings.<name>`` as written, not
        validated; for ``default``, only the keys ``direction`` takes."""
        key = self._layer_key(name)
        if key is None:
            return {}
        section = self._written.sections.get(key, {}).get(type_name)
        if section is None:  # nothing noted (Settings built by hand): the layer's own
            section = self.bindings[key].get(type_name) or {}
        if key == DEFAULT_LAYER and type_name in self._written.directions:
            taken = self._written.directions.get(type_name, {}).get(direction, frozenset())
            section = {k: v for k, v in section.items() if k in taken}
        copy: dict[str, Any] = _plain(section)  # plain dicts: the binder type may keep it
        return copy

    def validate_binding_options(
        self, type_name: str, section: Mapping[str, Any], direction: Direction
    ) -> dict[str, Any]:
        """``section`` (a binding's merged ``<type>:`` layers) validated by the binder
        type for ``direction``: complete, with its defaults.

        Raises :class:`ConfigError` with ``key`` relative to the section.  Settings built
        without binder types (by hand) return the section unchanged.
        """
        binder_type = self._types.get(type_name)
        if binder_type is None:
            return dict(section)
        return binder_type.validate_binding_options(dict(section), direction)

    def binder_type(self, type_name: str) -> BinderType | None:
        """The binder type ``type_name`` the configuration was validated with."""
        return self._types.get(type_name)

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
                keys = (
                    self._secret_keys.get(key, frozenset())
                    if key not in BINDING_SCHEMA
                    else frozenset()
                )
                out[key] = redact({key: value}, keys)[key]
            bindings[name] = out
        return {
            "default_binder": self.default_binder,
            "binders": binders,
            "bindings": bindings,
            "runtime": dict(self.runtime),
            "management": redact(self.management, secret_keys(MANAGEMENT_SCHEMA)),
        }

    def with_binding_option(self, name: str, key: str, value: Any) -> Settings:
        """A copy in which ``bindings.<name>.<key>`` is ``value`` (validated like a
        file's value; a :class:`ConfigError` names the key)."""
        try:
            checked = validate_section({key: value}, {key: BINDING_SCHEMA[key]})[key]
        except KeyError:
            raise ConfigError(
                f"unknown binding key '{key}'", key=f"bindings.{name}.{key}"
            ) from None
        except ConfigError as exc:
            raise ConfigError(exc.reason, key=f"bindings.{name}.{key}") from None
        layer_key = self._layer_key(name) or name
        bindings = dict(self.bindings)
        bindings[layer_key] = MappingProxyType({**bindings.get(layer_key, {}), key: checked})
        return replace(self, bindings=MappingProxyType(bindings))

    def environment_overrides(self) -> dict[str, str]:
        """Each key (dotted path) whose value came from an environment variable, with
        the variable's name."""
        return dict(self._env)

    def locate(self, error: ConfigError, key: str) -> ConfigError:
        """``error`` as it is if it names its source, else the same reason located in
        this configuration at its own key or, without one, at ``key`` (a binder raises
        errors about a binding's values without knowing where they were written)."""
        if error.source is not None:
            return error
        return self.error(error.reason, error.key or key)

    def error(self, message: str, key: str) -> ConfigError:
        """A :class:`ConfigError` about ``key`` (a dotted path) in this configuration.

        The source is the environment variable when the value came from one, else the
        file; the line is the YAML line of ``key`` (or of its nearest written parent).
        """
        source, line = _locate(key, self.source, self._lines, self._env)
        return ConfigError(message, source=source, key=key, line=line)
