"""Binding options validated once, with defaults, wherever they come from.

The schema's defaults and checks (finite numbers, ``instance_index < instance_count``),
complete binder options in ``spec.options``, ``required_groups``, and secret keys
derived from the schemas.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from binder import App, ConfigError
from binder.bindings import BINDING_SCHEMA, BindingSettings
from binder.config import Settings, load_settings
from binder.dispatch import RetryPolicy
from binder.plugins import BinderRegistry, hookimpl, load_registry
from binder.resolve import resolve_bindings, resolve_dynamic
from binder.schema import Option, defaults, secret_keys, validate_section
from binder.spi import Binder, ConsumerSpec, DeliverySink, Direction, ProducerSpec
from binder.testing import run_app
from binders.kafka import settings as kafka_settings
from binders.memory.binder import MemoryBinder
from binders.mqtt import settings as mqtt_settings
from binders.rabbit import settings as rabbit_settings

_CONSUMER = {"a": Option(int, 1), "shared": Option(bool, False)}
_PRODUCER = {"b": Option(str, "x"), "shared": Option(bool, False)}


class RecordingBinder(MemoryBinder):
    """The in-memory binder, remembering every spec and provisioning it was given."""

    def __init__(self, name: str = "rec", settings: Mapping[str, Any] | None = None) -> None:
        super().__init__(name, settings)
        self.consumers: list[ConsumerSpec] = []
        self.producers: list[ProducerSpec] = []
        self.provisioned: list[tuple[str, str | None, Mapping[str, Any]]] = []

    async def provision(
        self, destination: str, group: str | None, options: Mapping[str, Any]
    ) -> None:
        self.provisioned.append((destination, group, options))
        await super().provision(destination, group, options)

    async def bind_consumer(self, spec: ConsumerSpec, sink: DeliverySink) -> Any:
        self.consumers.append(spec)
        return await super().bind_consumer(spec, sink)

    async def bind_producer(self, spec: ProducerSpec) -> Any:
        self.producers.append(spec)
        return await super().bind_producer(spec)


class RecorderType:
    name = "recorder"
    description = "the memory binder with binding options, recording specs"

    def validate_settings(self, settings: Mapping[str, Any]) -> dict[str, Any]:
        return validate_section(settings, {})

    def validate_binding_options(
        self, options: Mapping[str, Any], direction: Direction
    ) -> dict[str, Any]:
        return validate_section(options, _CONSUMER if direction == "consumer" else _PRODUCER)

    def secret_keys(self) -> frozenset[str]:
        return secret_keys(_CONSUMER, _PRODUCER)

    def create(self, name: str, settings: Mapping[str, Any]) -> Binder:
        return RecordingBinder(name, settings)


class RecorderPlugin:
    @hookimpl
    def binder_types(self) -> list[Any]:
        return [RecorderType()]


@pytest.fixture
def registry() -> BinderRegistry:
    return load_registry(extra_plugins=[RecorderPlugin()])


def load(config: Any, registry: BinderRegistry, environ: Mapping[str, str] | None = None) -> Any:
    return load_settings(config, registry=registry, discover=False, environ=environ or {})


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "binder.yaml"
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def relay_app() -> App:
    app = App("relay")

    @app.function("in", "out", group="g")
    def relay(payload: dict) -> dict:
        return payload

    return app


# -- one source of defaults --------------------------------------------------------------


def test_binding_settings_and_retry_policy_take_their_defaults_from_the_schema() -> None:
    schema = defaults(BINDING_SCHEMA)
    plain = BindingSettings("x-in-0", "consumer", "x", "memory")
    for key, value in schema.items():
        if key not in ("destination", "binder"):
            assert getattr(plain, key) == value, key
    assert schema["max_attempts"] == 3 and schema["backoff_max"] == 10.0
    policy = RetryPolicy()
    for key in ("max_attempts", "backoff_initial", "backoff_multiplier", "backoff_max"):
        assert getattr(policy, key) == schema[key], key


def test_max_attempts_help_says_what_it_counts() -> None:
    help_text = BINDING_SCHEMA["max_attempts"].help
    assert "handler calls per delivery" in help_text
    assert "deliveries" not in help_text


# -- finite numbers ----------------------------------------------------------------------


@pytest.mark.parametrize(("text", "shown"), [(".inf", "inf"), ("-.inf", "-inf"), (".nan", "nan")])
def test_infinite_and_nan_numbers_are_refused_in_the_file(
    tmp_path: Path, registry: BinderRegistry, text: str, shown: str
) -> None:
    path = write(
        tmp_path,
        f"""
        bindings:
          bill-in-0:
            backoff_initial: {text}
        """,
    )
    with pytest.raises(ConfigError) as info:
        load(path, registry)
    assert str(info.value) == (
        f"{path}, line 3, key 'bindings.bill-in-0.backoff_initial': "
        f"must be a finite number, got {shown}"
    )


def test_infinite_numbers_are_refused_in_the_environment(registry: BinderRegistry) -> None:
    var = "EVENTBINDER_BINDINGS__DEFAULT__BACKOFF_MAX"
    with pytest.raises(ConfigError) as info:
        load({}, registry, {var: ".inf"})
    assert str(info.value) == (
        f"environment variable {var}, key 'bindings.default.backoff_max': "
        "must be a finite number, got inf"
    )


def test_binder_settings_refuse_infinite_numbers_too(registry: BinderRegistry) -> None:
    with pytest.raises(ConfigError, match="must be a finite number, got inf") as info:
        load({"binders": {"rabbit": {"heartbeat": math.inf}}}, registry)
    assert info.value.key == "binders.rabbit.heartbeat"
    with pytest.raises(ConfigError, match="finite"):
        load({"runtime": {"blocked_loop_warning": math.nan}}, registry)


# -- instance_index < instance_count ------------------------------------------------------


def test_instance_index_beyond_instance_count_names_the_decorator(
    registry: BinderRegistry,
) -> None:
    app = App("parts")

    @app.consumer("orders", group="g", instance_index=3)  # marker: instance decorator
    def bill(order: dict) -> None: ...

    settings = load({"bindings": {"default": {"instance_count": 3}}}, registry)
    with pytest.raises(ConfigError) as info:
        resolve_bindings(app, settings)
    err = info.value
    line = next(
        n
        for n, text in enumerate(Path(__file__).read_text().splitlines(), 1)
        if "marker: instance decorator" in text
    )
    assert (err.source, err.line) == ("tests/core/test_binding_options.py", line)
    assert err.key == "bindings.bill-in-0.instance_index"
    assert err.reason == "must be less than instance_count (3), got 3"


def test_instance_index_beyond_instance_count_names_the_variable(
    registry: BinderRegistry,
) -> None:
    app = App("parts")

    @app.consumer("orders", group="g", instance_count=2)
    def bill(order: dict) -> None: ...

    var = "EVENTBINDER_BINDINGS__BILL_IN_0__INSTANCE_INDEX"
    settings = load({}, registry, {var: "2"})
    with pytest.raises(ConfigError) as info:
        resolve_bindings(app, settings)
    assert str(info.value) == (
        f"environment variable {var}, key 'bindings.bill-in-0.instance_index': "
        "must be less than instance_count (2), got 2"
    )
    ok = load({}, registry, {var: "1"})
    assert resolve_bindings(app, ok)["bill-in-0"].instance_index == 1


# -- complete options reach the binders ---------------------------------------------------


async def test_binders_receive_complete_options_merged_from_every_layer(
    registry: BinderRegistry,
) -> None:
    binder = RecordingBinder()
    await binder.start()
    config = {
        "binders": {"rec": {"type": "recorder"}},
        "bindings": {
            # b is a producer option: the consumer binding must not inherit it
            "default": {"recorder": {"b": "from-default", "shared": True}},
            "relay-in-0": {"recorder": {"a": 5}},
        },
    }
    async with run_app(relay_app(), config, binders={"rec": binder}, registry=registry):
        [consumer] = binder.consumers
        [producer] = binder.producers
    assert dict(consumer.options) == {"a": 5, "shared": True}
    assert dict(producer.options) == {"b": "from-default", "shared": True}
    provisioned = {(d, g): dict(o) for d, g, o in binder.provisioned}
    assert provisioned == {("in", "g"): dict(consumer.options), ("out", None): producer.options}
    await binder.close()


@pytest.mark.parametrize(
    ("type_name", "consumer_schema", "producer_schema"),
    [
        ("rabbit", rabbit_settings.CONSUMER_OPTIONS, rabbit_settings.PRODUCER_OPTIONS),
        ("kafka", kafka_settings.CONSUMER_SCHEMA, kafka_settings.PRODUCER_SCHEMA),
        ("mqtt", mqtt_settings.CONSUMER_OPTIONS, mqtt_settings.PRODUCER_OPTIONS),
    ],
)
def test_builtin_binders_get_every_option_of_their_schema(
    registry: BinderRegistry,
    type_name: str,
    consumer_schema: Mapping[str, Option],
    producer_schema: Mapping[str, Option],
) -> None:
    settings = load({"binders": {type_name: {}}}, registry)
    bindings = resolve_bindings(relay_app(), settings)
    consumer = bindings["relay-in-0"].options_for(type_name)
    producer = bindings["relay-out-0"].options_for(type_name)
    assert consumer == defaults(consumer_schema)
    assert producer == defaults(producer_schema)
    assert resolve_dynamic("audit", settings).options_for(type_name) == producer


def test_default_layer_options_follow_the_binding_direction(registry: BinderRegistry) -> None:
    settings = load(
        {
            "binders": {"rabbit": {}},
            "bindings": {"default": {"rabbit": {"routing_key": "fixed", "queue_type": "quorum"}}},
        },
        registry,
    )
    bindings = resolve_bindings(relay_app(), settings)
    consumer = bindings["relay-in-0"].options_for("rabbit")
    producer = bindings["relay-out-0"].options_for("rabbit")
    assert "routing_key" not in consumer and consumer["queue_type"] == "quorum"
    assert producer["routing_key"] == {"fixed": "fixed"} and producer["queue_type"] == "quorum"


def test_merged_binder_section_errors_name_the_layer_that_wrote_the_key(
    tmp_path: Path, registry: BinderRegistry
) -> None:
    path = write(
        tmp_path,
        """
        binders:
          rabbit: {}
        bindings:
          default:
            rabbit:
              exchange_type: fanout
          relay-in-0:
            rabbit:
              default_exchange: true
        """,
    )
    settings = load(path, registry)  # each layer is valid on its own
    with pytest.raises(ConfigError) as info:
        resolve_bindings(relay_app(), settings)
    assert str(info.value) == (
        f"{path}, line 6, key 'bindings.default.rabbit.exchange_type': "
        "default_exchange excludes exchange_type"
    )


# -- required_groups ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [(["billing", "audit"], ("billing", "audit")), ("billing, audit", ("billing", "audit"))],
)
def test_required_groups_is_a_list_of_names(
    registry: BinderRegistry, value: Any, expected: tuple[str, ...]
) -> None:
    settings = load({"bindings": {"audit": {"required_groups": value}}}, registry)
    assert resolve_dynamic("audit", settings).required_groups == expected
    var = "EVENTBINDER_BINDINGS__AUDIT__REQUIRED_GROUPS"
    from_env = load({}, registry, {var: "billing,audit"})
    assert resolve_dynamic("audit", from_env).required_groups == ("billing", "audit")


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (["ok", 3], "must be a list of group names, got ['ok', 3]"),
        ("a,,b", "must be a list of group names, got 'a,,b'"),
        (5, "expected list or tuple or str, got int 5"),
    ],
)
def test_required_groups_errors(registry: BinderRegistry, value: Any, reason: str) -> None:
    with pytest.raises(ConfigError) as info:
        load({"bindings": {"audit": {"required_groups": value}}}, registry)
    assert info.value.key == "bindings.audit.required_groups"
    assert info.value.reason == reason


async def test_required_groups_are_the_configured_ones_and_own_groups_are_provisioned(
    registry: BinderRegistry,
) -> None:
    app = App("both")

    @app.supplier("orders", every=60, required_groups=["billing"])
    def orders() -> dict:
        return {}

    @app.consumer("orders", group="audit")
    def audit(order: dict) -> None: ...

    binder = RecordingBinder()
    await binder.start()
    config = {"binders": {"rec": {"type": "recorder"}}}
    async with run_app(app, config, binders={"rec": binder}, registry=registry, suppliers=False):
        [producer] = binder.producers
    assert producer.required_groups == ("billing",)
    assert ("orders", "audit") in [(d, g) for d, g, _ in binder.provisioned]
    await binder.close()


async def test_a_required_group_keeps_what_is_published_before_its_consumer_starts() -> None:
    """On the memory binder: the producer creates the group's queue when it binds."""
    broker = MemoryBinder("memory")
    await broker.start()
    config = {"bindings": {"orders": {"required_groups": ["billing"]}}}
    async with run_app(App("shop"), config, binders={"memory": broker}) as shop:
        await shop.runtime.send("orders", {"n": 1})
    received: list[dict] = []
    billing = App("billing")

    @billing.consumer("orders", group="billing")
    def bill(order: dict) -> None:
        received.append(order)

    async with run_app(billing, binders={"memory": broker}) as harness:
        await harness.wait_handled(1)
    assert received == [{"n": 1}]
    await broker.close()


