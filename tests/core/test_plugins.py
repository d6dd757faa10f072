"""binder.plugins: binder types found through entry points; hooks at run time."""

import logging
import types
from collections.abc import Awaitable, Callable
from importlib.metadata import EntryPoint, entry_points
from typing import Any

import pytest

import binder.plugins as plugins_module
from binder import App, ConfigError, NotRunningError
from binder.app import AppRuntime
from binder.config import load_settings
from binder.hookspecs import PluginRuntime
from binder.message import Message
from binder.plugins import ENTRY_POINT_GROUP, hookimpl, load_registry
from binder.runtime import BindingRuntime
from binder.testing import run_app
from binders.memory.plugin import MemoryBinderType

Handler = Callable[[Message], Awaitable[None]]


def test_memory_is_found_through_its_entry_point() -> None:
    eps = {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}
    assert eps["memory"] == "binders.memory.plugin"
    registry = load_registry()
    assert "memory" in registry.types
    assert isinstance(registry.types["memory"], MemoryBinderType)
    plugin = registry.manager.get_plugin("memory")
    assert plugin is not None and plugin.__name__ == "binders.memory.plugin"


def make_plugin(name: str, **hooks: Callable[..., Any]) -> types.ModuleType:
    """A plugin module called ``name`` with the given hook implementations."""
    module = types.ModuleType(name)
    for hook_name, function in hooks.items():
        setattr(module, hook_name, hookimpl(function))
    return module


class OtherMemoryType(MemoryBinderType):
    description = "an impostor"


def test_duplicate_type_name_is_a_config_error_naming_both_plugins() -> None:
    impostor = make_plugin("impostor_plugin", binder_types=lambda: [OtherMemoryType()])
    with pytest.raises(ConfigError) as info:
        load_registry(extra_plugins=[impostor])
    message = str(info.value)
    assert "binder type 'memory' is registered twice" in message
    assert "memory" in message.split("by", 1)[1]
    assert "impostor_plugin" in message


def test_unknown_type_lists_the_installed_types() -> None:
    registry = load_registry()
    with pytest.raises(
        ConfigError,
        match=r"unknown binder type 'nope'; installed binder "
        r"types: .*memory",
    ):
        registry.get("nope")


def test_unknown_type_in_a_config_names_the_key() -> None:
    registry = load_registry()
    with pytest.raises(ConfigError) as info:
        load_settings(
            {"binders": {"main": {"type": "rabit"}}}, registry=registry, discover=False, environ={}
        )
    assert info.value.key == "binders.main.type"
    assert "unknown binder type 'rabit'" in str(info.value)
    assert "memory" in str(info.value)


def test_extra_plugin_adds_a_binder_type() -> None:
    class Extra(MemoryBinderType):
        name = "extra"

    registry = load_registry(extra_plugins=[make_plugin("p", binder_types=lambda: [Extra()])])
    assert {"memory", "extra"} <= set(registry.types)
    settings = load_settings(
        {"binders": {"x": {"type": "extra"}}}, registry=registry, discover=False, environ={}
    )
    assert settings.binders["x"].type == "extra"


