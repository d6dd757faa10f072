"""Environment overrides: ``EVENTBINDER_<PATH>`` variables merged into raw configuration.

Levels of the path are separated by two underscores
(``EVENTBINDER_BINDINGS__BILL_IN_0__GROUP``); names match existing keys ignoring case
and ``-``/``_``; values are read as YAML scalars.  The environment wins over the file.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml

from binder.bindings import normalize_name
from binder.config.keys import Path_, _dotted, _kind
from binder.config.model import TOP_LEVEL_KEYS
from binder.config.sources import CONFIG_ENV, _Raw
from binder.errors import ConfigError
from binder.schema import did_you_mean

__all__ = ["ENV_PREFIX"]

#: Prefix of override variables: ``EVENTBINDER_<PATH>`` with ``__`` between levels.
ENV_PREFIX = "EVENTBINDER_"
_ENV_SEP = "__"


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
    except Exception:  # not YAML, or not a value PyYAML can build (2001-02-30, "[[[[...")
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