async def test_without_required_groups_an_early_message_is_lost_on_memory() -> None:
    broker = MemoryBinder("memory")
    await broker.start()
    async with run_app(App("shop"), binders={"memory": broker}) as shop:
        await shop.runtime.send("orders", {"n": 1})
    # No queue of the group existed when the message was published: it went nowhere,
    # so a consumer of the group starting now has nothing to receive.
    assert broker.broker.topics["orders"].queues == []
    await broker.close()


# -- secret keys ------------------------------------------------------------------------


def test_secret_keys_are_derived_from_the_schemas() -> None:
    registry = load_registry()
    assert registry.get("rabbit").secret_keys() == {"url", "password"}
    assert registry.get("mqtt").secret_keys() == {"url", "password"}
    assert registry.get("kafka").secret_keys() == {"sasl_plain_password", "ssl_password"}
    assert registry.get("memory").secret_keys() == frozenset()
    for type_name, schemas in {
        "rabbit": (rabbit_settings.SETTINGS,),
        "mqtt": (mqtt_settings.SETTINGS,),
        "kafka": (kafka_settings.BINDER_SCHEMA,),
    }.items():
        declared = {k for schema in schemas for k, option in schema.items() if option.secret}
        assert registry.get(type_name).secret_keys() == declared


def test_secret_keys_helper() -> None:
    first = {"token": Option(str, None, secret=True), "host": Option(str, "h")}
    second = {"key": Option(str, None, secret=True)}
    assert secret_keys(first, second) == {"token", "key"}
    assert secret_keys() == frozenset()


