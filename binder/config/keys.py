"""Dotted key paths of the configuration: where a key was written, and value names.

Every error of this package names a key as a dotted path (``bindings.bill-in-0.group``)
and locates it: the environment variable that set it, else the 1-based YAML line of the
key or of its nearest written parent.  :class:`binder.config.Settings` and the loader
locate keys the same way, through :func:`_locate`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from binder.bindings import normalize_name

#: A key path as a tuple of keys, ``("bindings", "bill-in-0", "group")``.
Path_ = tuple[str, ...]


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
