"""binder.app: declaring bindings with decorators (no I/O) and App.send."""

import asyncio
import inspect
import math
import os
from pathlib import Path
from typing import Any

import pytest

from binder import App, Message, NotRunningError
from binder.config import load_settings
from binder.errors import ConfigError
from binder.plugins import load_registry
from binder.runtime import Runtime
from binder.testing import run_app


def test_consumer_declares_fn_in_0() -> None:
    app = App("svc")

    @app.consumer("orders", group="billing", max_attempts=5)
    def bill(order: dict) -> None: ...

    decl = app.handlers["bill"]
    assert decl.kind == "consumer"
    assert decl.output is None
    assert decl.input is not None
    assert decl.input.name == "bill-in-0"
    assert decl.input.destination == "orders"
    assert dict(decl.input.options) == {"max_attempts": 5, "group": "billing"}
    assert decl.invoker.payload_param == "order"


def test_decorators_return_the_function_unchanged() -> None:
    app = App("svc")

    def handle(order: dict) -> None: ...

    assert app.consumer("orders")(handle) is handle
    assert app.supplier("ticks", every=1)(lambda: None) is not None


def test_function_declares_fn_in_0_and_fn_out_0_with_group_on_the_input_only() -> None:
    app = App("svc")

    @app.function("orders", "invoices", group="billing", content_type="text/plain")
    def price(order: dict) -> str:
        return "x"

    decl = app.handlers["price"]
    assert decl.kind == "function"
    assert decl.input is not None and decl.output is not None
    assert (decl.input.name, decl.input.destination) == ("price-in-0", "orders")
    assert (decl.output.name, decl.output.destination) == ("price-out-0", "invoices")
    assert decl.input.options["group"] == "billing"
    assert "group" not in decl.output.options
    assert decl.output.options["content_type"] == "text/plain"


def test_supplier_declares_fn_out_0_with_its_interval() -> None:
    app = App("svc")

    @app.supplier("ticks", every=0.5)
    def tick() -> dict:
        return {}

    decl = app.handlers["tick"]
    assert decl.kind == "supplier"
    assert decl.input is None
    assert decl.output is not None
    assert (decl.output.name, decl.output.destination) == ("tick-out-0", "ticks")
    assert decl.every == 0.5


@pytest.mark.parametrize("every", [0, -1, -0.5])
def test_supplier_interval_must_be_positive(every: float) -> None:
    app = App("svc")
    with pytest.raises(ValueError, match="every= must be a positive number of seconds"):
        app.supplier("ticks", every=every)
    assert app.handlers == {}


@pytest.mark.parametrize("every", [float("nan"), float("inf"), "5"])
def test_supplier_interval_must_be_a_finite_number(every: object) -> None:
    # NaN passed a plain 'every <= 0' check and made the supplier loop spin
    app = App("svc")
    with pytest.raises(ValueError, match="every= must be a positive number of seconds"):
        app.supplier("ticks", every=every)  # type: ignore[arg-type]


def test_a_decorator_without_parentheses_is_refused_where_it_is_written() -> None:
    app = App("svc")
    with pytest.raises(TypeError) as refused:
        line = inspect.currentframe().f_lineno + 2  # type: ignore[union-attr]

        @app.consumer  # type: ignore[arg-type]
        def handle(payload: dict) -> None: ...

    message = str(refused.value)
    assert f"test_app.py, line {line}: @app.consumer needs its input destination" in message
    assert "with parentheses" in message
    assert app.handlers == {}


@pytest.mark.parametrize("decorator", ["function", "supplier"])
def test_other_decorators_without_parentheses_fail_at_decoration(decorator: str) -> None:
    app = App("svc")
    with pytest.raises(TypeError):

        @getattr(app, decorator)
        def handle(payload: dict) -> None: ...

    assert app.handlers == {}


def test_a_supplier_with_a_required_parameter_is_refused_at_decoration() -> None:
    app = App("svc")
    with pytest.raises(TypeError) as refused:

        @app.supplier("ticks", every=1)
        def tick(n: int) -> dict:
            return {"n": n}

    assert "supplier tick is called without arguments" in str(refused.value)
    assert "'n' has no default" in str(refused.value)
    assert app.handlers == {}


def test_a_supplier_may_have_parameters_with_defaults() -> None:
    app = App("svc")

    @app.supplier("ticks", every=1)
    def tick(n: int = 1, *rest: int, **extra: int) -> dict:
        return {"n": n}

    assert "tick" in app.handlers


