"""The binding model: names, directions and the per-binding settings every binder shares."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from binder.schema import Option, defaults, non_negative, positive
from binder.spi import DEFAULT_PREFETCH, Direction

__all__ = [
    "BINDING_SCHEMA",
    "BindingSettings",
    "binding_default",
    "binding_direction",
    "check_binding",
    "input_binding_name",
    "normalize_name",
    "output_binding_name",
]

#: A binding name after :func:`normalize_name`: ``<fn>_in_<n>`` or ``<fn>_out_<n>``.
_BINDING_NAME = re.compile(r"(?P<fn>.+)_(?P<dir>in|out)_(?P<index>\d+)", re.DOTALL)


def input_binding_name(function: str, index: int = 0) -> str:
    """Spring Cloud Stream's name for a function's input: ``<fn>-in-<index>``."""
    return f"{function}-in-{index}"


def output_binding_name(function: str, index: int = 0) -> str:
    """Spring Cloud Stream's name for a function's output: ``<fn>-out-<index>``."""
    return f"{function}-out-{index}"


def binding_direction(name: str) -> Direction:
    """``consumer`` for ``*-in-N`` names, ``producer`` for everything else.

    Names are compared as :func:`normalize_name` does, so ``bill_in_0`` (how an
    environment variable spells ``bill-in-0``) and ``BILL-IN-0`` are consumers too.
    Names that are not ``-in-``/``-out-`` are dynamic destinations used with
    ``App.send``, which only produce.
    """
    match = _BINDING_NAME.fullmatch(normalize_name(name))
    return "consumer" if match and match.group("dir") == "in" else "producer"


def normalize_name(name: str) -> str:
    """Compare binding names ignoring case and ``-`` versus ``_`` (environment variables)."""
    return name.replace("-", "_").lower()


def _dead_letter(value: bool | str) -> bool | str:
    if isinstance(value, str) and not value.strip():
        raise ValueError("dead_letter must be true, false or a destination name")
    return value


def _partition_key(value: str) -> str:
    if not value:
        raise ValueError("partition_key must be 'key' or a header name")
    return value


def _group_names(value: Any) -> list[str]:
    """A list of group names, or one string of comma-separated names (as Spring's
    ``requiredGroups``, and what an environment variable can hold)."""
    names = [part.strip() for part in value.split(",")] if isinstance(value, str) else value
    for name in names:
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"must be a list of group names, got {value!r}")
    unique: list[str] = []
    for name in names:
        if name not in unique:
            unique.append(name)
    return unique


#: Keys every binding accepts, on every binder, with their defaults: the one place
#: they are written (:class:`BindingSettings` and the retry policy take theirs from
#: here).  Binder-specific keys live in a section named after the binder type
#: (``rabbit:``, ``kafka:``, ``mqtt:``, ``memory:``).
BINDING_SCHEMA: Mapping[str, Option] = MappingProxyType(
    {
        "destination": Option(str, None, help="topic/exchange name; defaults to the decorator's"),
        "group": Option(str, None, help="consumer group; unset = anonymous subscriber"),
        "binder": Option(str, None, help="name of a binder under `binders:`; default_binder"),
        "content_type": Option(
            str, "application/json", help="how payloads are encoded (e.g. text/plain)"
        ),
        "concurrency": Option(int, 1, check=positive, help="handler calls running at once"),
        "prefetch": Option(
            int, DEFAULT_PREFETCH, check=positive, help="messages fetched and not yet settled"
        ),
        "max_attempts": Option(
            int,
            3,
            check=positive,
            help="handler calls per delivery, the first included (1: no retry); also "
            "publishes of a function's output the broker refused",
        ),
        "backoff_initial": Option(
            float, 1.0, check=non_negative, help="delay before the first retry, s"
        ),
        "backoff_multiplier": Option(float, 2.0, check=positive, help="delay growth factor"),
        "backoff_max": Option(
            float, 10.0, check=non_negative, help="longest delay between retries, s"
        ),
        "dead_letter": Option((bool, str), True, check=_dead_letter, help="on, off or a name"),
        "partition_key": Option(str, None, check=_partition_key, help="'key' or a header name"),
        "partition_count": Option(int, 1, check=positive, help="partitions to spread over"),
        "required_groups": Option(
            (list, tuple, str),
            (),
            check=_group_names,
            help="producer: groups whose storage is created when it binds (g1, g2)",
        ),
        "instance_index": Option(
            int, 0, check=non_negative, help="consumer: this instance's index, < instance_count"
        ),
        "instance_count": Option(int, 1, check=positive, help="consumer: instances in the group"),
    }
)

#: Keys whose explicit ``null`` clears a lower layer's value (``group: null`` makes a
#: consumer anonymous); ``null`` for ``destination`` or ``binder`` means "not set".
_NULLABLE = frozenset({"group", "partition_key"})

_DEFAULTS: Mapping[str, Any] = MappingProxyType(defaults(BINDING_SCHEMA))


def binding_default(key: str) -> Any:
    """The default of the core binding key ``key``, from :data:`BINDING_SCHEMA`."""
    return _DEFAULTS[key]


def check_binding(values: Mapping[str, Any]) -> tuple[str, str] | None:
    """Checks across keys of a merged binding: ``(key, reason)`` of the first problem.

    The keys were each validated where they were written; what only the merged
    binding shows is checked here.  ``instance_index`` and ``instance_count`` are
    consumer keys: a producer ignores them (``bindings.default`` may set them for all).
    """
    index, count = values["instance_index"], values["instance_count"]
    if values["direction"] == "consumer" and index >= count:
        return "instance_index", f"must be less than instance_count ({count}), got {index}"
    return None


@dataclass(frozen=True, slots=True)
class BindingSettings:
    """The effective settings of one binding after defaults, code and config are merged.

    Precedence, lowest first: built-in defaults, ``bindings.default`` in the config,
    the decorator's arguments, ``bindings.<name>`` in the config, environment variables.
    """

    name: str
    direction: Direction
    destination: str
    binder: str
    group: str | None = None
    content_type: str = _DEFAULTS["content_type"]
    concurrency: int = _DEFAULTS["concurrency"]
    prefetch: int = _DEFAULTS["prefetch"]
    max_attempts: int = _DEFAULTS["max_attempts"]
    backoff_initial: float = _DEFAULTS["backoff_initial"]
    backoff_multiplier: float = _DEFAULTS["backoff_multiplier"]
    backoff_max: float = _DEFAULTS["backoff_max"]
    dead_letter: bool | str = _DEFAULTS["dead_letter"]
    partition_key: str | None = None
    partition_count: int = _DEFAULTS["partition_count"]
    required_groups: tuple[str, ...] = _DEFAULTS["required_groups"]
    """Producer: groups to provision when it binds (Spring's ``requiredGroups``)."""
    instance_index: int = _DEFAULTS["instance_index"]
    instance_count: int = _DEFAULTS["instance_count"]
    options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """Binder-specific sections by binder type (``{"rabbit": {...}}``); the section of
    the binding's own binder type is complete (every option, defaults filled) once
    :func:`binder.resolve.resolve_binding` resolved it."""

    @classmethod
    def merge(
        cls,
        name: str,
        *layers: Mapping[str, Any],
        default_destination: str,
        default_binder: str,
        direction: Direction | None = None,
    ) -> BindingSettings:
        """Merge ``layers`` (lowest precedence first) over the schema's defaults.

        The layers hold validated values; :func:`check_binding` checks the result.
        ``direction`` defaults to what the name says (:func:`binding_direction`).
        """
        values: dict[str, Any] = dict(_DEFAULTS)
        options: dict[str, dict[str, Any]] = {}
        for layer in layers:
            for key, value in layer.items():
                if key in BINDING_SCHEMA:
                    # An explicit null may clear an optional setting (group: null = anonymous).
                    if value is not None or key in _NULLABLE:
                        values[key] = value
                elif isinstance(value, Mapping):
                    options.setdefault(key, {}).update(value)
        return cls(
            name=name,
            direction=direction or binding_direction(name),
            destination=values.pop("destination", None) or default_destination,
            binder=values.pop("binder", None) or default_binder,
            required_groups=tuple(values.pop("required_groups")),
            options=options,
            **values,
        )

    def options_for(self, binder_type: str) -> Mapping[str, Any]:
        """This binding's section for ``binder_type`` (empty when absent)."""
        return self.options.get(binder_type, {})
