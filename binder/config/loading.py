"""Loading: a source (file, mapping or defaults) plus the environment -> :class:`Settings`.

The one entry point of the package, :func:`load_settings`, runs the steps of the other
modules in order: read the source (:mod:`~binder.config.sources`), apply the
``EVENTBINDER_*`` overrides (:mod:`~binder.config.environment`), validate
(:mod:`~binder.config.validation`), and scrub every secret value from an error.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from binder.config.environment import _apply_environment
from binder.config.keys import _kind
from binder.config.model import BinderTypes, Settings
from binder.config.sources import _plain, _Raw, _read_file, find_config_file
from binder.config.validation import _all_secret_keys, _validate
from binder.errors import ConfigError
from binder.redaction import scrub, secret_values

__all__ = ["load_settings"]


def load_settings(
    source: str | Path | Mapping[str, Any] | None = None,
    *,
    registry: BinderTypes,
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
        key = scrub(exc.key, secrets) if exc.key else exc.key  # a secret written as a key
        raise ConfigError(reason, source=exc.source, key=key, line=exc.line) from None