def test_duplicate_handler_names_are_refused() -> None:
    app = App("svc")

    @app.consumer("a")
    def handle(payload: dict) -> None: ...

    with pytest.raises(ValueError, match="already has a handler named 'handle'"):

        @app.function("b", "c")
        def handle(payload: dict) -> None: ...

    assert app.handlers["handle"].kind == "consumer"


def test_same_function_name_in_two_apps_is_fine() -> None:
    first, second = App("a"), App("b")
    for app in (first, second):

        @app.consumer("x")
        def handle(payload: dict) -> None: ...

    assert "handle" in first.handlers and "handle" in second.handlers


def _line_of(marker: str) -> int:
    """The line of this file holding ``marker`` (a decorator under test)."""
    lines = Path(__file__).read_text(encoding="utf-8").splitlines()
    return next(n for n, text in enumerate(lines, 1) if marker in text)


def _here() -> str:
    return os.path.relpath(__file__)


def test_unknown_binding_option_is_a_config_error_like_the_files() -> None:
    app = App("svc")
    with pytest.raises(ConfigError) as info:

        @app.consumer("orders", max_attempt=3)  # marker: unknown option
        def bill(order: dict) -> None: ...

    err = info.value
    assert (err.source, err.line) == (_here(), _line_of("marker: unknown option"))
    assert err.key == "bindings.bill-in-0.max_attempt"
    assert err.reason.startswith(
        "unknown key 'max_attempt' (did you mean \"max_attempts\"?); allowed: binder, "
    )
    assert str(err) == f"{_here()}, line {err.line}, key '{err.key}': {err.reason}"
    assert app.handlers == {}


@pytest.mark.parametrize("option", ["destination", "group"])
def test_destination_and_group_are_not_free_binding_options(option: str) -> None:
    app = App("svc")
    with pytest.raises(ConfigError, match=f"unknown key '{option}' \\(") as info:

        @app.supplier("ticks", every=1, **{option: "x"})
        def tick() -> None: ...

    assert info.value.key == f"bindings.tick-out-0.{option}"


@pytest.mark.parametrize(
    ("options", "key", "reason"),
    [
        ({"max_attempts": "three"}, "max_attempts", "expected int, got str 'three'"),
        ({"max_attempts": True}, "max_attempts", "expected int, got bool True"),
        ({"max_attempts": 0}, "max_attempts", "must be greater than 0, got 0"),
        ({"backoff_initial": -5}, "backoff_initial", "must be 0 or more, got -5"),
        ({"backoff_initial": math.inf}, "backoff_initial", "must be a finite number, got inf"),
        ({"backoff_max": math.nan}, "backoff_max", "must be a finite number, got nan"),
        ({"concurrency": 0}, "concurrency", "must be greater than 0, got 0"),
        ({"prefetch": -1}, "prefetch", "must be greater than 0, got -1"),
        ({"instance_index": -1}, "instance_index", "must be 0 or more, got -1"),
        ({"dead_letter": " "}, "dead_letter", "dead_letter must be true, false or a"),
        ({"required_groups": ["a", ""]}, "required_groups", "must be a list of group names"),
        ({"content_type": 5}, "content_type", "expected str, got int 5"),
    ],
)
def test_decorator_options_are_validated_like_the_file(
    options: dict[str, Any], key: str, reason: str
) -> None:
    app = App("svc")
    with pytest.raises(ConfigError) as info:

        @app.consumer("orders", group="g", **options)  # marker: bad value
        def bill(order: dict) -> None: ...

    err = info.value
    assert (err.source, err.line, err.key) == (
        _here(),
        _line_of("marker: bad value"),
        f"bindings.bill-in-0.{key}",
    )
    assert err.reason.startswith(reason)


def test_the_group_and_destination_arguments_are_validated_too() -> None:
    app = App("svc")
    with pytest.raises(ConfigError, match="expected str, got int 5") as info:

        @app.consumer("orders", group=5)  # type: ignore[arg-type]
        def bill(order: dict) -> None: ...

    assert info.value.key == "bindings.bill-in-0.group"
    with pytest.raises(ConfigError, match="expected str, got int 7") as info:

        @app.function("orders", 7)  # type: ignore[arg-type]
        def price(order: dict) -> dict: ...

    assert info.value.key == "bindings.price-out-0.destination"


