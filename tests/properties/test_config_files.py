"""Configuration files: any YAML or TOML document, well-formed or not, either loads (and
the app's bindings resolve against it, or fail with a ConfigError), or raises a
:class:`ConfigError` naming the file and, where a key is at fault, the key (with its
line in YAML), and holding no secret of the file.  Never another exception."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import example, given, settings
from hypothesis import strategies as st

from binder.config import Settings, load_settings
from binder.errors import ConfigError
from binder.plugins import load_registry
from binder.resolve import resolve_bindings

from .strategies import (
    check_config_error,
    documents,
    documents_with_secrets,
    file_text,
    make_app,
    to_toml,
    top_segment_written,
    values,
    without_none,
)

REGISTRY = load_registry()
APP = make_app()
FAST = settings(max_examples=80)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("config")


def _from_decorator(source: str) -> bool:
    return source.endswith("strategies.py")  # where make_app's decorators are


def load_or_refuse(
    path: Path, doc: Any = None, *, secrets: tuple[str, ...] | list[str] = ()
) -> Settings | None:
    """Load ``path`` and resolve the app's bindings: a Settings, or None after a
    ConfigError of the documented shape."""
    try:
        loaded = load_settings(path, registry=REGISTRY, environ={})
    except ConfigError as exc:
        check_config_error(exc, sources=lambda s: s == str(path), secrets=secrets)
        if isinstance(doc, Mapping):
            # Parsed, with a mapping at the top: the fault is a key's (an empty
            # top-level key has no dotted path, its reason names it).
            assert exc.key or "key ''" in exc.reason, f"no key named: {exc}"
            if path.suffix == ".yaml" and exc.key and top_segment_written(doc, exc.key):
                assert exc.line is not None, f"no line for a key written: {exc}"
        return None
    loaded.redacted()
    try:
        resolve_bindings(APP, loaded)
    except ConfigError as exc:
        check_config_error(
            exc, sources=lambda s: s == str(path) or _from_decorator(s), secrets=secrets
        )
        assert exc.key, f"no key named: {exc}"
        return None
    return loaded


def write_yaml(workdir: Path, doc: Any) -> Path:
    path = workdir / "binder.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def write_toml(workdir: Path, doc: Mapping[str, Any]) -> Path:
    path = workdir / "binder.toml"
    path.write_text(to_toml(doc), encoding="utf-8")
    return path


# --------------------------------------------------------------------------- documents


@FAST
@given(doc=documents())
@example(doc={"bindings": {"bill_in_0": {"kafka": {"start_offset": "earliest"}}}})
@example(doc={"bindings": {"BILL-IN-0": {"mqtt": {"receive_maximum": 5}}}})
def test_yaml_document_loads_or_names_the_key(workdir: Path, doc: dict[str, Any]) -> None:
    load_or_refuse(write_yaml(workdir, doc), doc)


@FAST
@given(doc=documents())
def test_toml_document_loads_or_names_the_key(workdir: Path, doc: dict[str, Any]) -> None:
    load_or_refuse(write_toml(workdir, doc), without_none(doc))


@settings(max_examples=60, deadline=None)
@given(planted=documents_with_secrets(), toml=st.booleans())
@example(  # a secret also written as a key
    planted=(
        {"Pw-hunter2": None, "binders": {"rabbit": {"password": "Pw-hunter2"}}},
        ["Pw-hunter2"],
    ),
    toml=False,
)
def test_errors_never_show_a_secret_of_the_file(
    workdir: Path, planted: tuple[dict[str, Any], list[str]], toml: bool
) -> None:
    doc, secrets = planted
    if toml:
        load_or_refuse(write_toml(workdir, doc), without_none(doc), secrets=secrets)
    else:
        load_or_refuse(write_yaml(workdir, doc), doc, secrets=secrets)


@settings(max_examples=60, deadline=None)
@given(value=values)
def test_any_yaml_value_at_the_top(workdir: Path, value: Any) -> None:
    """Lists and scalars are refused as a whole (no key); mappings as above."""
    path = write_yaml(workdir, value)
    if value is None or isinstance(value, Mapping):
        load_or_refuse(path, value)
        return
    with pytest.raises(ConfigError) as caught:
        load_settings(path, registry=REGISTRY, environ={})
    check_config_error(caught.value, sources=lambda s: s == str(path))
    assert "top level must be a mapping" in caught.value.reason


# --------------------------------------------------------------------------- broken text

# Characters that matter to YAML or TOML syntax.
_SYNTAX = ":-[]{},#&*!|>'\"%@`=.\n\t \\\x00\x85\ufeff"


@st.composite
def mangled(draw: st.DrawFn, text: str) -> str:
    """``text`` with a few characters inserted, deleted or replaced."""
    chars = list(text)
    for _ in range(draw(st.integers(1, 4))):
        position = draw(st.integers(0, len(chars)))
        action = draw(st.sampled_from(["insert", "delete", "replace"]))
        char = draw(st.one_of(st.sampled_from(_SYNTAX), st.characters(codec="utf-8")))
        if action == "insert" or not chars or position == len(chars):
            chars.insert(position, char)
        elif action == "delete":
            del chars[position]
        else:
            chars[position] = char
    return "".join(chars)


def _mangled_yaml() -> st.SearchStrategy[str]:
    dumped = documents().map(lambda d: yaml.safe_dump(d, allow_unicode=True, sort_keys=False))
    return st.one_of(
        dumped.flatmap(mangled), st.text(st.sampled_from(_SYNTAX + "ab1"), max_size=30)
    )


def _mangled_toml() -> st.SearchStrategy[str]:
    return st.one_of(
        documents().map(to_toml).flatmap(mangled), st.text(st.sampled_from(_SYNTAX + "ab1"))
    )


def _text_loads_or_refuses(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8", newline="")
    load_or_refuse(path)


@FAST
@given(text=_mangled_yaml())
@example(text="bindings: &x\n  default: *x\n")  # a recursive alias
@example(text="bindings:\n  default:\n    required_groups: &g [a, *g]\n")
@example(text="bindings: " + "[" * 1000)  # nested deeper than the parser recurses
@example(text="bindings: {}\x00\n")  # a character YAML forbids
@example(text="bindings: {default: {max_attempts: 3}}\x85\x1b\n")
@example(text='bindings: {default: {group: "\\U00110000"}}\n')  # an escape beyond Unicode
@example(text="bindings: {default: {group: 2001-02-30}}\n")  # a date that does not exist
@example(text="bindings: {default: {max_attempts: !!int x}}\n")
@example(text="bindings: {default: {group: !!timestamp x}}\n")
@example(text="bindings: {default: {group: !!bool x}}\n")
def test_broken_yaml_text(workdir: Path, text: str) -> None:
    _text_loads_or_refuses(workdir / "binder.yaml", text)


@FAST
@given(text=_mangled_toml())
@example(text="a = " + "[" * 1000 + "]" * 1000)  # nested deeper than the parser recurses
@example(text="bindings = {default = {max_attempts = 3}}\x00\n")
def test_broken_toml_text(workdir: Path, text: str) -> None:
    _text_loads_or_refuses(workdir / "binder.toml", text)


@settings(max_examples=40, deadline=None)
@given(data=st.binary(max_size=40), suffix=st.sampled_from([".yaml", ".toml"]))
@example(data=b"a: '\xff'\n", suffix=".yaml")
@example(data="a: 1\n".encode("utf-16"), suffix=".toml")
def test_bytes_that_are_not_utf8(workdir: Path, data: bytes, suffix: str) -> None:
    path = workdir / f"binder{suffix}"
    path.write_bytes(data)
    load_or_refuse(path)


# --------------------------------------------------------------------------- values


@FAST
@given(destination=file_text, group=file_text, toml=st.booleans(), spelling=st.integers(0, 2))
def test_destination_and_group_arrive_as_written(
    workdir: Path, destination: str, group: str, toml: bool, spelling: int
) -> None:
    """Any text a file can hold, written as a binding's destination and group, is what
    the binding resolves to (an empty destination means the decorator's)."""
    name = ("bill-in-0", "bill_in_0", "BILL_IN_0")[spelling]
    doc = {"bindings": {name: {"destination": destination, "group": group}}}
    if toml:
        path = write_toml(workdir, doc)
    else:
        # Escaped: PyYAML writes U+0085 and U+2028 raw, which YAML then reads as line
        # breaks (a space), whoever reads it.
        path = workdir / "binder.yaml"
        path.write_text(yaml.safe_dump(doc, allow_unicode=False), encoding="utf-8")
    loaded = load_or_refuse(path, doc)
    assert loaded is not None
    binding = resolve_bindings(APP, loaded)["bill-in-0"]
    assert binding.destination == (destination or "orders")
    assert binding.group == group
    assert binding.direction == "consumer"
