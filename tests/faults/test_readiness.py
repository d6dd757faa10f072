"""The management endpoint's readiness follows the broker: ``GET /health/ready`` turns
503 when the app loses its broker (the Toxiproxy proxy in between is disabled: every
connection closed, nothing listens) and 200 again once it is back, on every broker."""

from __future__ import annotations

import uuid
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from binder.app import App
from binder.testing import wait_until
from tests.faults.toxiproxy import proxy

#: broker -> (proxy port, upstream port, binder settings through the proxy)
BROKERS: dict[str, tuple[int, int, dict[str, Any]]] = {
    "rabbit": (
        30672,
        5672,
        {
            "type": "rabbit",
            "url": "amqp://guest:guest@127.0.0.1:30672//",
            "heartbeat": 2,
            "connect_timeout": 2,
            "reconnect_initial": 0.2,
            "reconnect_max": 1.0,
        },
    ),
    "mqtt": (
        31883,
        1883,
        {
            "type": "mqtt",
            "url": "mqtt://127.0.0.1:31883",
            "keepalive": 2,
            "connect_timeout": 2,
            "reconnect_min_delay": 0.2,
            "reconnect_max_delay": 1.0,
        },
    ),
    "kafka": (
        19192,
        19092,
        {"type": "kafka", "bootstrap_servers": "127.0.0.1:19192", "request_timeout_ms": 5000},
    ),
}


async def _ready(url: str) -> int:
    async with aiohttp.ClientSession() as session, session.get(f"{url}/health/ready") as r:
        await r.read()
        return r.status


@pytest.mark.parametrize(
    "broker", [pytest.param(b, marks=[pytest.mark.broker(b)]) for b in BROKERS]
)
@pytest.mark.broker("toxiproxy")
async def test_ready_turns_503_without_the_broker_and_200_when_it_is_back(broker: str) -> None:
    listen, upstream, settings = BROKERS[broker]
    suffix = uuid.uuid4().hex[:8]
    app = App(f"ready-{broker}")

    destination = f"ebtest-ready-{suffix}"
    seen: list[int] = []

    @app.consumer(destination, group="g")
    def handle(payload: dict[str, int]) -> None:
        if payload["n"] % 5 == 4:
            raise ValueError("every fifth fails")  # tried twice, then dead-lettered
        seen.append(payload["n"])

    config = {
        "binders": {broker: settings},
        "default_binder": broker,
        "bindings": {"handle-in-0": {"max_attempts": 2, "backoff_initial": 0.01}},
    }
    with proxy(f"eventbinder-ready-{broker}", listen, upstream) as tp:
        run = app.run(config=config, environ={}, http="127.0.0.1:0")
        async with run:
            assert run.management is not None
            url = run.management.url
            assert await _ready(url) == 200
            for n in range(10):
                await app.send(destination, {"n": n})
            stats = run.runtime.consumers["handle-in-0"].stats
            await wait_until(lambda: stats.handled == 10, 30, "10 settled")
            counted = await _metrics(url)
            assert counted["eventbinder_messages_received_total"] == 10
            assert counted["eventbinder_messages_handled_total"] == 8
            assert counted["eventbinder_messages_dead_lettered_total"] == 2
            assert counted["eventbinder_handler_attempts_failed_total"] == 4
            assert counted["eventbinder_handler_retries_total"] == 2
            assert counted["eventbinder_handler_duration_seconds_count"] == 10
            assert counted["eventbinder_binder_reconnects_total"] == 0
            if broker == "kafka":  # the only broker with offsets: all handled, none behind
                await wait_until(lambda: _lag_is(url, {"0": 0.0}), 10, "lag 0 on partition 0")
            tp.disable()
            await wait_until(lambda: _is(url, 503), 20, "readiness 503 without the broker")
            tp.enable()
            await wait_until(lambda: _is(url, 200), 30, "readiness 200 with the broker back")
            reconnected = await _metrics(url)
            assert reconnected["eventbinder_binder_reconnects_total"] >= 1
            assert reconnected["eventbinder_binder_up"] == 1


async def _metrics(url: str) -> dict[str, float]:
    """The app's own samples (one binding, one binder) by name."""
    async with aiohttp.ClientSession() as session, session.get(f"{url}/metrics") as r:
        text = await r.text()
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if "le" not in sample.labels and "partition" not in sample.labels:
                found[sample.name] = sample.value
    return found


async def _lag_is(url: str, expected: dict[str, float]) -> bool:
    async with aiohttp.ClientSession() as session, session.get(f"{url}/metrics") as r:
        text = await r.text()
    lag = {
        sample.labels["partition"]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "eventbinder_consumer_lag"
    }
    return lag == expected


async def _is(url: str, status: int) -> bool:
    return await _ready(url) == status
