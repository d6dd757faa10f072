"""Declarative validation of configuration sections, shared by the core and binders."""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from binder.errors import ConfigError

__all__ = [
    "Option",
    "defaults",
    "did_you_mean",
    "non_negative",
    "positive",
    "secret_keys",
    "validate_section",
]

_MISSING: Any = object()


@dataclass(frozen=True, slots=True)
class Option:
    """One allowed key of a configuration section.

    ``kind`` is a type or tuple of types the value must have (``float`` accepts ints,
    and a float must be finite: ``.inf`` and ``.nan`` are refused); ``default`` is the
    value of a key not written (omit it to make the key required); ``choices``
    restricts the value; ``check`` may normalise it or raise ``ValueError`` with a
    sentence explaining what is wrong; ``secret`` keeps the value out of error messages,
    and :func:`secret_keys` derives ``BinderType.secret_keys()`` (which hides the value
    from ``binder config`` and logs) from it.
    """

    kind: type | tuple[type, ...] = object
    default: Any = _MISSING
    choices: tuple[Any, ...] | None = None
    check: Callable[[Any], Any] | None = None
    secret: bool = False
    help: str = ""

    @property
    def required(self) -> bool:
        """True when the key has no default."""
        return self.default is _MISSING


def did_you_mean(word: str, candidates: list[str] | set[str] | tuple[str, ...]) -> str:
    """Return ' (did you mean "x"?)' when a close candidate exists, else ''."""
    close = difflib.get_close_matches(word, sorted(candidates), n=1, cutoff=0.6)
    return f' (did you mean "{close[0]}"?)' if close else ""


def _type_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(k.__name__ for k in kinds)


def _check_kind(value: Any, opt: Option) -> bool:
    kinds = opt.kind if isinstance(opt.kind, tuple) else (opt.kind,)
    if isinstance(value, bool) and bool not in kinds and object not in kinds:
        return False
    if float in kinds and isinstance(value, int) and not isinstance(value, bool):
        return True
    return isinstance(value, kinds)


def validate_section(
    section: Mapping[str, Any], schema: Mapping[str, Option], *, prefix: str = ""
) -> dict[str, Any]:
    """Check ``section`` against ``schema``; return it with defaults filled in.

    Errors are :class:`ConfigError` whose ``key`` is ``prefix`` + the offending key.
    """
    if not isinstance(section, Mapping):
        raise ConfigError(f"expected a mapping, got {type(section).__name__}", key=prefix or None)
    result: dict[str, Any] = {}
    for key, value in section.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        opt = schema.get(key)
        if opt is None:
            raise ConfigError(
                f"unknown key '{key}'{did_you_mean(str(key), list(schema))}", key=path
            )
        if value is None and not opt.required and opt.default is None:
            result[key] = None
            continue
        if not _check_kind(value, opt):
            raise ConfigError(
                f"expected {_type_name(opt.kind)}, got {type(value).__name__} {value!r}"
                if not opt.secret
                else f"expected {_type_name(opt.kind)}, got {type(value).__name__}",
                key=path,
            )
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"must be a finite number, got {value!r}", key=path)
        if opt.choices is not None and value not in opt.choices:
            allowed = ", ".join(repr(c) for c in opt.choices)
            raise ConfigError(f"must be one of {allowed}, got {value!r}", key=path)
        if opt.check is not None:
            try:
                value = opt.check(value)
            except (ValueError, TypeError) as exc:
                raise ConfigError(str(exc), key=path) from None
        result[key] = value
    for key, opt in schema.items():
        if key in result:
            continue
        if opt.required:
            path = f"{prefix}.{key}" if prefix else key
            raise ConfigError("missing required key", key=path)
        result[key] = opt.default
    return result


def defaults(schema: Mapping[str, Option]) -> dict[str, Any]:
    """The default of every key of ``schema`` that has one (required keys are left out)."""
    return {key: opt.default for key, opt in schema.items() if not opt.required}


def secret_keys(*schemas: Mapping[str, Option]) -> frozenset[str]:
    """The keys declared ``Option(..., secret=True)`` in any of ``schemas``.

    A binder type's ``secret_keys()`` is usually ``secret_keys(SETTINGS, ...)``: one
    declaration, on the option itself.
    """
    return frozenset(key for schema in schemas for key, opt in schema.items() if opt.secret)


def positive(value: Any) -> Any:
    """``check`` helper: the number must be > 0."""
    if value <= 0:
        raise ValueError(f"must be greater than 0, got {value!r}")
    return value


def non_negative(value: Any) -> Any:
    """``check`` helper: the number must be >= 0."""
    if value < 0:
        raise ValueError(f"must be 0 or more, got {value!r}")
    return value
