"""The management endpoint on the memory binder: health, bindings, Prometheus metrics.

(The readiness of real brokers going away and coming back: tests/faults.)
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from binder.app import App
from binder.errors import ConfigError, PermanentError
from binder.testing import wait_until

CONFIG: dict[str, Any] = {
    "bindings": {"price-in-0": {"max_attempts": 2, "backoff_initial": 0.01}},
}


def _app(seen: list[Any]) -> App:
    app = App("shop")

    @app.function("orders", "priced", group="pricing")
    def price(order: dict[str, Any]) -> dict[str, Any]:
        if order["n"] % 10 == 9:
            raise ValueError("no price for this one")  # retried once, then dead-lettered
        if order["n"] % 10 == 8:
            raise PermanentError("refused")  # dead-lettered at once
        return {**order, "price": 10}

    @app.consumer("priced", group="audit")
    def audit(order: dict[str, Any]) -> None:
        seen.append(order)

    return app


async def _get(url: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        if response.content_type == "application/json":
            return response.status, await response.json()
        return response.status, await response.text()


def _samples(text: str) -> dict[tuple[str, str], float]:
    """(sample name, binding label) -> value."""
    found: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, sample.labels.get("binding", ""))] = sample.value
    return found


async def test_health_bindings_and_metrics_follow_the_app() -> None:
    seen: list[Any] = []
    app = _app(seen)
    run = app.run(config=CONFIG, environ={}, http="127.0.0.1:0")
    async with run as runtime:
        server = run.management
        assert server is not None
        status, live = await _get(f"{server.url}/health/live")
        assert (status, live) == (200, {"status": "UP"})
        status, ready = await _get(f"{server.url}/health/ready")
        assert status == 200 and ready["status"] == "UP"
        assert ready["components"]["binders"]["components"]["memory"] == {
            "status": "UP",
            "details": {"state": "connected", "connections": {"in-process": True}},
        }
        assert ready["components"]["bindings"]["components"]["price-in-0"]["status"] == "UP"

        for n in range(30):
            await app.send("orders", {"n": n})
        await wait_until(lambda: len(seen) == 24, 5, "24 orders priced and audited")
        pricing = runtime.consumers["price-in-0"].stats
        await wait_until(lambda: pricing.handled == 30, 5, "30 orders settled")

        status, bindings = await _get(f"{server.url}/bindings")
        assert status == 200
        assert {b["name"]: b["state"] for b in bindings} == {
            "price-in-0": "running",
            "price-out-0": "running",
            "audit-in-0": "running",
        }
        status, one = await _get(f"{server.url}/bindings/price-in-0")
        assert status == 200
        assert one["destination"] == "orders" and one["group"] == "pricing"
        assert one["counters"] == {
            "received": 30,
            "handled": 24,
            "dead_lettered": 6,
            "returned": 0,
            "attempts_failed": 9,  # 3 x 2 attempts, 3 permanent failures
            "retried": 3,
            "in_flight": 0,
        }
        status, missing = await _get(f"{server.url}/bindings/nope")
        assert status == 404 and "price-in-0" in missing["error"]

        status, text = await _get(f"{server.url}/metrics")
        assert status == 200
        samples = _samples(text)
        assert samples[("eventbinder_messages_received_total", "price-in-0")] == 30
        assert samples[("eventbinder_messages_handled_total", "price-in-0")] == 24
        assert samples[("eventbinder_messages_dead_lettered_total", "price-in-0")] == 6
        assert samples[("eventbinder_handler_attempts_failed_total", "price-in-0")] == 9
        assert samples[("eventbinder_handler_retries_total", "price-in-0")] == 3
        assert samples[("eventbinder_messages_in_flight", "price-in-0")] == 0
        assert samples[("eventbinder_messages_published_total", "price-out-0")] == 24
        assert samples[("eventbinder_messages_published_total", "orders")] == 30  # app.send
        assert samples[("eventbinder_messages_received_total", "audit-in-0")] == 24
        assert samples[("eventbinder_binder_up", "")] == 1
        assert samples[("eventbinder_binder_reconnects_total", "")] == 0
        assert samples[("eventbinder_handler_duration_seconds_count", "price-in-0")] == 30
        assert samples[("eventbinder_handler_duration_seconds_sum", "price-in-0")] > 0
        buckets = [
            s.value
            for f in text_string_to_metric_families(text)
            for s in f.samples
            if s.name == "eventbinder_handler_duration_seconds_bucket"
            and s.labels["binding"] == "price-in-0"
        ]
        assert buckets == sorted(buckets) and buckets[-1] == 30  # cumulative, +Inf last
        labels = next(
            s.labels
            for f in text_string_to_metric_families(text)
            for s in f.samples
            if s.name == "eventbinder_messages_handled_total"
            and s.labels["binding"] == "price-in-0"
        )
        assert labels == {
            "app": "shop",
            "binding": "price-in-0",
            "destination": "orders",
            "group": "pricing",
            "binder": "memory",
        }
    with pytest.raises(aiohttp.ClientConnectionError):
        await _get(f"{server.url}/health/live")  # stopped with the app


async def test_not_ready_until_started_and_after_stop() -> None:
    app = App("slow-start")
    gate = asyncio.Event()

    @app.on_startup
    async def warm_up() -> None:
        await gate.wait()

    @app.consumer("jobs", group="workers")
    def work(job: Any) -> None:
        pass

    run = app.run(config={}, environ={}, http="127.0.0.1:0")
    starting = asyncio.ensure_future(run.start())
    await wait_until(lambda: run.management is not None, 5, "the endpoint served")
    server = run.management
    assert server is not None
    status, body = await _get(f"{server.url}/health/ready")
    assert status == 503 and body["status"] == "DOWN"
    assert (await _get(f"{server.url}/health/live"))[0] == 200
    gate.set()
    await starting
    assert (await _get(f"{server.url}/health/ready"))[0] == 200
    await run.stop()


async def test_a_taken_port_is_one_clear_error() -> None:
    app = App("busy")
    first = app.run(config={}, environ={}, http="127.0.0.1:0")
    await first.start()
    try:
        assert first.management is not None
        port = first.management.port
        second = App("busy-too").run(config={}, environ={}, http=f"127.0.0.1:{port}")
        with pytest.raises(ConfigError, match=r"cannot serve the management endpoint on 127"):
            await second.start()
    finally:
        await first.stop()