def test_the_type_key_is_the_cores(registry: BinderRegistry) -> None:
    """``type`` is taken out of ``binders.<name>`` before the binder type validates it."""
    for type_name in ("rabbit", "mqtt"):
        with pytest.raises(ConfigError, match="unknown key 'type'"):
            registry.get(type_name).validate_settings({"type": type_name})
        settings = load({"binders": {"b": {"type": type_name}}}, registry)
        assert "type" not in settings.binders["b"].settings
        assert settings.redacted()["binders"]["b"]["type"] == type_name


def test_settings_built_by_hand_pass_sections_through() -> None:
    settings = Settings(source="<test>", default_binder="memory", binders={}, bindings={})
    assert settings.validate_binding_options("rabbit", {"ttl": 5}, "consumer") == {"ttl": 5}


def test_instance_keys_are_checked_on_consumers_only(registry: BinderRegistry) -> None:
    """A producer ignores instance_index/instance_count, as set for all in the default."""
    settings = load(
        {"bindings": {"default": {"instance_index": 1}, "relay-in-0": {"instance_count": 2}}},
        registry,
    )
    bindings = resolve_bindings(relay_app(), settings)
    assert (bindings["relay-in-0"].instance_index, bindings["relay-in-0"].instance_count) == (1, 2)
    assert bindings["relay-out-0"].instance_index == 1