def test_function_and_supplier_options_name_their_decorator() -> None:
    app = App("svc")
    with pytest.raises(ConfigError) as info:

        @app.function(  # marker: function decorator
            "orders",
            "invoices",
            backoff_multiplier=-1.0,
        )
        def price(order: dict) -> dict: ...

    assert info.value.line == _line_of("marker: function decorator")
    assert info.value.key == "bindings.price-in-0.backoff_multiplier"
    with pytest.raises(ConfigError) as info:

        @app.supplier("ticks", every=1, partition_count=0)  # marker: supplier decorator
        def tick() -> None: ...

    assert (info.value.line, info.value.key) == (
        _line_of("marker: supplier decorator"),
        "bindings.tick-out-0.partition_count",
    )


def test_decorator_options_keep_only_what_was_written_normalised() -> None:
    app = App("svc")

    @app.supplier("ticks", every=1, required_groups="audit, billing", backoff_max=3)
    def tick() -> None: ...

    decl = app.handlers["tick"].output
    assert decl is not None
    assert dict(decl.options) == {"required_groups": ["audit", "billing"], "backoff_max": 3}


def test_a_bad_decorator_option_never_reaches_a_handler() -> None:
    """The issue's case: it used to load and dead-letter every message at run time."""
    app = App("svc")
    with pytest.raises(ConfigError, match="max_attempts': expected int, got str 'three'"):

        @app.consumer("orders", group="g", max_attempts="three", backoff_initial=-5)
        def bill(order: dict) -> None: ...

    assert app.handlers == {}


def test_bad_handler_signature_fails_at_declaration() -> None:
    app = App("svc")
    with pytest.raises(TypeError, match="neither the payload"):

        @app.consumer("orders")
        def bill(order: dict, extra: str) -> None: ...

    assert app.handlers == {}


def test_startup_and_shutdown_hooks_are_registered_in_order() -> None:
    app = App("svc")

    def first() -> None: ...

    async def second() -> None: ...

    assert app.on_startup(first) is first
    app.on_startup(second)
    app.on_shutdown(second)
    assert app.startup_hooks == [first, second]
    assert app.shutdown_hooks == [second]


async def test_send_when_not_running_raises_not_running_error() -> None:
    app = App("svc")
    with pytest.raises(NotRunningError, match="app 'svc' is not running"):
        await app.send("anywhere", {"a": 1})
    with pytest.raises(NotRunningError):
        _ = app.runtime


async def test_send_while_running_publishes_and_after_stop_raises_again() -> None:
    app = App("svc")
    async with run_app(app) as harness:
        await app.send("events", {"n": 1}, headers={"h": "v"}, key="k")
        message = await harness.receive("events")
        assert isinstance(message, Message)
        assert message.json() == {"n": 1}
        assert message.headers["h"] == "v"
        assert message.key == "k"
        assert message.content_type == "application/json"
    with pytest.raises(NotRunningError):
        await app.send("events", {"n": 2})


async def test_the_runtime_property_while_running() -> None:
    app = App("svc")

    @app.consumer("in")
    def handle(payload: dict) -> None: ...

    async with run_app(app) as harness:
        assert app.runtime is harness.runtime
        assert app.runtime.status() == {"handle-in-0": "running"}
        await harness.send("in", {})
        await harness.wait_handled(1)
        assert app.runtime.handled == 1
    with pytest.raises(NotRunningError, match="app 'svc' is not running"):
        _ = app.runtime


async def test_send_from_inside_a_handler() -> None:
    app = App("svc")

    @app.consumer("in")
    async def forward(payload: dict) -> None:
        await app.send("out", {"seen": payload["n"]}, content_type="application/json")

    async with run_app(app) as harness:
        await harness.send("in", {"n": 3})
        assert (await harness.receive("out")).json() == {"seen": 3}


async def test_send_from_a_startup_hook_reaches_a_group_of_the_same_app() -> None:
    app = App("svc")
    received = asyncio.Event()

    @app.on_startup
    async def hello() -> None:
        await app.send("greetings", {"hi": 1})

    @app.consumer("greetings", group="g")
    def greet(payload: dict) -> None:
        received.set()

    registry = load_registry()
    settings = load_settings(None, registry=registry, discover=False, environ={})
    # a binder per config entry, as in production (run_app shares one binder, hiding a
    # producer bound on a binder the runtime later replaced)
    runtime = Runtime(app, settings, registry)
    await runtime.start()
    try:
        await asyncio.wait_for(received.wait(), 2.0)
        assert list(runtime.binders) == ["memory"]
    finally:
        await runtime.stop()
