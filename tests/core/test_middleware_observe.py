"""binder.middleware.observe: counting finished and failed deliveries."""

import asyncio

import pytest

from binder import App
from binder.message import Message
from binder.middleware.observe import BindingStats, observe
from binder.testing import run_app


async def test_success_counts_handled_and_notifies() -> None:
    stats = BindingStats()
    notified: list[int] = []

    async def ok(message: Message) -> None: ...

    handler = observe(stats, lambda: notified.append(stats.handled))(ok)
    await handler(Message(b"{}"))
    await handler(Message(b"{}"))
    assert (stats.handled, stats.failed) == (2, 0)
    assert notified == [1, 2], "on_handled runs after the count went up"


@pytest.mark.parametrize("error", [ValueError("x"), asyncio.CancelledError()])
async def test_failure_counts_failed_re_raises_and_does_not_notify(error: BaseException) -> None:
    stats = BindingStats()
    notified: list[int] = []

    async def fail(message: Message) -> None:
        raise error

    with pytest.raises(type(error)):
        await observe(stats, lambda: notified.append(1))(fail)(Message(b"{}"))
    assert (stats.handled, stats.failed) == (0, 1)
    assert notified == []


async def test_runtime_counts_handled_and_dead_lettered_messages_per_binding() -> None:
    app = App("svc")

    @app.consumer("in", max_attempts=2, backoff_initial=0.0)
    def handle(payload: dict) -> None:
        if payload["bad"]:
            raise ValueError("bad")

    @app.consumer("other")
    def other(payload: dict) -> None: ...

    async with run_app(app) as harness:
        await harness.send("in", {"bad": False})
        await harness.send("in", {"bad": True})
        await harness.send("other", {"bad": False})
        await harness.wait_handled(3)
        assert len(harness.dead_letters("in")) == 1
        runtime = harness.runtime
        assert runtime is not None
        stats = runtime.consumers["handle-in-0"].stats
        assert (stats.handled, stats.failed) == (2, 0), "a dead-lettered message is finished"
        assert runtime.consumers["other-in-0"].stats.handled == 1
        assert runtime.handled == 3


async def test_message_dropped_with_dead_letter_off_counts_as_handled() -> None:
    app = App("svc")
    calls: list[int] = []

    @app.consumer("in", max_attempts=1, dead_letter=False)
    def handle(payload: dict, msg: Message) -> None:
        calls.append(msg.delivery_attempt)
        raise ValueError("dropped")

    async with run_app(app) as harness:
        await harness.send("in", {})
        await harness.wait_handled(1)
        assert calls == [1]
        assert harness.runtime is not None
        stats = harness.runtime.consumers["handle-in-0"].stats
        assert (stats.handled, stats.failed) == (1, 0), "dropped with dead_letter off: finished"


async def test_max_messages_sets_done() -> None:
    app = App("svc")

    @app.consumer("in")
    def handle(payload: dict) -> None: ...

    async with run_app(app) as harness:
        runtime = harness.runtime
        assert runtime is not None
        runtime.max_messages = 2
        await harness.send("in", {})
        await harness.wait_handled(1)
        assert not runtime.done.is_set()
        await harness.send("in", {})
        await asyncio.wait_for(runtime.done.wait(), 2.0)
        assert runtime.handled == 2
