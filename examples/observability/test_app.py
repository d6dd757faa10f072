"""The observability example, served by uvicorn in the test's event loop: orders
posted over HTTP are billed, the management endpoint reports them, pausing holds them,
and stopping the server stops the bindings gracefully."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import aiohttp
import pytest
import uvicorn

from binder.testing import wait_until
from examples.observability.app import bus, web


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _call(session: aiohttp.ClientSession, method: str, url: str, **kw: Any) -> Any:
    async with session.request(method, url, **kw) as response:
        return response.status, await response.json()


async def test_orders_flow_and_the_endpoint_reports_them(monkeypatch: pytest.MonkeyPatch) -> None:
    management = _free_port()
    monkeypatch.setenv("EVENTBINDER_MANAGEMENT__HTTP", f"127.0.0.1:{management}")
    port = _free_port()
    config = uvicorn.Config(web, host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    serving = asyncio.ensure_future(server.serve())
    shop, ops = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{management}"
    try:
        await wait_until(lambda: server.started, 10, "uvicorn started")
        async with aiohttp.ClientSession() as session:

            async def order(id: int, item: str, quantity: int) -> Any:
                body = {"id": id, "item": item, "quantity": quantity}
                return await _call(session, "POST", f"{shop}/orders", json=body)

            async def counters() -> dict[str, int]:
                status, body = await _call(session, "GET", f"{ops}/bindings/bill-in-0")
                assert status == 200
                return dict(body["counters"])

            assert await order(1, "coffee", 2) == (202, {"accepted": 1})
            assert (await order(2, "caviar", 1))[0] == 202  # no price: dead-lettered
            assert (await order(0, "x", "two"))[0] == 400  # type: ignore[arg-type]
            runtime = bus.runtime
            mailer = runtime.consumers["mail-in-0"].stats  # type: ignore[attr-defined]
            billing = runtime.consumers["bill-in-0"].stats  # type: ignore[attr-defined]
            await wait_until(lambda: billing.handled == 2, 5, "both orders settled")
            assert await counters() == {
                "received": 2,
                "handled": 1,
                "dead_lettered": 1,
                "returned": 0,
                "attempts_failed": 2,
                "retried": 1,
                "in_flight": 0,
            }
            status, ready = await _call(session, "GET", f"{ops}/health/ready")
            assert status == 200 and ready["status"] == "UP"
            status, paused = await _call(session, "POST", f"{ops}/bindings/bill-in-0/pause")
            assert (status, paused["state"]) == (200, "paused")
            assert (await order(3, "bagel", 4))[0] == 202
            await wait_until(lambda: billing.received == 3, 5, "order 3 taken, not handled")
            assert (await counters())["handled"] == 1 and mailer.handled == 1
            await _call(session, "POST", f"{ops}/bindings/bill-in-0/resume")
            await wait_until(lambda: mailer.handled == 2, 5, "order 3 billed and mailed")
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, 30)
    assert set(runtime.status().values()) == {"stopped"}  # the lifespan stopped them
