"""The runtime: lifecycle, shutdown draining, connection retries, dynamic sends."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import pytest

from binder import App, ConfigError, Message, NotRunningError, UnsupportedFeature
from binder.backoff import Backoff
from binder.config import BinderConfig, load_settings
from binder.errors import AccessRefused
from binder.plugins import load_registry
from binder.runtime import ConnectError, Runtime
from binder.spi import Capabilities
from binder.testing import run_app
from binder.testing.conformance import wait_until
from binders.memory.binder import MemoryBinder


def settings(config: Mapping[str, Any] | None = None) -> Any:
    return load_settings(config or {}, registry=load_registry(), discover=False, environ={})


async def test_startup_and_shutdown_hooks_run_around_the_bindings() -> None:
    app = App("hooks")
    events: list[str] = []

    @app.on_startup
    async def opened() -> None:
        events.append("startup")

    @app.on_shutdown
    def closed() -> None:
        events.append("shutdown")

    @app.consumer("things")
    def handle(payload: dict) -> None:
        events.append(f"handled {payload['n']}")

    async with run_app(app) as harness:
        assert events == ["startup"]
        await harness.send("things", {"n": 1})
        await harness.wait_handled(1)
    assert events == ["startup", "handled 1", "shutdown"]


async def test_stop_waits_for_in_flight_handlers_and_acks_them() -> None:
    app = App("drain")
    started, release = asyncio.Event(), asyncio.Event()
    finished: list[int] = []

    @app.consumer("slow", group="workers")
    async def handle(payload: dict) -> None:
        started.set()
        await release.wait()
        finished.append(payload["n"])

    memory = MemoryBinder()
    runtime = Runtime(app, settings(), load_registry(), binder_factory=lambda _: memory)
    await runtime.start()
    memory.broker.publish("slow", Message(b'{"n": 1}', content_type="application/json"))
    await asyncio.wait_for(started.wait(), 2)
    stopping = asyncio.create_task(runtime.stop())
    for _ in range(50):  # give stop() every chance to (wrongly) finish early
        await asyncio.sleep(0)  # one loop turn
    assert not stopping.done(), "stop must wait for the in-flight handler"
    release.set()
    await asyncio.wait_for(stopping, 2)
    assert finished == [1]
    assert runtime.handled == 1
    assert list(memory.broker.topic("slow").groups["workers"].entries) == []


async def test_stop_during_retry_backoff_leaves_the_message_for_redelivery() -> None:
    app = App("interrupt")
    attempts: list[int] = []

    @app.consumer("jobs", group="workers", max_attempts=5, backoff_initial=60.0)
    def handle(payload: dict) -> None:
        attempts.append(payload["n"])
        raise RuntimeError("downstream is down")

    memory = MemoryBinder()
    runtime = Runtime(app, settings(), load_registry(), binder_factory=lambda _: memory)
    await runtime.start()
    memory.broker.publish("jobs", Message(b'{"n": 1}', content_type="application/json"))
    await wait_until(lambda: attempts == [1], 2, "the first attempt")
    await asyncio.wait_for(runtime.stop(), 2)  # a 60 s backoff must not delay the stop
    queue = memory.broker.topic("jobs").groups["workers"]
    assert [e.message.json() for e in queue.entries] == [{"n": 1}]
    assert memory.dead_letters("jobs", "workers") == []


async def test_a_function_can_send_to_dynamic_destinations() -> None:
    app = App("router")

    @app.consumer("events", group="router")
    async def route(payload: dict) -> None:
        await app.send(f"events.{payload['kind']}", payload, headers={"routed": "yes"})

    async with run_app(app) as harness:
        await harness.send("events", {"kind": "created", "id": 1})
        routed = await harness.receive("events.created")
        assert routed.json() == {"kind": "created", "id": 1}
        assert routed.headers == {"routed": "yes"}
        await app.send("events.deleted", {"id": 2})  # from outside any handler
        assert (await harness.receive("events.deleted")).json() == {"id": 2}
    with pytest.raises(NotRunningError):
        await app.send("events.created", {})


async def test_suppliers_run_on_their_schedule() -> None:
    app = App("ticker")
    ticks = iter(range(1000))

    @app.supplier("ticks", every=0.01)
    def tick() -> dict | None:
        n = next(ticks)
        return {"n": n} if n % 2 == 0 else None  # None publishes nothing

    async with run_app(app) as harness:
        received = [(await harness.receive("ticks")).json()["n"] for _ in range(3)]
    assert received == [0, 2, 4]


async def test_max_messages_sets_done() -> None:
    app = App("counted")

    @app.consumer("things")
    def handle(payload: dict) -> None:
        return None

    memory = MemoryBinder()
    runtime = Runtime(
        app, settings(), load_registry(), binder_factory=lambda _: memory, max_messages=3
    )
    await runtime.start()
    try:
        for n in range(3):
            memory.broker.publish("things", Message(f'{{"n": {n}}}'.encode()))
        await asyncio.wait_for(runtime.done.wait(), 2)
        assert runtime.handled == 3
    finally:
        await runtime.stop()


class FlakyBinder(MemoryBinder):
    """Refuses to connect a given number of times, like a broker still starting (or,
    with ``refused``, like one refusing the credentials)."""

    def __init__(self, failures: int, refused: bool = False) -> None:
        super().__init__("flaky")
        self.failures = failures
        self.refused = refused
        self.attempts = 0

    async def start(self) -> None:
        self.attempts += 1
        if self.attempts <= self.failures:
            if self.refused:
                raise AccessRefused("the broker refused the login of user 'app'")
            raise ConnectionRefusedError("[Errno 111] connect to amqp://app:s3cret@127.0.0.1")
        await super().start()


async def test_unreachable_broker_is_retried_and_reported(caplog: pytest.LogCaptureFixture) -> None:
    app = App("patient")

    @app.consumer("things", group="g")
    def handle(payload: dict) -> None:
        return None

    flaky = FlakyBinder(failures=3)
    runtime = Runtime(
        app,
        settings(),
        load_registry(),
        binder_factory=lambda _: flaky,
        connect_backoff=Backoff(0.001, 2.0, 0.01),
    )
    caplog.set_level(logging.WARNING, "binder.runtime")
    starting = asyncio.create_task(runtime.start())
    await wait_until(lambda: flaky.attempts >= 2, 2, "a retry")
    assert runtime.status()["handle-in-0"].startswith("waiting for broker")
    await asyncio.wait_for(starting, 2)
    assert runtime.status() == {"handle-in-0": "running"}
    assert flaky.attempts == 4
    assert "cannot reach broker" in caplog.text
    assert "s3cret" not in caplog.text and "s3cret" not in str(runtime.status())
    await runtime.stop()


async def test_fail_fast_raises_a_connect_error_without_secrets() -> None:
    app = App("impatient")
    runtime = Runtime(
        app,
        settings(),
        load_registry(),
        binder_factory=lambda _: FlakyBinder(failures=1),
        fail_fast=True,
    )
    with pytest.raises(ConnectError) as caught:
        await runtime.start()
    assert "cannot reach its broker" in str(caught.value)
    assert "s3cret" not in str(caught.value)


async def test_refused_access_fails_at_once_even_without_fail_fast() -> None:
    refusing = FlakyBinder(failures=1, refused=True)
    factory = lambda _: refusing  # noqa: E731
    runtime = Runtime(App("refused"), settings(), load_registry(), binder_factory=factory)
    with pytest.raises(ConnectError) as caught:
        await runtime.start()
    assert str(caught.value) == (
        "binder 'memory': the broker refused access: the broker refused the login of user 'app'"
    )
    assert refusing.attempts == 1


async def test_refused_access_is_retried_when_configured(caplog: pytest.LogCaptureFixture) -> None:
    app = App("patient")

    @app.consumer("things", group="g")
    def handle(payload: dict) -> None:
        return None

    refusing = FlakyBinder(failures=2, refused=True)
    runtime = Runtime(
        app,
        settings({"runtime": {"retry_access_refused": True}}),
        load_registry(),
        binder_factory=lambda _: refusing,
        connect_backoff=Backoff(0.001, 2.0, 0.01),
    )
    caplog.set_level(logging.WARNING, "binder.runtime")
    await asyncio.wait_for(runtime.start(), 2)
    assert refusing.attempts == 3
    assert "binder memory: refused by broker (the broker refused the login" in caplog.text
    await runtime.stop()


class GrouplessBinder(MemoryBinder):
    capabilities = Capabilities(consumer_groups=False, partitioning=False)


async def test_a_capability_the_binder_lacks_is_refused_at_bind_time() -> None:
    app = App("needs-groups")

    @app.consumer("things", group="workers")
    def handle(payload: dict) -> None:
        return None

    runtime = Runtime(app, settings(), load_registry(), binder_factory=lambda _: GrouplessBinder())
    with pytest.raises(UnsupportedFeature, match="consumer groups"):
        await runtime.start()


async def test_partition_count_on_a_binder_without_partitions_is_refused() -> None:
    app = App("needs-partitions")

    @app.supplier("things", every=1.0, partition_count=4, partition_key="key")
    def emit() -> None:
        return None

    runtime = Runtime(app, settings(), load_registry(), binder_factory=lambda _: GrouplessBinder())
    with pytest.raises(UnsupportedFeature, match="partitioning"):
        await runtime.start()


async def test_each_binder_name_gets_its_own_binder_instance() -> None:
    app = App("two-brokers")

    @app.function(input="in", output="out", group="g")
    def relay(payload: dict) -> dict:
        return payload

    created: dict[str, MemoryBinder] = {}

    def factory(config: BinderConfig) -> MemoryBinder:
        created[config.name] = MemoryBinder(config.name)
        return created[config.name]

    config = {
        "binders": {"left": {"type": "memory"}, "right": {"type": "memory"}},
        "default_binder": "left",
        "bindings": {"relay-out-0": {"binder": "right"}},
    }
    runtime = Runtime(app, settings(config), load_registry(), binder_factory=factory)
    await runtime.start()
    try:
        seen: list[Message] = []
        untap = created["right"].broker.add_tap(lambda _dest, message: seen.append(message))
        created["left"].broker.publish("in", Message(b'{"x": 1}'))
        await wait_until(lambda: seen, 2, "the relayed message on the right binder")
        assert seen[0].json() == {"x": 1}
        untap()
    finally:
        await runtime.stop()


async def test_group_null_in_the_config_makes_a_decorated_group_anonymous() -> None:
    app = App("anon")

    @app.consumer("things", group="workers")
    def handle(payload: dict) -> None:
        return None

    runtime = Runtime(
        app, settings({"bindings": {"handle-in-0": {"group": None}}}), load_registry()
    )
    assert runtime.bindings["handle-in-0"].group is None
    runtime = Runtime(app, settings(), load_registry())
    assert runtime.bindings["handle-in-0"].group == "workers"


def test_binding_runtime_is_still_importable_from_binder_runtime() -> None:
    import binder.consumers
    import binder.runtime

    assert binder.runtime.BindingRuntime is binder.consumers.BindingRuntime
    assert "BindingRuntime" in binder.runtime.__all__


async def test_a_failing_supplier_is_logged_and_called_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = App("flaky-ticker")
    calls: list[int] = []

    @app.supplier("ticks", every=0.01)
    def tick() -> dict:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("the first tick fails")
        return {"n": len(calls)}

    caplog.set_level(logging.ERROR, "binder.runtime")
    async with run_app(app) as harness:
        assert (await harness.receive("ticks")).json() == {"n": 2}
    assert ("binder.runtime", "supplier tick failed; trying again in 0.01s") in [
        (r.name, r.getMessage()) for r in caplog.records
    ]


async def test_poll_supplier_refuses_a_handler_that_is_no_supplier() -> None:
    app = App("svc")

    @app.consumer("in")
    def handle(payload: dict) -> None: ...

    async with run_app(app, suppliers=False) as harness:
        with pytest.raises(ValueError, match="'handle' is a consumer, not a supplier"):
            await harness.poll("handle")


class NoDeadLetters(MemoryBinder):
    def dead_letter_destination(self, destination: str, group: str | None) -> str:
        raise ConfigError("this binder keeps no dead letters; set dead_letter: false")


async def test_a_dead_letter_refusal_names_the_bindings_dead_letter_key() -> None:
    app = App("svc")

    @app.consumer("jobs", group="workers")
    def handle(payload: dict) -> None: ...

    runtime = Runtime(app, settings(), load_registry(), binder_factory=lambda _: NoDeadLetters())
    with pytest.raises(ConfigError) as caught:
        await runtime.start()
    assert caught.value.key == "bindings.handle-in-0.dead_letter"
    assert caught.value.source == "<mapping>"
    assert "keeps no dead letters" in str(caught.value)
    assert runtime.status() == {"handle-in-0": "stopped"}  # start() stopped what it began


class CloseFails:
    """A consumer binding whose ``close`` fails after closing, naming a secret URL."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def close(self) -> None:
        await self.inner.close()
        raise RuntimeError("lost amqp://app:s3cret@127.0.0.1 while closing")


