"""binder.config: files, environment overrides, validation errors, redaction."""

from __future__ import annotations

import logging
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from binder.config import (
    CONFIG_FILENAMES,
    BinderConfig,
    Settings,
    find_config_file,
    load_settings,
)
from binder.errors import ConfigError
from binder.plugins import BinderRegistry, hookimpl, load_registry
from binder.redaction import redact, redact_url
from binder.schema import Option, validate_section
from binder.spi import Binder, Direction

SECRET = "s3cr3t-hunter2"

_FAKE_SETTINGS = {
    "url": Option(str, "fake://localhost:1234", help="where the broker is"),
    "password": Option(str, None, secret=True),
    "timeout": Option(float, 5.0),
}
_FAKE_CONSUMER = {"prefetch": Option(int, 10), "exclusive": Option(bool, False)}
_FAKE_PRODUCER = {"linger": Option(float, 0.0), "exclusive": Option(bool, False)}


class FakeBrokerType:
    """A third-party-style binder type used only by these tests."""

    name = "fakebroker"
    description = "a fake broker for config tests"

    def validate_settings(self, settings: Mapping[str, Any]) -> dict[str, Any]:
        return validate_section(settings, _FAKE_SETTINGS)

    def validate_binding_options(
        self, options: Mapping[str, Any], direction: Direction
    ) -> dict[str, Any]:
        schema = _FAKE_CONSUMER if direction == "consumer" else _FAKE_PRODUCER
        return validate_section(options, schema)

    def secret_keys(self) -> frozenset[str]:
        return frozenset({"password", "api_phrase"})

    def create(self, name: str, settings: Mapping[str, Any]) -> Binder:  # pragma: no cover
        raise NotImplementedError


class FakePlugin:
    @hookimpl
    def binder_types(self) -> list[Any]:
        return [FakeBrokerType()]


@pytest.fixture
def registry() -> BinderRegistry:
    return load_registry(extra_plugins=[FakePlugin()])


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def load(source: Any, registry: BinderRegistry, **kw: Any) -> Settings:
    kw.setdefault("environ", {})
    return load_settings(source, registry=registry, **kw)


def config_error(source: Any, registry: BinderRegistry, **kw: Any) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load(source, registry, **kw)
    return info.value


YAML = f"""
default_binder: fake
binders:
  fake:
    type: fakebroker
    url: fake://admin:{SECRET}@broker:1234/
    password: {SECRET}
  memory: {{type: memory}}
bindings:
  default:
    max_attempts: 5
  bill-in-0:
    destination: orders
    group: billing
    fakebroker:
      prefetch: 50
  bill-out-0:
    destination: invoices
    binder: fake
"""

TOML = f"""
default_binder = "fake"

[binders.fake]
type = "fakebroker"
url = "fake://admin:{SECRET}@broker:1234/"
password = "{SECRET}"

[bindings.default]
max_attempts = 5

[bindings.bill-in-0]
destination = "orders"
group = "billing"
fakebroker = {{ prefetch = 50 }}

[bindings.bill-out-0]
destination = "invoices"
binder = "fake"
"""


# --------------------------------------------------------------------------- loading


def test_no_file_gives_in_memory_defaults(tmp_path: Path, registry: BinderRegistry) -> None:
    settings = load(None, registry, cwd=tmp_path)
    assert settings.source == "<defaults>"
    assert settings.default_binder == "memory"
    assert list(settings.binders) == ["memory"]
    assert settings.binders["memory"].type == "memory"
    assert settings.bindings == {}
    assert settings.binding_layer("bill-in-0") == {}
    assert settings.default_layer() == {}


def test_implicit_memory_binder_without_memory_plugin(tmp_path: Path) -> None:
    registry = load_registry(extra_plugins=[FakePlugin()])
    registry.types.pop("memory", None)  # as if the memory plugin were not installed
    settings = load(None, registry, cwd=tmp_path)
    assert settings.binders["memory"] == BinderConfig("memory", "memory", {})


