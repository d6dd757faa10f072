"""JSON logs: records logged while a message is handled name the app, the binding, the
message id and the trace id (from a W3C traceparent header); the per-message path logs
nothing at INFO."""

from __future__ import annotations

import io
import json
import logging
import sys
from typing import Any

import pytest

from binder.app import App
from binder.log_format import JsonFormatter, trace_id
from binder.testing import wait_until

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE}-00f067aa0ba902b7-01"


@pytest.fixture
def json_lines() -> Any:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter(app="shop"))
    logger = logging.getLogger("shop.handlers")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    logger.removeHandler(handler)


@pytest.mark.parametrize("threaded", [True, False], ids=["def", "async-def"])
async def test_a_handler_s_log_lines_carry_binding_message_and_trace(
    threaded: bool, json_lines: Any
) -> None:
    app = App("shop")
    log = logging.getLogger("shop.handlers")
    done: list[str] = []

    if threaded:

        @app.consumer("orders", group="billing")
        def bill(order: dict[str, Any]) -> None:
            log.info("billing order %s", order["id"])
            done.append(order["id"])

    else:

        @app.consumer("orders", group="billing")
        async def bill(order: dict[str, Any]) -> None:  # type: ignore[misc]
            log.info("billing order %s", order["id"])
            done.append(order["id"])

    async with app.run(config={}, environ={}):
        await app.send("orders", {"id": "a1"}, headers={"traceparent": TRACEPARENT})
        await app.send("orders", {"id": "b2"})
        await wait_until(lambda: len(done) == 2, 5, "both orders billed")
    log.info("outside any message")
    lines = json_lines()
    first, second, outside = lines
    assert first["message"] == "billing order a1"
    assert first["app"] == "shop" and first["binding"] == "bill-in-0"
    assert first["trace_id"] == TRACE and first["level"] == "INFO"
    assert first["message_id"] and first["message_id"] != second["message_id"]
    assert second["binding"] == "bill-in-0" and "trace_id" not in second
    assert "binding" not in outside and outside["logger"] == "shop.handlers"
    assert first["time"].endswith("+00:00")


def test_exceptions_are_one_field_and_trace_ids_are_checked() -> None:
    formatter = JsonFormatter()
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), None)
        record.exc_info = sys.exc_info()
    entry = json.loads(formatter.format(record))
    assert "ValueError: boom" in entry["exception"] and "app" not in entry
    assert trace_id(TRACEPARENT) == TRACE
    assert trace_id("00-" + "0" * 32 + "-00f067aa0ba902b7-01") is None
    assert trace_id("garbage") is None and trace_id(None) is None


async def test_the_per_message_path_logs_nothing_at_info(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = App("quiet")
    seen: list[int] = []

    @app.function("in", "out", group="relay")
    def relay(payload: dict[str, Any]) -> dict[str, Any]:
        return payload

    @app.consumer("out", group="sink")
    def sink(payload: dict[str, Any]) -> None:
        seen.append(payload["n"])

    async with app.run(config={}, environ={}):
        caplog.set_level(logging.INFO)
        caplog.clear()
        for n in range(100):
            await app.send("in", {"n": n})
        await wait_until(lambda: len(seen) == 100, 5, "100 relayed")
        assert [r.getMessage() for r in caplog.records] == []