class BadCloseBinder(MemoryBinder):
    async def bind_consumer(self, spec: Any, sink: Any) -> Any:
        return CloseFails(await super().bind_consumer(spec, sink))


async def test_a_consumer_failing_to_close_is_logged_and_the_stop_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = App("svc")
    closed: list[bool] = []

    @app.consumer("jobs", group="workers")
    def handle(payload: dict) -> None: ...

    @app.on_shutdown
    def after() -> None:
        closed.append(True)

    runtime = Runtime(app, settings(), load_registry(), binder_factory=lambda _: BadCloseBinder())
    caplog.set_level(logging.ERROR, "binder.runtime")
    await runtime.start()
    await runtime.stop()
    assert runtime.status() == {"handle-in-0": "stopped"}
    assert closed == [True]
    messages = [(r.name, r.getMessage()) for r in caplog.records]
    assert any(
        name == "binder.runtime"
        and message.startswith("closing consumer handle-in-0: RuntimeError: lost amqp://")
        for name, message in messages
    ), messages
    assert "s3cret" not in caplog.text


async def test_sends_made_while_the_first_one_binds_keep_their_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The first send to a destination binds its producer; sends made meanwhile, and
    sends made once it is bound but before the queued ones went out, keep their order."""
    bind = Runtime._bind_producer

    async def slow_bind(self: Runtime, settings: Any) -> Any:
        await asyncio.sleep(0.02)  # a broker round trip or two
        return await bind(self, settings)

    monkeypatch.setattr(Runtime, "_bind_producer", slow_bind)
    app = App("ordering")
    received: list[int] = []

    @app.consumer("fresh-destination", group="g")
    def collect(order: dict[str, int]) -> None:
        received.append(order["n"])

    async with run_app(app) as harness:
        sends = []
        for n in range(300):
            sends.append(app.send("fresh-destination", {"n": n}))
            if n % 10 == 0:
                await asyncio.sleep(0.002)  # sends go on while the first one binds
        await asyncio.gather(*sends)
        await harness.wait_handled(300, timeout=10)
    assert received == list(range(300))