def test_empty_file_gives_defaults(tmp_path: Path, registry: BinderRegistry) -> None:
    path = write(tmp_path, "binder.yaml", "# nothing yet\n")
    settings = load(path, registry)
    assert settings.source == str(path)
    assert settings.default_binder == "memory"


@pytest.mark.parametrize(("name", "text"), [("binder.yaml", YAML), ("binder.toml", TOML)])
def test_yaml_and_toml_load_the_same(
    tmp_path: Path, registry: BinderRegistry, name: str, text: str
) -> None:
    settings = load(write(tmp_path, name, text), registry)
    fake = settings.binders["fake"]
    assert fake.type == "fakebroker"
    assert fake.settings["password"] == SECRET
    assert fake.settings["timeout"] == 5.0  # filled by validate_settings
    assert settings.default_binder == "fake"
    assert settings.default_layer() == {"max_attempts": 5}
    # only the keys written, no defaults filled in
    assert settings.binding_layer("bill-in-0") == {
        "destination": "orders",
        "group": "billing",
        "fakebroker": {"prefetch": 50},
    }
    assert settings.binding_layer("bill-out-0") == {"destination": "invoices", "binder": "fake"}
    assert settings.binding_layer("nope-in-0") == {}


def test_mapping_source(registry: BinderRegistry) -> None:
    settings = load({"bindings": {"bill-in-0": {"group": "g"}}}, registry)
    assert settings.source == "<mapping>"
    assert settings.binding_layer("bill_in_0") == {"group": "g"}
    with pytest.raises(ConfigError, match=r"<mapping>, key 'bindings.bill-in-0.grup'"):
        load({"bindings": {"bill-in-0": {"grup": "g"}}}, registry)


def test_binding_layer_never_returns_default_for_other_names(registry: BinderRegistry) -> None:
    settings = load({"bindings": {"default": {"group": "g"}}}, registry)
    assert settings.binding_layer("x-in-0") == {}
    assert settings.binding_layer("default") == {"group": "g"}
    assert settings.default_layer() == {"group": "g"}


def test_default_layer_binder_section_takes_both_directions(registry: BinderRegistry) -> None:
    cfg = {"bindings": {"default": {"fakebroker": {"prefetch": 3, "linger": 0.5}}}}
    settings = load(cfg, registry)
    assert settings.default_layer() == {"fakebroker": {"prefetch": 3, "linger": 0.5}}
    with pytest.raises(ConfigError, match=r"bindings.default.fakebroker.prefetchh"):
        load({"bindings": {"default": {"fakebroker": {"prefetchh": 3}}}}, registry)
    # a producer-only key on a consumer binding is an error
    with pytest.raises(ConfigError, match=r"bindings.x-in-0.fakebroker.linger"):
        load({"bindings": {"x-in-0": {"fakebroker": {"linger": 0.5}}}}, registry)


# --------------------------------------------------------------------------- discovery


@pytest.mark.parametrize("name", CONFIG_FILENAMES)
def test_discovery_in_cwd(tmp_path: Path, registry: BinderRegistry, name: str) -> None:
    text = (
        'bindings = { a-in-0 = { group = "g" } }\n'
        if name.endswith(".toml")
        else ("bindings: {a-in-0: {group: g}}\n")
    )
    path = write(tmp_path, name, text)
    assert find_config_file(tmp_path, {}) == path
    settings = load(None, registry, cwd=tmp_path)
    assert settings.source == str(path)
    assert settings.binding_layer("a-in-0") == {"group": "g"}
    assert load(None, registry, cwd=tmp_path, discover=False).source == "<defaults>"


def test_discovery_from_environment_variable(tmp_path: Path, registry: BinderRegistry) -> None:
    write(tmp_path, "binder.yaml", "bindings: {a-in-0: {group: from-cwd}}\n")
    other = write(tmp_path, "elsewhere.yml", "bindings: {a-in-0: {group: from-env}}\n")
    env = {"EVENTBINDER_CONFIG": str(other)}
    assert find_config_file(tmp_path, env) == other
    settings = load(None, registry, cwd=tmp_path, environ=env)
    assert settings.binding_layer("a-in-0") == {"group": "from-env"}
    # relative to cwd
    assert find_config_file(tmp_path, {"EVENTBINDER_CONFIG": "elsewhere.yml"}) == other