def test_settings_built_by_hand_resolve_from_their_layers(registry: BinderRegistry) -> None:
    from binder.config import BinderConfig

    loaded = load({"binders": {"rabbit": {}}}, registry)
    settings = Settings(
        source="<test>",
        default_binder="rabbit",
        binders={"rabbit": BinderConfig("rabbit", "rabbit", loaded.binders["rabbit"].settings)},
        bindings={"relay-in-0": {"rabbit": {"ttl": 5}}},
    )
    options = resolve_bindings(relay_app(), settings)["relay-in-0"].options_for("rabbit")
    assert options == {"ttl": 5}  # no binder types known: passed through as written


def test_null_is_only_for_keys_without_a_default(registry: BinderRegistry) -> None:
    settings = load({"bindings": {"bill-in-0": {"group": None, "partition_key": None}}}, registry)
    assert settings.binding_layer("bill-in-0") == {"group": None, "partition_key": None}
    with pytest.raises(ConfigError) as info:
        load({"bindings": {"bill-in-0": {"max_attempts": None}}}, registry)
    assert info.value.key == "bindings.bill-in-0.max_attempts"
    assert info.value.reason == "expected int, got NoneType None"


def test_a_configured_binding_no_handler_declares_is_an_error_with_a_suggestion(
    tmp_path: Path, registry: BinderRegistry
) -> None:
    path = tmp_path / "binder.yaml"
    path.write_text("bindings:\n  relay-in-0:\n    group: g\n  relai-out-0:\n    destination: x\n")
    settings = load_settings(path, registry=registry, environ={})
    with pytest.raises(ConfigError) as info:
        resolve_bindings(relay_app(), settings)
    error = info.value
    assert (error.source, error.line, error.key) == (str(path), 4, "bindings.relai-out-0")
    assert '(did you mean "relay-out-0"?)' in error.reason
    assert "its bindings: relay-in-0, relay-out-0" in error.reason


