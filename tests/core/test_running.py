"""``async with app.run(...)``: an app inside another asyncio program (memory binder)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from binder.app import App
from binder.errors import ConfigError, NotRunningError
from binder.testing import wait_until


def _app(seen: list[Any]) -> App:
    app = App("embedded")

    @app.function("orders", "priced", group="pricing")
    def price(order: dict[str, Any]) -> dict[str, Any]:
        return {**order, "price": 10}

    @app.consumer("priced", group="audit")
    def audit(order: dict[str, Any]) -> None:
        seen.append(order)

    return app


async def test_the_block_runs_the_bindings_and_stops_them_gracefully() -> None:
    seen: list[Any] = []
    app = _app(seen)
    async with app.run(config={}, environ={}) as runtime:
        assert runtime.running and app.runtime is runtime
        for n in range(20):
            await app.send("orders", {"n": n})
        await wait_until(lambda: len(seen) == 20, 5, "20 orders audited")
    assert sorted(o["n"] for o in seen) == list(range(20))
    assert all(o["price"] == 10 for o in seen)
    assert not runtime.running
    assert set(runtime.status().values()) == {"stopped"}
    with pytest.raises(NotRunningError):
        await app.send("orders", {"n": 99})


async def test_in_flight_handlers_finish_before_the_block_ends() -> None:
    app = App("graceful")
    started, release, finished = asyncio.Event(), asyncio.Event(), []

    @app.consumer("jobs", group="workers")
    async def work(job: dict[str, Any]) -> None:
        started.set()
        await release.wait()  # under way when the block ends
        finished.append(job["n"])

    async with app.run(config={}, environ={}) as runtime:
        await app.send("jobs", {"n": 1})
        await asyncio.wait_for(started.wait(), 5)

        async def release_once_stopping() -> None:
            await wait_until(
                lambda: runtime.status()["work-in-0"] == "stopping", 5, "the drain begun"
            )
            release.set()

        releasing = asyncio.ensure_future(release_once_stopping())
    await releasing
    assert finished == [1]


async def test_a_bad_configuration_fails_before_anything_starts() -> None:
    app = _app([])
    with pytest.raises(ConfigError, match=r"management\.http"):
        app.run(config={"management": {"http": "nowhere"}}, environ={})


async def test_environment_overrides_apply_as_for_binder_run() -> None:
    app = _app([])
    run = app.run(config={}, environ={"EVENTBINDER_BINDINGS__PRICE_IN_0__GROUP": "other"})
    assert run.runtime.bindings["price-in-0"].group == "other"
