"""The event-loop watchdog: a blocked loop is reported once, naming the binding."""

from __future__ import annotations

import logging
import time

import pytest

from binder import App
from binder.testing import run_app


def blocking_app() -> App:
    app = App("watchdog")

    @app.consumer("jobs", group="g")
    async def crunch(job: dict) -> None:
        time.sleep(0.6)  # the mistake under test: blocking inside async def

    @app.consumer("chores", group="g")
    def tidy(job: dict) -> None:
        time.sleep(0.6)  # fine: plain def handlers run in a worker thread

    return app


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "binder.watchdog" and r.levelno == logging.WARNING
    ]


async def test_a_blocking_coroutine_handler_is_named_once(caplog: pytest.LogCaptureFixture) -> None:
    config = {"runtime": {"blocked_loop_warning": 0.2}}
    async with run_app(blocking_app(), config) as harness:
        await harness.send("jobs", {"n": 1})
        await harness.wait_handled(1, timeout=5)
        await harness.wait_for(lambda: warnings(caplog), 5, "the watchdog's warning")
    [warning] = warnings(caplog)
    assert "'crunch-in-0'" in warning
    assert "test_watchdog.py" in warning and "in crunch" in warning


async def test_a_blocking_plain_handler_does_not_block_the_loop(
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = {"runtime": {"blocked_loop_warning": 0.2}}
    async with run_app(blocking_app(), config) as harness:
        await harness.send("chores", {"n": 1})
        await harness.wait_handled(1, timeout=5)
    assert warnings(caplog) == []


async def test_a_threshold_of_zero_turns_the_watchdog_off(
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = {"runtime": {"blocked_loop_warning": 0}}
    async with run_app(blocking_app(), config) as harness:
        await harness.send("jobs", {"n": 1})
        await harness.wait_handled(1, timeout=5)
    assert warnings(caplog) == []
