"""Bindings control: stop, start, pause and resume a consumer binding, from the runtime
and through the management endpoint (memory binder; Kafka's pause: tests/kafka)."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from binder.app import App
from binder.errors import BindingNotFound, UnsupportedFeature
from binder.testing import wait_until


def _app(seen: list[int], threaded: bool) -> App:
    app = App("control")

    if threaded:

        @app.consumer("jobs", group="workers")
        def work(job: dict[str, Any]) -> None:
            seen.append(job["n"])

    else:

        @app.consumer("jobs", group="workers")
        async def work(job: dict[str, Any]) -> None:  # type: ignore[misc]
            seen.append(job["n"])

    return app


@pytest.mark.parametrize("threaded", [True, False], ids=["def", "async-def"])
async def test_pause_holds_messages_and_resume_handles_them(threaded: bool) -> None:
    seen: list[int] = []
    app = _app(seen, threaded)
    async with app.run(config={}, environ={}) as runtime:
        await app.send("jobs", {"n": 0})
        await wait_until(lambda: seen == [0], 5, "the first job handled")
        assert await runtime.control("work-in-0", "pause") == "paused"
        for n in range(1, 11):
            await app.send("jobs", {"n": n})
        stats = runtime.consumers["work-in-0"].stats
        # Taken into the window (unacknowledged), none started while paused.
        await wait_until(lambda: stats.received == 11, 5, "the jobs delivered")
        assert seen == [0] and runtime.status()["work-in-0"] == "paused"
        assert await runtime.control("work-in-0", "pause") == "paused"  # no change
        assert await runtime.control("work-in-0", "resume") == "running"
        await wait_until(lambda: len(seen) == 11, 5, "every job handled after resume")
    assert sorted(seen) == list(range(11))


async def test_stop_leaves_the_group_and_start_joins_again_without_loss() -> None:
    seen: list[int] = []
    app = _app(seen, threaded=False)
    async with app.run(config={}, environ={}) as runtime:
        assert await runtime.control("work-in-0", "stop") == "stopped"
        for n in range(5):
            await app.send("jobs", {"n": n})  # kept by the group's storage meanwhile
        assert seen == []
        assert await runtime.control("work-in-0", "start") == "running"
        await wait_until(lambda: len(seen) == 5, 5, "the jobs sent while stopped")
        assert runtime.consumers["work-in-0"].stats.received == 5
    assert sorted(seen) == list(range(5))


async def test_what_cannot_be_controlled_says_why() -> None:
    app = App("control-errors")

    @app.function("in", "out", group="g")
    def relay(payload: Any) -> Any:
        return payload

    async with app.run(config={}, environ={}) as runtime:
        with pytest.raises(BindingNotFound, match="relay-in-0, relay-out-0"):
            await runtime.control("nope", "stop")
        with pytest.raises(UnsupportedFeature, match="only consumer bindings"):
            await runtime.control("relay-out-0", "stop")
        with pytest.raises(UnsupportedFeature, match="one of: stop, start, pause, resume"):
            await runtime.control("relay-in-0", "explode")


async def test_the_endpoint_controls_bindings_behind_a_token() -> None:
    seen: list[int] = []
    app = _app(seen, threaded=False)
    config = {"management": {"http": "127.0.0.1:0", "token": "s3cret-token"}}
    run = app.run(config=config, environ={})
    async with run, aiohttp.ClientSession() as session:
        assert run.management is not None
        url = f"{run.management.url}/bindings/work-in-0"
        async with session.post(f"{url}/pause") as response:
            assert response.status == 401
            assert "s3cret" not in await response.text()
        auth = {"Authorization": "Bearer s3cret-token"}
        async with session.post(f"{url}/pause", headers=auth) as response:
            assert response.status == 200
            assert (await response.json())["state"] == "paused"
        async with session.get(f"{run.management.url}/health/ready") as response:
            assert response.status == 200  # paused on purpose: still ready
        async with session.post(f"{url}/resume", headers=auth) as response:
            assert (await response.json())["state"] == "running"
        async with session.post(f"{url}/explode", headers=auth) as response:
            assert response.status == 400
        nope = f"{run.management.url}/bindings/nope/stop"
        async with session.post(nope, headers=auth) as response:
            assert response.status == 404


async def test_stopping_a_binding_whose_handler_blocks_is_bounded_and_loses_nothing() -> None:
    """A plain ``def`` handler stuck (for a minute, say) when the binding is stopped:
    stop gives up after ``drain_timeout``, the message stays unacknowledged, and once
    the binding is started again it is delivered again and handled."""
    import threading

    stuck, calls, seen = threading.Event(), [], []
    app = App("stuck")

    @app.consumer("jobs", group="workers")
    def work(job: dict[str, Any]) -> None:
        calls.append(job["n"])
        if len(calls) == 1:
            stuck.wait(60)  # the first attempt blocks until the test lets it go
            raise RuntimeError("gave up")  # it was released: fail, the message returns
        seen.append(job["n"])

    async with app.run(config={}, environ={}, drain_timeout=0.5) as runtime:
        await app.send("jobs", {"n": 1})
        await wait_until(lambda: calls == [1], 5, "the handler stuck")
        assert await runtime.control("work-in-0", "stop") == "stopped"  # after 0.5 s
        stuck.set()
        assert await runtime.control("work-in-0", "start") == "running"
        await wait_until(lambda: seen == [1], 10, "the message delivered again and handled")
