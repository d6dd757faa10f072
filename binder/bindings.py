"""The binding model: names, directions and the per-binding settings every binder shares."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from binder.schema import Option, non_negative, positive
from binder.spi import DEFAULT_PREFETCH

__all__ = [
    "BINDING_SCHEMA",
    "BindingSettings",
    "Direction",
    "binding_direction",
    "input_binding_name",
    "normalize_name",
    "output_binding_name",
]

Direction = Literal["consumer", "producer"]
_BINDING_NAME = re.compile(r"^(?P<fn>.+)-(?P<dir>in|out)-(?P<index>\d+)$")


def input_binding_name(function: str, index: int = 0) -> str:
    """Spring Cloud Stream's name for a function's input: ``<fn>-in-<index>``."""
    return f"{function}-in-{index}"


def output_binding_name(function: str, index: int = 0) -> str:
    """Spring Cloud Stream's name for a function's output: ``<fn>-out-<index>``."""
    return f"{function}-out-{index}"


def binding_direction(name: str) -> Direction:
    """``consumer`` for ``*-in-N`` names, ``producer`` for everything else.

    Names that are not ``-in-``/``-out-`` are dynamic destinations used with
    ``App.send``, which only produce.
    """
    match = _BINDING_NAME.match(name)
    return "consumer" if match and match.group("dir") == "in" else "producer"


def normalize_name(name: str) -> str:
    """Compare binding names ignoring case and ``-`` versus ``_`` (environment variables)."""
    return name.replace("-", "_").lower()


def _dead_letter(value: Any) -> bool | str:
    if isinstance(value, str) and not value.strip():
        raise ValueError("dead_letter must be true, false or a destination name")
    return value


def _partition_key(value: Any) -> str:
    if not value:
        raise ValueError("partition_key must be 'key' or a header name")
    return value


#: Keys every binding accepts, on every binder.  Binder-specific keys live in a
#: section named after the binder type (``rabbit:``, ``kafka:``, ``mqtt:``, ``memory:``).
BINDING_SCHEMA: Mapping[str, Option] = MappingProxyType(
    {
        "destination": Option(str, None, help="topic/exchange name; defaults to the decorator's"),
        "group": Option(str, None, help="consumer group; unset = anonymous subscriber"),
        "binder": Option(str, None, help="name of a binder under `binders:`"),
        "content_type": Option(str, None, help="e.g. application/json (default), text/plain"),
        "concurrency": Option(int, None, check=positive, help="handlers running at once"),
        "prefetch": Option(
            int, None, check=positive, help="messages fetched and not yet settled, at most"
        ),
        "max_attempts": Option(int, None, check=positive, help="deliveries before dead-letter"),
        "backoff_initial": Option(float, None, check=non_negative, help="first retry delay, s"),
        "backoff_multiplier": Option(float, None, check=positive, help="delay growth factor"),
        "backoff_max": Option(float, None, check=non_negative, help="longest retry delay, s"),
        "dead_letter": Option((bool, str), None, check=_dead_letter, help="on, off or a name"),
        "partition_key": Option(str, None, check=_partition_key, help="'key' or a header name"),
        "partition_count": Option(int, None, check=positive, help="partitions to spread over"),
        "instance_index": Option(int, None, check=non_negative, help="this instance's index"),
        "instance_count": Option(int, None, check=positive, help="instances sharing the group"),
    }
)

_NULLABLE = frozenset({"group", "partition_key"})

_DEFAULTS: Mapping[str, Any] = MappingProxyType(
    {
        "content_type": "application/json",
        "concurrency": 1,
        "prefetch": DEFAULT_PREFETCH,
        "max_attempts": 3,
        "backoff_initial": 1.0,
        "backoff_multiplier": 2.0,
        "backoff_max": 10.0,
        "dead_letter": True,
        "partition_count": 1,
        "instance_index": 0,
        "instance_count": 1,
    }
)


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
    content_type: str = "application/json"
    concurrency: int = 1
    prefetch: int = DEFAULT_PREFETCH
    max_attempts: int = 3
    backoff_initial: float = 1.0
    backoff_multiplier: float = 2.0
    backoff_max: float = 10.0
    dead_letter: bool | str = True
    partition_key: str | None = None
    partition_count: int = 1
    instance_index: int = 0
    instance_count: int = 1
    options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """Binder-specific sections by binder type (``{"rabbit": {...}}``)."""

    @classmethod
    def merge(
        cls,
        name: str,
        *layers: Mapping[str, Any],
        default_destination: str,
        default_binder: str,
    ) -> BindingSettings:
        """Merge ``layers`` (lowest precedence first) over the built-in defaults."""
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
            direction=binding_direction(name),
            destination=values.pop("destination", None) or default_destination,
            binder=values.pop("binder", None) or default_binder,
            options=options,
            **values,
        )

    def options_for(self, binder_type: str) -> Mapping[str, Any]:
        """This binding's section for ``binder_type`` (empty when absent)."""
        return self.options.get(binder_type, {})
