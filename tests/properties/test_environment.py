"""Environment overrides: any set of ``EVENTBINDER_*`` variables, of the documented
forms or near them, over a valid file, either loads (and the app's bindings resolve or
fail with a ConfigError) or raises a :class:`ConfigError` naming the variable (or the
file, with the key); never another exception, never a secret of the file or the
environment in the message."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from hypothesis import example, given, settings
from hypothesis import strategies as st

from binder.bindings import BINDING_SCHEMA
from binder.config import load_settings
from binder.errors import ConfigError
from binder.plugins import load_registry
from binder.resolve import resolve_bindings

from .strategies import (
    BINDER_TYPES,
    TYPE_SCHEMAS,
    check_config_error,
    keys_near,
    make_app,
    mostly,
    secrets,
)

REGISTRY = load_registry()
APP = make_app()
FILE_PASSWORD = "Pw-file-secret1"
FILE = f"""\
binders:
  memory: {{type: memory}}
  bus:
    type: rabbit
    url: amqp://guest:{FILE_PASSWORD}@localhost:5672//
default_binder: memory
bindings:
  default: {{max_attempts: 2}}
  bill-in-0: {{group: billing, rabbit: {{queue_type: quorum}}}}
  Bill_Out_0: {{binder: bus}}
"""


@pytest.fixture(scope="module")
def config_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("env") / "binder.yaml"
    path.write_text(FILE, encoding="utf-8")
    return path


# --------------------------------------------------------------------------- variables

_OPTION_KEYS = sorted(
    {key for schemas in TYPE_SCHEMAS.values() for schema in schemas for key in schema}
)
#: Path segments as a variable spells them: upper case, ``_`` for ``-``.
_SEGMENTS = [
    "DEFAULT_BINDER",
    "BINDERS",
    "BINDINGS",
    "RUNTIME",
    "BINDING",
    "BINDER",
    "MEMORY",
    "BUS",
    "RABBIT",
    "KAFKA",
    "MQTT",
    "NEW",
    "DEFAULT",
    "BILL_IN_0",
    "BILL_OUT_0",
    "MAIL_IN_0",
    "BEAT_OUT_0",
    "AUDIT",
    "TYPE",
    "URL",
    "BLOCKED_LOOP_WARNING",
    *(key.upper() for key in BINDING_SCHEMA),
    *(key.upper() for key in _OPTION_KEYS),
]
# Environment names and values hold no NUL; names no "=".
_name_text = st.text(st.characters(exclude_characters="\x00="), max_size=8)
segments = mostly(
    keys_near(_SEGMENTS).map(lambda s: s.upper() if s.isascii() else s),
    _name_text,
)
_PREFIXES = ["EVENTBINDER_", "eventbinder_", "EventBinder_"]
_SEPARATORS = ["__", "__", "__", "__", "_", "___"]


@st.composite
def variable_names(draw: st.DrawFn) -> str:
    parts = draw(st.lists(segments, min_size=1, max_size=5))
    name = draw(st.sampled_from(_PREFIXES)) + parts[0]
    for part in parts[1:]:
        name += draw(st.sampled_from(_SEPARATORS)) + part
    if draw(st.integers(0, 9)) == 0:
        name += "__"
    return name


_SCALARS = [
    "3",
    "0",
    "-1",
    "1.5",
    ".inf",
    "nan",
    "1e400",
    "0x10",
    "true",
    "off",
    "null",
    "~",
    "",
    "[a, b]",
    "{a: 1}",
    "'\"123\"'",
    "'quoted'",
    "billing,audit",
    "memory",
    "bus",
    "rabbit",
    "kafka",
    "quorum",
    "earliest",
    "key",
    "!!binary aGVsbG8=",
    "&a [*a]",
    "2001-02-30",
    "!!int x",
    "!!timestamp x",
    '"\\U00110000"',
    "[" * 1000,
    *BINDER_TYPES,
]
# Values as os.environ holds them: any text but NUL, undecodable bytes as surrogates.
_env_text = st.text(
    st.one_of(
        st.characters(codec="utf-8", exclude_characters="\x00"),
        st.characters(min_codepoint=0xDC80, max_codepoint=0xDCFF),
    ),
    max_size=12,
)
env_values = st.one_of(st.sampled_from(_SCALARS), _env_text, secrets.map(lambda s: f"pw-{s}"))
environments = st.dictionaries(variable_names(), env_values, max_size=4)


def _env_secrets(environ: dict[str, str]) -> list[str]:
    """Values of variables that name a password, as the redaction rules see them."""
    return [
        value
        for name, value in environ.items()
        if "PASSWORD" in name.upper() and value.startswith("pw-")
    ]


# --------------------------------------------------------------------------- properties


@settings(max_examples=120, deadline=None)
@given(environ=environments)
@example(environ={"EVENTBINDER_BINDINGS__BILL_IN_0__GROUP": "[" * 1000})
@example(environ={"EVENTBINDER_BINDINGS__BILL_IN_0__GROUP": "2001-02-30"})
@example(environ={"EVENTBINDER_BINDINGS__BILL_IN_0__GROUP": "!!bool x"})
@example(environ={"EVENTBINDER_BINDINGS__PRICE_IN_0__KAFKA__START_OFFSET": "earliest"})
@example(environ={"EVENTBINDER_BINDINGS__MAIL_IN_0__MQTT__RECEIVE_MAXIMUM": "5"})
@example(environ={"EVENTBINDER_BINDERS__BUS__PASSWORD": "pw-environment", "EVENTBINDER_X": "1"})
def test_overrides_load_or_name_the_variable(config_file: Path, environ: dict[str, str]) -> None:
    planted = [FILE_PASSWORD, *_env_secrets(environ)]

    def named(source: str) -> bool:
        return source == str(config_file) or source in {
            f"environment variable {name}" for name in environ
        }

    try:
        loaded = load_settings(config_file, registry=REGISTRY, environ=environ)
    except ConfigError as exc:
        check_config_error(exc, sources=named, secrets=planted)
        if exc.source == str(config_file):
            assert exc.key, f"an error located in the file names no key: {exc}"
        return
    for key, name in loaded.environment_overrides().items():
        assert name in environ, (key, name)
    loaded.redacted()
    try:
        resolve_bindings(APP, loaded)
    except ConfigError as exc:
        check_config_error(
            exc, sources=lambda s: named(s) or s.endswith("strategies.py"), secrets=planted
        )
        assert exc.key, str(exc)


def _as_yaml_scalar(text: str) -> object:
    """What the docs say a variable's value is: a YAML scalar (int, float, bool) or
    else the text as written (a YAML string is taken unquoted)."""
    try:
        value = yaml.safe_load(text)
    except Exception:  # not a value YAML can build
        return text
    return value if isinstance(value, bool | int | float | str) else text


@settings(max_examples=100, deadline=None)
@given(
    value=st.one_of(env_values, st.sampled_from(["12", "'12'", "yes", "1.0", "- a", "a: b"])),
    spelling=st.sampled_from(["BILL_IN_0", "bill_in_0", "Bill-In-0", "BILL-IN-0"]),
)
def test_group_override_is_the_value_as_documented(
    config_file: Path, value: str, spelling: str
) -> None:
    """``EVENTBINDER_BINDINGS__<binding>__GROUP`` sets the group of the file's
    ``bill-in-0`` to the value read as a YAML scalar; a number or a boolean is refused
    naming the variable and the key."""
    name = f"EVENTBINDER_BINDINGS__{spelling}__GROUP"
    expected = _as_yaml_scalar(value)
    try:
        loaded = load_settings(config_file, registry=REGISTRY, environ={name: value})
    except ConfigError as exc:
        assert not isinstance(expected, str), f"{value!r} refused: {exc}"
        assert exc.source == f"environment variable {name}"
        assert exc.key == "bindings.bill-in-0.group"
        return
    assert isinstance(expected, str), f"{value!r} accepted as {expected!r}"
    binding = resolve_bindings(APP, loaded)["bill-in-0"]
    assert binding.group == expected
    assert loaded.environment_overrides() == {"bindings.bill-in-0.group": name}


def _valid_options(direction: int) -> list[tuple[str, str, object]]:
    """(binder type, option, valid value) for every option of ``direction`` (1:
    consumer, 2: producer) with a default or choices that stand alone."""
    found = []
    for type_name, schemas in TYPE_SCHEMAS.items():
        for key, option in schemas[direction].items():
            candidates = [*(option.choices or ()), option.default]
            for value in candidates:
                if isinstance(value, bool | int | float | str) and value != "":
                    found.append((type_name, key, value))
    return found


def _as_variable_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)  # a YAML double-quoted string: always a str
    return repr(value)


@settings(max_examples=120, deadline=None)
@given(
    data=st.data(),
    binding=st.sampled_from(["bill-in-0", "mail-in-0", "bill-out-0", "beat-out-0"]),
    style=st.sampled_from([str.upper, str.lower, str.title]),
)
@example(data=None, binding="mail-in-0", style=str.upper)  # kafka start_offset, see below
def test_documented_variable_forms_set_binder_options(
    config_file: Path, data: st.DataObject | None, binding: str, style: object
) -> None:
    """``EVENTBINDER_BINDINGS__<BINDING>__<TYPE>__<OPTION>=<value>`` with a valid value
    loads for a binding name spelt as the docs show (``PRICE_IN_0``): the option is
    validated for the binding's direction (a consumer-only option of a consumer)."""
    direction = 1 if binding.endswith("-in-0") else 2
    if data is None:
        type_name, key, value = "kafka", "start_offset", "earliest"
    else:
        type_name, key, value = data.draw(st.sampled_from(_valid_options(direction)))
    spelt = style(binding.replace("-", "_"))  # type: ignore[operator]
    name = f"EVENTBINDER_BINDINGS__{spelt}__{type_name.upper()}__{key.upper()}"
    loaded = load_settings(
        config_file, registry=REGISTRY, environ={name: _as_variable_value(value)}
    )
    resolved = resolve_bindings(APP, loaded)[binding]
    assert key in resolved.options_for(type_name)
