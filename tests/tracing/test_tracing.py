"""Tracing on the memory binder: send and process spans by the messaging semantic
conventions, one trace through a function, retries and dead letters as span events,
the caller's span as the parent of ``app.send``."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from binder.app import App
from binder.testing import wait_until
from tests.tracing.conftest import by_name

CONFIG: dict[str, Any] = {
    "runtime": {"tracing": True},
    "bindings": {"check-in-0": {"max_attempts": 2, "backoff_initial": 0.01}},
}


def _app(seen: list[Any], threaded: bool) -> App:
    app = App("traced")

    @app.function("orders", "priced", group="pricing")
    def price(order: dict[str, Any]) -> dict[str, Any]:
        return {**order, "price": 10}

    if threaded:

        @app.consumer("priced", group="check")
        def check(order: dict[str, Any]) -> None:
            if order["n"] == 1:
                raise ValueError("no good")
            seen.append(order)

    else:

        @app.consumer("priced", group="check")
        async def check(order: dict[str, Any]) -> None:  # type: ignore[misc]
            if order["n"] == 1:
                raise ValueError("no good")
            seen.append(order)

    return app


@pytest.mark.parametrize("threaded", [True, False], ids=["def", "async-def"])
async def test_one_trace_follows_a_message_through_a_function(
    spans: InMemorySpanExporter, threaded: bool
) -> None:
    seen: list[Any] = []
    app = _app(seen, threaded)
    tracer = trace.get_tracer("test")
    async with app.run(config=CONFIG, environ={}) as runtime:
        with tracer.start_as_current_span("http POST /orders") as request:
            await app.send("orders", {"n": 0})
        await wait_until(lambda: len(seen) == 1, 5, "the order checked")
        await app.send("orders", {"n": 1})
        stats = runtime.consumers["check-in-0"].stats
        await wait_until(lambda: stats.dead_lettered == 1, 5, "the bad order dead-lettered")
    finished = spans.get_finished_spans()
    named = by_name(finished)
    trace_id = request.get_span_context().trace_id
    first = [s for s in finished if s.context.trace_id == trace_id]
    assert sorted(s.name for s in first) == [
        "http POST /orders",
        "process orders",
        "process priced",
        "send orders",
        "send priced",
    ]
    chain = {s.name: s for s in first}
    # send orders -> process orders -> send priced -> process priced, parent by parent
    assert chain["send orders"].parent.span_id == request.get_span_context().span_id
    assert chain["process orders"].parent.span_id == chain["send orders"].context.span_id
    assert chain["send priced"].parent.span_id == chain["process orders"].context.span_id
    assert chain["process priced"].parent.span_id == chain["send priced"].context.span_id
    process = chain["process orders"]
    assert process.kind == SpanKind.CONSUMER and chain["send orders"].kind == SpanKind.PRODUCER
    assert dict(process.attributes or {}) == {
        "messaging.system": "memory",
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.destination.name": "orders",
        "messaging.consumer.group.name": "pricing",
        "messaging.message.id": process.attributes["messaging.message.id"],
        "messaging.message.delivery_attempt": 1,
    }
    # The failing message: an exception event per attempt, a retry, the dead letter.
    failing = [s for s in named["process priced"] if s.context.trace_id != trace_id]
    assert len(failing) == 1
    events = [e.name for e in failing[0].events]
    assert events == ["exception", "retry", "exception", "dead_letter"]
    dead = failing[0].events[-1].attributes or {}
    assert dict(dead) == {"messaging.destination.name": "priced.check.dlq", "attempts": 2}
    assert failing[0].status.status_code == trace.StatusCode.ERROR


async def test_no_spans_and_no_headers_without_tracing(spans: InMemorySpanExporter) -> None:
    seen: list[Any] = []
    app = _app(seen, threaded=False)
    async with app.run(config={}, environ={}) as runtime:
        assert runtime.tracing is None
        await app.send("orders", {"n": 0})
        await wait_until(lambda: len(seen) == 1, 5, "the order checked")
    assert spans.get_finished_spans() == ()