def test_an_undeclared_binding_from_the_environment_names_the_variable(
    registry: BinderRegistry,
) -> None:
    environ = {"EVENTBINDER_BINDINGS__RELAY_IN_1__GROUP": "g"}
    settings = load_settings({}, registry=registry, environ=environ)
    with pytest.raises(ConfigError) as info:
        resolve_bindings(relay_app(), settings)
    assert info.value.source == "environment variable EVENTBINDER_BINDINGS__RELAY_IN_1__GROUP"
    assert 'did you mean "relay-in-0"' in info.value.reason


def test_destination_bindings_and_tools_are_not_checked(registry: BinderRegistry) -> None:
    config = {"bindings": {"audit": {"binder": "memory"}, "other-in-0": {"group": "g"}}}
    settings = load_settings(config, registry=registry, environ={})
    with pytest.raises(ConfigError, match="'other-in-0' is not declared"):
        resolve_bindings(relay_app(), settings)
    # `binder send` and `binder tail` borrow an app's file: they do not check
    assert "relay-in-0" in resolve_bindings(relay_app(), settings, strict=False)
    only_dynamic = load_settings({"bindings": {"audit": {}}}, registry=registry, environ={})
    assert set(resolve_bindings(relay_app(), only_dynamic)) == {"relay-in-0", "relay-out-0"}


class PickyBinder(RecordingBinder):
    """Refuses destinations with a '+' the way the MQTT binder refuses wildcards: a
    ConfigError that knows the key at most, not the file."""

    async def bind_producer(self, spec: ProducerSpec) -> Any:
        if "+" in spec.destination:
            raise ConfigError("a producer needs a topic without wildcards")
        return await super().bind_producer(spec)

    async def bind_consumer(self, spec: ConsumerSpec, sink: DeliverySink) -> Any:
        if "+" in spec.destination:
            raise ConfigError("no wildcards here", key=f"bindings.{spec.binding}.destination")
        return await super().bind_consumer(spec, sink)


@pytest.mark.parametrize(
    ("binding", "key", "line"),
    [
        ("relay-out-0", "bindings.relay-out-0", 4),
        ("relay-in-0", "bindings.relay-in-0.destination", 5),
    ],
)
async def test_a_binders_config_error_names_the_file_and_line(
    tmp_path: Path, registry: BinderRegistry, binding: str, key: str, line: int
) -> None:
    path = write(
        tmp_path,
        f"""
        binders:
          rec: {{type: recorder}}
        bindings:
          {binding}:
            destination: sensors/+/temp
            dead_letter: false
        """,
    )
    picky = PickyBinder()
    await picky.start()
    with pytest.raises(ConfigError) as info:
        async with run_app(relay_app(), path, binders={"rec": picky}, registry=registry):
            pass
    assert info.value.source == str(path)
    assert info.value.key == key
    assert info.value.line == line
    await picky.close()
