"""Bindings control on the real brokers: a binding stopped while its handler is stuck
gives up after ``drain_timeout`` with the message unacknowledged; started again, the
broker delivers it again and it is handled. Pausing holds messages; resuming handles
them."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest

from binder.app import App
from binder.testing import wait_until

BINDERS: dict[str, dict[str, Any]] = {
    "rabbit": {"type": "rabbit", "url": "amqp://guest:guest@127.0.0.1:5672//"},
    "kafka": {"type": "kafka", "bootstrap_servers": "127.0.0.1:9092"},
    "mqtt": {"type": "mqtt", "url": "mqtt://127.0.0.1:1883"},
}


@pytest.mark.parametrize("broker", [pytest.param(b, marks=pytest.mark.broker(b)) for b in BINDERS])
async def test_stop_with_a_stuck_handler_then_start_loses_nothing(broker: str) -> None:
    suffix = uuid.uuid4().hex[:8]
    destination = f"ebtest/control-{suffix}" if broker == "mqtt" else f"control-{suffix}"
    stuck, calls, seen = threading.Event(), [], []
    app = App(f"control-{broker}")

    @app.consumer(destination, group=f"g{suffix}")
    def work(job: dict[str, Any]) -> None:
        calls.append(job["n"])
        if len(calls) == 1:
            stuck.wait(60)  # stuck until the test lets it go
            raise RuntimeError("gave up")  # its result comes after the stop: ignored
        seen.append(job["n"])

    config = {"binders": {broker: BINDERS[broker]}, "default_binder": broker}
    async with app.run(config=config, environ={}, drain_timeout=0.5) as runtime:
        await app.send(destination, {"n": 1})
        await wait_until(lambda: calls == [1], 20, "the handler stuck")
        assert await runtime.control("work-in-0", "stop") == "stopped"
        stuck.set()
        assert await runtime.control("work-in-0", "start") == "running"
        await wait_until(lambda: seen == [1], 30, "the message delivered again and handled")
        assert await runtime.control("work-in-0", "pause") == "paused"
        await app.send(destination, {"n": 2})
        stats = runtime.consumers["work-in-0"].stats  # type: ignore[attr-defined]
        if broker != "kafka":  # Kafka fetches nothing while paused (partitions paused)
            await wait_until(lambda: stats.received == 3, 20, "the message taken, held")
        assert seen == [1]
        assert await runtime.control("work-in-0", "resume") == "running"
        await wait_until(lambda: seen == [1, 2], 20, "the held message handled")