def test_several_config_files_warn_and_the_first_wins(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first = write(tmp_path, "binder.yaml", "bindings: {}\n")
    write(tmp_path, "binder.toml", "")
    caplog.set_level(logging.WARNING, logger="binder.config")
    assert find_config_file(tmp_path, {}) == first
    assert [(r.name, r.getMessage()) for r in caplog.records] == [
        ("binder.config", f"several config files in {tmp_path}; using binder.yaml")
    ]


def test_environment_variable_naming_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        find_config_file(tmp_path, {"EVENTBINDER_CONFIG": "missing.yaml"})
    assert "environment variable EVENTBINDER_CONFIG" in str(info.value)
    assert "missing.yaml" in str(info.value)


def test_explicit_missing_file(tmp_path: Path, registry: BinderRegistry) -> None:
    err = config_error(tmp_path / "nope.yaml", registry)
    assert "nope.yaml" in str(err)
    assert "does not exist" in str(err)


# --------------------------------------------------------------------------- errors


def test_unknown_top_level_key(tmp_path: Path, registry: BinderRegistry) -> None:
    path = write(tmp_path, "binder.yaml", "bindings: {}\nbinder:\n  memory: {}\n")
    err = config_error(path, registry)
    assert err.key == "binder"
    assert err.line == 2
    assert str(path) in str(err)
    assert 'did you mean "binders"?' in str(err)


def test_unknown_binding_key_names_file_key_line(tmp_path: Path, registry: BinderRegistry) -> None:
    path = write(
        tmp_path,
        "binder.yaml",
        """
        bindings:
          bill-in-0:
            destination: orders
            group: billing
            max_attemps: 4
        """,
    )
    err = config_error(path, registry)
    text = str(err)
    assert str(path) in text
    assert "bindings.bill-in-0.max_attemps" in text
    assert "line 5" in text
    assert 'did you mean "max_attempts"?' in text
    assert (err.source, err.key, err.line) == (str(path), "bindings.bill-in-0.max_attemps", 5)


def test_runtime_section_defaults_and_overrides(tmp_path: Path, registry: BinderRegistry) -> None:
    assert load_settings({}, registry=registry, environ={}).runtime == {
        "blocked_loop_warning": 1.0,
        "retry_access_refused": False,
        "tracing": False,
    }
    path = write(tmp_path, "binder.yaml", "runtime:\n  blocked_loop_warning: 0.25\n")
    settings = load_settings(path, registry=registry, environ={})
    assert settings.runtime["blocked_loop_warning"] == 0.25
    assert settings.redacted()["runtime"] == {
        "blocked_loop_warning": 0.25,
        "retry_access_refused": False,
        "tracing": False,
    }
    environ = {"EVENTBINDER_RUNTIME__BLOCKED_LOOP_WARNING": "0"}
    assert load_settings(path, registry=registry, environ=environ).runtime == {
        "blocked_loop_warning": 0,
        "retry_access_refused": False,
        "tracing": False,
    }


def test_runtime_section_errors_name_file_key_and_line(
    tmp_path: Path, registry: BinderRegistry
) -> None:
    path = write(tmp_path, "binder.yaml", "runtime:\n  blocked_loop_warnin: 2\n")
    err = config_error(path, registry)
    assert (err.key, err.line) == ("runtime.blocked_loop_warnin", 2)
    assert 'did you mean "blocked_loop_warning"?' in str(err)
    err = config_error({"runtime": {"blocked_loop_warning": -1}}, registry)
    assert err.key == "runtime.blocked_loop_warning"


def test_unknown_binding_key_suggests_binder_type(registry: BinderRegistry) -> None:
    err = config_error({"bindings": {"a-in-0": {"fakebrokr": {}}}}, registry)
    assert 'did you mean "fakebroker"?' in str(err)


def test_wrong_value_type_names_key_and_line(tmp_path: Path, registry: BinderRegistry) -> None:
    path = write(
        tmp_path,
        "binder.yaml",
        """
        bindings:
          default:
            max_attempts: 2
          bill-in-0:
            max_attempts: three
        """,
    )
    err = config_error(path, registry)
    assert (err.key, err.line) == ("bindings.bill-in-0.max_attempts", 5)
    assert "expected int" in str(err)


def test_check_failure_names_key(registry: BinderRegistry) -> None:
    err = config_error({"bindings": {"a-in-0": {"concurrency": 0}}}, registry)
    assert err.key == "bindings.a-in-0.concurrency"
    assert "greater than 0" in str(err)


def test_unknown_binder_type_lists_installed_types(
    tmp_path: Path, registry: BinderRegistry
) -> None:
    path = write(
        tmp_path,
        "binder.yaml",
        """
        binders:
          main:
            type: rabit
        """,
    )
    err = config_error(path, registry)
    assert (err.key, err.line) == ("binders.main.type", 3)
    assert "unknown binder type 'rabit'" in str(err)
    assert "fakebroker" in str(err)  # installed types listed


def test_binder_type_defaults_to_name(registry: BinderRegistry) -> None:
    settings = load({"binders": {"fakebroker": {"url": "fake://h"}}}, registry)
    assert settings.binders["fakebroker"].type == "fakebroker"
    assert settings.default_binder == "fakebroker"
    err = config_error({"binders": {"kafkaa": {}}}, registry)
    assert err.key == "binders.kafkaa"
    assert "unknown binder type 'kafkaa'" in str(err)


def test_binding_names_missing_binder(tmp_path: Path, registry: BinderRegistry) -> None:
    path = write(
        tmp_path,
        "binder.yaml",
        """
        binders:
          fake: {type: fakebroker}
        bindings:
          bill-out-0:
            binder: faek
        """,
    )
    err = config_error(path, registry)
    assert (err.key, err.line) == ("bindings.bill-out-0.binder", 5)
    assert "no binder named 'faek'" in str(err)
    assert 'did you mean "fake"?' in str(err)


def test_binder_settings_error_prefixed(tmp_path: Path, registry: BinderRegistry) -> None:
    path = write(
        tmp_path,
        "binder.yaml",
        """
        binders:
          fake:
            type: fakebroker
            timeout: soon
            urll: fake://x
        """,
    )
    err = config_error(path, registry)
    assert (err.source, err.key, err.line) == (str(path), "binders.fake.timeout", 4)
    path.write_text("binders:\n  fake:\n    type: fakebroker\n    urll: fake://x\n")
    err = config_error(path, registry)
    assert (err.key, err.line) == ("binders.fake.urll", 4)
    assert 'did you mean "url"?' in str(err)


def test_binding_binder_section_error_prefixed(tmp_path: Path, registry: BinderRegistry) -> None:
    path = write(
        tmp_path,
        "binder.yaml",
        """
        bindings:
          a-in-0:
            fakebroker:
              prefetch: many
        """,
    )
    err = config_error(path, registry)
    assert (err.key, err.line) == ("bindings.a-in-0.fakebroker.prefetch", 4)


def test_duplicate_yaml_key(tmp_path: Path, registry: BinderRegistry) -> None:
    path = write(
        tmp_path,
        "binder.yaml",
        """
        bindings:
          a-in-0:
            group: one
            group: two
        """,
    )
    err = config_error(path, registry)
    assert (err.key, err.line) == ("bindings.a-in-0.group", 4)
    assert "duplicate key 'group'" in str(err)
    assert "line 3" in str(err)


def test_yaml_merge_keys_are_not_duplicates(registry: BinderRegistry, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "binder.yaml",
        """
        bindings:
          default: &base {max_attempts: 2, group: g}
          a-in-0:
            <<: *base
            group: h
        """,
    )
    assert load(path, registry).binding_layer("a-in-0") == {"max_attempts": 2, "group": "h"}


def test_same_binding_written_twice(registry: BinderRegistry) -> None:
    err = config_error({"bindings": {"a-in-0": {}, "A_IN_0": {}}}, registry)
    assert "same binding" in str(err)


def test_yaml_syntax_error_line(tmp_path: Path, registry: BinderRegistry) -> None:
    path = write(
        tmp_path,
        "binder.yaml",
        """
        bindings:
          a-in-0:
            group: [unclosed
            destination: x
          b-in-0: {}
        """,
    )
    err = config_error(path, registry)
    assert str(path) in str(err)
    assert "invalid YAML" in str(err)
    assert err.line is not None and 3 <= err.line <= 5


def test_toml_syntax_error(tmp_path: Path, registry: BinderRegistry) -> None:
    path = write(tmp_path, "binder.toml", "[bindings.a-in-0]\ngroup = \n")
    err = config_error(path, registry)
    assert str(path) in str(err)
    assert "invalid TOML" in str(err)
    assert "line 2" in str(err)


def test_top_level_not_a_mapping(tmp_path: Path, registry: BinderRegistry) -> None:
    err = config_error(write(tmp_path, "binder.yaml", "- a\n- b\n"), registry)
    assert "top level must be a mapping" in str(err)
    assert "a list" in str(err)


def test_binding_not_a_mapping(tmp_path: Path, registry: BinderRegistry) -> None:
    err = config_error(write(tmp_path, "binder.yaml", "bindings:\n  a-in-0: orders\n"), registry)
    assert (err.key, err.line) == ("bindings.a-in-0", 2)


# --------------------------------------------------------------------------- default_binder


def test_default_binder_single_binder_is_default(registry: BinderRegistry) -> None:
    settings = load({"binders": {"fake": {"type": "fakebroker"}}}, registry)
    assert settings.default_binder == "fake"
    assert list(settings.binders) == ["fake"]  # no implicit memory once binders are given


def test_default_binder_required_with_several(registry: BinderRegistry) -> None:
    cfg = {"binders": {"a": {"type": "fakebroker"}, "b": {"type": "fakebroker"}}}
    err = config_error(cfg, registry)
    assert "default_binder is required when several binders are defined (found: a, b)" in str(err)
    assert load({**cfg, "default_binder": "b"}, registry).default_binder == "b"


def test_default_binder_must_exist(tmp_path: Path, registry: BinderRegistry) -> None:
    path = write(
        tmp_path,
        "binder.yaml",
        """
        binders:
          fake: {type: fakebroker}
        default_binder: fak
        """,
    )
    err = config_error(path, registry)
    assert (err.key, err.line) == ("default_binder", 3)
    assert 'did you mean "fake"?' in str(err)


# --------------------------------------------------------------------------- environment


def test_env_overrides_each_kind(tmp_path: Path, registry: BinderRegistry) -> None:
    path = write(tmp_path, "binder.yaml", YAML)
    env = {
        "EVENTBINDER_DEFAULT_BINDER": "memory",
        "EVENTBINDER_BINDINGS__BILL_IN_0__GROUP": "pricing",
        "EVENTBINDER_BINDINGS__BILL_IN_0__MAX_ATTEMPTS": "7",
        "EVENTBINDER_BINDINGS__BILL_IN_0__BACKOFF_INITIAL": "1.5",
        "EVENTBINDER_BINDINGS__BILL_IN_0__DEAD_LETTER": "false",
        "EVENTBINDER_BINDINGS__BILL_IN_0__FAKEBROKER__PREFETCH": "9",
        "EVENTBINDER_BINDINGS__DEFAULT__MAX_ATTEMPTS": "4",
        "EVENTBINDER_BINDINGS__PRICE_IN_0__DESTINATION": "prices",
        "EVENTBINDER_BINDERS__FAKE__URL": "fake://other:1",
        "EVENTBINDER_RABBIT_PORT": "5673",  # belongs to the test harness: ignored
        "EVENTBINDER_CONFIG": str(path),  # the file, not an override
        "UNRELATED": "x",
    }
    settings = load(None, registry, cwd=tmp_path, environ=env)
    assert settings.default_binder == "memory"
    layer = settings.binding_layer("bill-in-0")
    assert layer["group"] == "pricing"
    assert layer["destination"] == "orders"  # the file's value stays
    assert layer["max_attempts"] == 7
    assert layer["backoff_initial"] == 1.5
    assert layer["dead_letter"] is False
    assert layer["fakebroker"] == {"prefetch": 9}
    assert "BILL_IN_0" not in str(list(settings.bindings))  # merged into the written name
    assert settings.default_layer() == {"max_attempts": 4}
    assert settings.binding_layer("price-in-0") == {"destination": "prices"}
    assert settings.binders["fake"].settings["url"] == "fake://other:1"


def test_env_adds_a_binder(tmp_path: Path, registry: BinderRegistry) -> None:
    env = {
        "EVENTBINDER_BINDERS__BROKER__TYPE": "fakebroker",
        "EVENTBINDER_BINDERS__BROKER__TIMEOUT": "2",
    }
    settings = load(None, registry, cwd=tmp_path, environ=env)
    assert settings.binders["broker"].type == "fakebroker"
    assert settings.binders["broker"].settings["timeout"] == 2
    assert settings.default_binder == "broker"


def test_env_applies_to_mapping_source(registry: BinderRegistry) -> None:
    env = {"EVENTBINDER_BINDINGS__A_IN_0__CONCURRENCY": "3"}
    settings = load({"bindings": {"a-in-0": {"concurrency": 1}}}, registry, environ=env)
    assert settings.binding_layer("a-in-0") == {"concurrency": 3}


def test_env_string_values_and_quoting(registry: BinderRegistry) -> None:
    env = {
        "EVENTBINDER_BINDINGS__A_IN_0__GROUP": '"123"',
        "EVENTBINDER_BINDINGS__A_IN_0__DESTINATION": "orders.eu",
    }
    layer = load({}, registry, environ=env).binding_layer("a-in-0")
    assert layer == {"group": "123", "destination": "orders.eu"}


def test_bad_env_value_names_variable(tmp_path: Path, registry: BinderRegistry) -> None:
    path = write(tmp_path, "binder.yaml", YAML)
    var = "EVENTBINDER_BINDINGS__BILL_IN_0__MAX_ATTEMPTS"
    err = config_error(path, registry, environ={var: "three"})
    assert err.source == f"environment variable {var}"
    assert err.key == "bindings.bill-in-0.max_attempts"
    assert err.line is None
    assert var in str(err)


def test_bad_env_binder_type_names_variable(registry: BinderRegistry) -> None:
    var = "EVENTBINDER_BINDERS__KAFKA__TYPE"
    err = config_error({}, registry, environ={var: "kafkaa"})
    assert err.source == f"environment variable {var}"
    assert "installed binder types" in str(err)


def test_env_unknown_key_and_typo(registry: BinderRegistry) -> None:
    err = config_error({}, registry, environ={"EVENTBINDER_BINDINGS__A_IN_0__GRUOP": "g"})
    assert err.source == "environment variable EVENTBINDER_BINDINGS__A_IN_0__GRUOP"
    assert 'did you mean "group"?' in str(err)
    err = config_error({}, registry, environ={"EVENTBINDER_BINDING__A_IN_0__GROUP": "g"})
    assert 'did you mean "bindings"?' in str(err)
    assert "EVENTBINDER_BINDING__A_IN_0__GROUP" in str(err)


def test_env_cannot_descend_into_a_value(registry: BinderRegistry) -> None:
    var = "EVENTBINDER_BINDINGS__A_IN_0__GROUP__X"
    err = config_error({"bindings": {"a-in-0": {"group": "g"}}}, registry, environ={var: "1"})
    assert err.source == f"environment variable {var}"


def test_settings_error_locates_key(tmp_path: Path, registry: BinderRegistry) -> None:
    path = write(tmp_path, "binder.yaml", YAML)
    env = {"EVENTBINDER_BINDINGS__BILL_OUT_0__DESTINATION": "x"}
    settings = load(path, registry, environ=env)
    err = settings.error("no such destination", "bindings.bill-in-0.destination")
    assert (err.source, err.key, err.line) == (str(path), "bindings.bill-in-0.destination", 12)
    # a key not written falls back to the nearest written parent
    assert settings.error("bad", "bindings.bill-in-0.concurrency").line == 11
    assert settings.error("bad", "bindings.bill_in_0.group").line == 13
    env_err = settings.error("bad", "bindings.bill-out-0.destination")
    assert env_err.source == "environment variable EVENTBINDER_BINDINGS__BILL_OUT_0__DESTINATION"
    assert load({}, registry).error("bad", "bindings.x").source == "<mapping>"


# --------------------------------------------------------------------------- secrets


def test_redact_url() -> None:
    assert redact_url("amqp://user:pass@host:5672//") == "amqp://user:***@host:5672//"
    assert redact_url("amqp://host:5672/") == "amqp://host:5672/"
    assert redact_url("amqp://user@host/") == "amqp://user@host/"
    assert redact_url("amqp://a:p1@h1;amqp://b:p2@h2") == "amqp://a:***@h1;amqp://b:***@h2"
    assert redact_url(["mqtt://u:p@h", "mqtt://h"]) == ["mqtt://u:***@h", "mqtt://h"]
    assert redact_url(3) == 3


def test_redact_mapping() -> None:
    data = {
        "url": "amqp://u:p@h",
        "nested": {"sasl_plain_password": "x", "ssl_password": "y", "api_token": "z"},
        "custom": "hide-me",
        "client_secret": None,
        "port": 1,
        "hosts": ["amqp://u:p@h"],
    }
    assert redact(data, {"custom"}) == {
        "url": "amqp://u:***@h",
        "nested": {"sasl_plain_password": "***", "ssl_password": "***", "api_token": "***"},
        "custom": "***",
        "client_secret": None,
        "port": 1,
        "hosts": ["amqp://u:***@h"],
    }


def test_a_declared_secret_url_keeps_all_but_its_password() -> None:
    data = {
        "url": "amqp://u:p@h:5672/vh",
        "urls": ["amqp://u:p@h1", "amqp://h2"],
        "dsn": "not a url",
        "secret_url": "amqp://u:p@h",
    }
    assert redact(data, {"url", "urls", "dsn"}) == {
        "url": "amqp://u:***@h:5672/vh",
        "urls": ["amqp://u:***@h1", "amqp://h2"],
        "dsn": "***",
        "secret_url": "***",  # named secret: hidden whole
    }


def test_redacted_settings_hide_secrets(tmp_path: Path, registry: BinderRegistry) -> None:
    settings = load(write(tmp_path, "binder.yaml", YAML), registry)
    out = settings.redacted()
    assert SECRET not in repr(out)
    assert out["default_binder"] == "fake"
    fake = out["binders"]["fake"]
    assert fake["type"] == "fakebroker"
    assert fake["password"] == "***"
    assert fake["url"] == "fake://admin:***@broker:1234/"
    assert fake["timeout"] == 5.0
    assert out["bindings"]["bill-in-0"]["fakebroker"] == {"prefetch": 50}
    assert isinstance(out["bindings"]["default"], dict)


@pytest.mark.parametrize(
    "cfg",
    [
        # a wrong type under a secret key
        {"binders": {"fake": {"type": "fakebroker", "password": 12345678}}},
        # an unrelated error in a section holding secrets
        {"binders": {"fake": {"type": "fakebroker", "password": SECRET, "timeout": SECRET}}},
        {"binders": {"fake": {"type": "fakebroker", "url": f"fake://u:{SECRET}@h", "x": 1}}},
        {"bindings": {"a-in-0": {"group": f"amqp://u:{SECRET}@h", "partition_count": 0}}},
        {"binders": {"fake": {"type": "fakebroker", "timeout": f"amqp://u:{SECRET}@h"}}},
    ],
)
def test_secrets_never_in_errors(registry: BinderRegistry, cfg: dict[str, Any]) -> None:
    err = config_error(cfg, registry)
    assert SECRET not in str(err)
    assert "12345678" not in str(err)


def test_secret_from_env_never_in_errors(registry: BinderRegistry) -> None:
    env = {
        "EVENTBINDER_BINDERS__FAKE__TYPE": "fakebroker",
        "EVENTBINDER_BINDERS__FAKE__PASSWORD": SECRET,
        "EVENTBINDER_BINDERS__FAKE__TIMEOUT": SECRET,
    }
    err = config_error({}, registry, environ=env)
    assert SECRET not in str(err)
    assert err.source == "environment variable EVENTBINDER_BINDERS__FAKE__TIMEOUT"


def test_a_failing_secret_keys_is_logged_and_hides_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Broken(FakeBrokerType):
        name = "broken"

        def secret_keys(self) -> frozenset[str]:
            raise RuntimeError("plugin bug")

    class BrokenPlugin:
        @hookimpl
        def binder_types(self) -> list[Any]:
            return [Broken()]

    caplog.set_level(logging.WARNING, logger="binder.config")
    settings = load({"binders": {"b": {"type": "broken"}}}, load_registry([BrokenPlugin()]))
    assert settings.binders["b"].type == "broken"
    assert ("binder.config", "binder type 'broken': secret_keys() failed") in [
        (r.name, r.getMessage()) for r in caplog.records
    ]


# --------------------------------------------------------------------------- the package


def test_binder_config_exports_what_the_single_module_did() -> None:
    import binder.config as config

    assert sorted(config.__all__) == [
        "BinderConfig",
        "CONFIG_ENV",
        "CONFIG_FILENAMES",
        "ENV_PREFIX",
        "Settings",
        "find_config_file",
        "load_settings",
    ]
    assert (config.CONFIG_ENV, config.ENV_PREFIX) == ("EVENTBINDER_CONFIG", "EVENTBINDER_")
    # the shape constants stay importable from the package, as before
    assert config.TOP_LEVEL_KEYS == (
        "default_binder",
        "binders",
        "bindings",
        "runtime",
        "management",
    )
    assert (config.DEFAULT_LAYER, config.IMPLICIT_BINDER) == ("default", "memory")
    assert list(config.RUNTIME_SCHEMA) == [
        "blocked_loop_warning",
        "retry_access_refused",
        "tracing",
    ]


def test_the_management_section_takes_host_port() -> None:
    registry = load_registry()
    settings = load_settings({"management": {"http": ":8081"}}, registry=registry, environ={})
    assert settings.management == {"http": "127.0.0.1:8081", "token": None}
    assert load_settings({}, registry=registry, environ={}).management["http"] is None
    with pytest.raises(ConfigError, match=r"management\.http.*HOST:PORT"):
        load_settings({"management": {"http": "8080"}}, registry=registry, environ={})
    with pytest.raises(ConfigError, match=r'did you mean "http"'):
        load_settings({"management": {"htp": "x:1"}}, registry=registry, environ={})


def test_the_management_token_is_a_secret() -> None:
    registry = load_registry()
    environ = {"EVENTBINDER_MANAGEMENT__TOKEN": "tok-3f9a"}
    settings = load_settings({}, registry=registry, environ=environ)
    assert settings.management["token"] == "tok-3f9a"
    assert settings.redacted()["management"]["token"] == "***"
    assert "tok-3f9a" not in repr(settings.redacted())


def test_a_billion_laughs_document_is_refused_at_once(tmp_path: Path) -> None:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for level in range(1, 9):
        refs = ", ".join([f"*a{level - 1}"] * 9)
        lines.append(f"a{level}: &a{level} [{refs}]")
    lines.append("bindings: {default: {group: g}}")
    path = tmp_path / "binder.yaml"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match=r"expands to more than 100,000 keys") as info:
        load_settings(path, registry=load_registry(), environ={})
    assert info.value.source == str(path)
