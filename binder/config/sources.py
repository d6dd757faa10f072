"""Where configuration comes from: finding the file, reading YAML (with the line of each
key) or TOML, or taking a mapping, into :class:`_Raw` data not yet validated."""

from __future__ import annotations

import logging
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from binder.config.keys import Path_, _dotted, _locate
from binder.errors import ConfigError

__all__ = ["CONFIG_ENV", "CONFIG_FILENAMES", "find_config_file"]

# The package's one logger, as before it was split into modules.
log = logging.getLogger("binder.config")

#: The files looked for in the working directory, in this order.
CONFIG_FILENAMES = ("binder.yaml", "binder.yml", "binder.toml")
#: Environment variable naming the config file (not an override).
CONFIG_ENV = "EVENTBINDER_CONFIG"


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
        except RecursionError:
            raise ConfigError("invalid TOML: nested too deeply", source=source) from None
    raw = _Raw(None, source)
    raw.data = _load_yaml(text, raw)
    return raw


def _plain(value: Any) -> Any:
    """A deep copy of ``value`` with mappings as dicts with string keys."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


# --------------------------------------------------------------------------- YAML


def _load_yaml(text: str, raw: _Raw) -> Any:
    """Compose ``text`` to nodes and build plain data, recording the line of each key."""
    try:
        loader = yaml.SafeLoader(text)
    except yaml.reader.ReaderError as exc:  # a character YAML forbids, such as NUL
        raise ConfigError(
            f"invalid YAML: unacceptable character #x{exc.character:04x}: {exc.reason}",
            source=raw.source,
            line=text.count("\n", 0, exc.position) + 1,
        ) from None
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
    except RecursionError:
        raise ConfigError(
            "invalid YAML: nested too deeply, or an alias inside its own anchor",
            source=raw.source,
        ) from None
    except ValueError as exc:  # PyYAML's scanner lets chr() refuse "\U00110000"
        raise ConfigError(f"invalid YAML: {exc}", source=raw.source) from None
    finally:
        loader.dispose()


#: The most keys and list items a configuration may hold once its YAML aliases are
#: expanded: far more than any real configuration, far less than a "billion laughs"
#: document (nested aliases that would expand to billions of values) needs.
MAX_VALUES = 100_000


def _build(node: yaml.Node, path: Path_, loader: yaml.SafeLoader, raw: _Raw) -> Any:
    if len(raw.lines) > MAX_VALUES:
        raise ConfigError(
            f"the configuration expands to more than {MAX_VALUES:,} keys and list items; "
            "YAML aliases (*name) repeating anchors that repeat others?",
            source=raw.source,
            key=_dotted(path) or None,
            line=node.start_mark.line + 1,
        )
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
    try:
        return loader.construct_object(node, deep=True)
    except yaml.YAMLError:
        raise
    except Exception:  # PyYAML's constructors let ValueError & co. out: 2001-02-30, !!int x
        raise ConfigError(
            f"invalid YAML: not a valid {node.tag.rsplit(':', 1)[-1]}",
            source=raw.source,
            key=_dotted(path) or None,
            line=node.start_mark.line + 1,
        ) from None


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