def test_a_broken_entry_point_does_not_hide_the_others(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real = list(entry_points(group=ENTRY_POINT_GROUP))
    broken = EntryPoint("broken", "no_such_module_for_binder_tests.plugin", ENTRY_POINT_GROUP)

    def fake_entry_points(group: str) -> list[EntryPoint]:
        assert group == ENTRY_POINT_GROUP
        return [broken, *real]

    monkeypatch.setattr(plugins_module, "entry_points", fake_entry_points)
    caplog.set_level(logging.WARNING, logger="binder.plugins")
    registry = load_registry()
    assert "memory" in registry.types
    assert "broken" not in registry.types
    assert any("cannot load binder plugin 'broken'" in r.message for r in caplog.records)


# -- hooks at run time ------------------------------------------------------------------


def recording_middleware(log: list[tuple[str, str, int]], label: str) -> Callable[..., Any]:
    def binder_consumer_middleware(binding: Any) -> Callable[[Handler], Handler]:
        name = binding.settings.name

        def wrap(handler: Handler) -> Handler:
            async def handle(message: Message) -> None:
                log.append((label, name, message.delivery_attempt))
                await handler(message)

            return handle

        return wrap

    return binder_consumer_middleware


async def test_plugin_middleware_wraps_handlers_and_sees_every_retry() -> None:
    seen: list[tuple[str, str, int]] = []
    plugin = make_plugin("tracer", binder_consumer_middleware=recording_middleware(seen, "t"))
    app = App("svc")
    calls: list[int] = []

    @app.consumer("in", max_attempts=3, backoff_initial=0.0)
    def flaky(payload: dict, msg: Message) -> None:
        calls.append(msg.delivery_attempt)
        if msg.delivery_attempt < 2:
            raise ValueError("first attempt fails")

    async with run_app(app, registry=load_registry(extra_plugins=[plugin])) as harness:
        await harness.send("in", {"n": 1})
        await harness.wait_handled(1)
    assert calls == [1, 2]
    assert seen == [("t", "flaky-in-0", 1), ("t", "flaky-in-0", 2)]


async def test_plugin_returning_none_adds_no_middleware() -> None:
    asked: list[str] = []

    def binder_consumer_middleware(binding: Any) -> None:
        asked.append(binding.settings.name)

    app = App("svc")
    handled: list[dict] = []

    @app.consumer("in")
    def handle(payload: dict) -> None:
        handled.append(payload)

    plugin = make_plugin("nothing", binder_consumer_middleware=binder_consumer_middleware)
    async with run_app(app, registry=load_registry(extra_plugins=[plugin])) as harness:
        await harness.send("in", {"n": 1})
        await harness.wait_handled(1)
    assert asked == ["handle-in-0"]
    assert handled == [{"n": 1}]


async def test_most_recently_registered_plugin_wraps_outermost() -> None:
    seen: list[tuple[str, str, int]] = []
    first = make_plugin("first", binder_consumer_middleware=recording_middleware(seen, "first"))
    second = make_plugin("second", binder_consumer_middleware=recording_middleware(seen, "second"))
    app = App("svc")

    @app.consumer("in")
    def handle(payload: dict) -> None: ...

    registry = load_registry(extra_plugins=[first, second])
    async with run_app(app, registry=registry) as harness:
        await harness.send("in", {})
        await harness.wait_handled(1)
    # pluggy calls implementations last-registered-first; the runtime keeps that order
    assert [label for label, _, _ in seen] == ["second", "first"]


async def test_runtime_started_and_stopping_hooks_are_called_once() -> None:
    events: list[tuple[str, int]] = []

    def binder_runtime_started(runtime: Any) -> None:
        events.append(("started", len(runtime.consumers)))

    def binder_runtime_stopping(runtime: Any) -> None:
        events.append(("stopping", len(runtime.consumers)))

    plugin = make_plugin(
        "lifecycle",
        binder_runtime_started=binder_runtime_started,
        binder_runtime_stopping=binder_runtime_stopping,
    )
    app = App("svc")

    @app.consumer("in")
    def handle(payload: dict) -> None: ...

    async with run_app(app, registry=load_registry(extra_plugins=[plugin])):
        assert events == [("started", 1)]
    assert events == [("started", 1), ("stopping", 1)]


async def test_hooks_receive_what_the_hookspecs_name() -> None:
    members = {
        name for proto in (PluginRuntime, AppRuntime) for name in vars(proto) if name[0] != "_"
    }
    assert members >= {"app", "settings", "bindings", "binders", "consumers", "send", "status"}
    missing: list[str] = []
    bindings: list[Any] = []

    def binder_runtime_started(runtime: Any) -> None:
        missing.extend(name for name in sorted(members) if not hasattr(runtime, name))

    def binder_consumer_middleware(binding: Any) -> None:
        bindings.append(binding)

    plugin = make_plugin(
        "inspector",
        binder_runtime_started=binder_runtime_started,
        binder_consumer_middleware=binder_consumer_middleware,
    )
    app = App("svc")

    @app.consumer("in")
    def handle(payload: dict) -> None: ...

    async with run_app(app, registry=load_registry(extra_plugins=[plugin])):
        pass
    assert missing == []
    assert [type(b) for b in bindings] == [BindingRuntime]


async def test_runtime_started_hook_failure_aborts_the_start_and_stops_cleanly() -> None:
    stopping: list[str] = []

    def binder_runtime_started(runtime: Any) -> None:
        raise RuntimeError("plugin refuses to start")

    def binder_runtime_stopping(runtime: Any) -> None:
        stopping.append(runtime.app.name)

    plugin = make_plugin(
        "refuser",
        binder_runtime_started=binder_runtime_started,
        binder_runtime_stopping=binder_runtime_stopping,
    )
    app = App("svc")

    @app.consumer("in")
    def handle(payload: dict) -> None: ...

    with pytest.raises(RuntimeError, match="plugin refuses to start"):
        async with run_app(app, registry=load_registry(extra_plugins=[plugin])):
            pytest.fail("the app must not run")
    assert stopping == ["svc"], "the partly started runtime was stopped"
    with pytest.raises(NotRunningError):
        await app.send("in", {})


async def test_a_failing_stopping_hook_is_logged_and_the_others_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    called: list[str] = []

    def failing(runtime: Any) -> None:
        called.append("failing")
        raise RuntimeError("stopping hook broke")

    def fine(runtime: Any) -> None:
        called.append("fine")

    plugins = [
        make_plugin("fine_plugin", binder_runtime_stopping=fine),
        make_plugin("failing_plugin", binder_runtime_stopping=failing),
    ]
    app = App("svc")
    closed: list[bool] = []

    @app.on_shutdown
    def after() -> None:
        closed.append(True)

    caplog.set_level(logging.ERROR, logger="binder.runtime")
    async with run_app(app, registry=load_registry(extra_plugins=plugins)):
        pass
    assert sorted(called) == ["failing", "fine"]
    assert closed == [True], "shutdown went on"
    assert any(
        "stopping hook broke" in (r.exc_text or "") or "failing_plugin" in r.message
        for r in caplog.records
    )
