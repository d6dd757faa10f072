"""One trace follows an order from RabbitMQ through a function to Kafka and on to an
MQTT consumer: the W3C trace context travels in each broker's headers."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from binder.app import App
from binder.testing import wait_until

pytestmark = [pytest.mark.broker("rabbit"), pytest.mark.broker("kafka"), pytest.mark.broker("mqtt")]


async def test_one_trace_through_rabbitmq_a_function_kafka_and_mqtt(
    spans: InMemorySpanExporter,
) -> None:
    suffix = uuid.uuid4().hex[:8]
    orders, priced, shipped = (
        f"trace-orders-{suffix}",
        f"trace-priced-{suffix}",
        f"trace/shipped-{suffix}",
    )
    app = App("traced-across")
    seen: list[Any] = []

    @app.function(orders, priced, group="pricing")
    def price(order: dict[str, Any]) -> dict[str, Any]:
        return {**order, "price": 10}

    @app.function(priced, shipped, group="shipping")
    async def ship(order: dict[str, Any]) -> dict[str, Any]:
        return {**order, "shipped": True}

    @app.consumer(shipped, group="audit")
    def audit(order: dict[str, Any]) -> None:
        seen.append(order)

    config = {
        "runtime": {"tracing": True},
        "binders": {
            "rabbit": {"type": "rabbit", "url": "amqp://guest:guest@127.0.0.1:5672//"},
            "kafka": {"type": "kafka", "bootstrap_servers": "127.0.0.1:9092"},
            "mqtt": {"type": "mqtt", "url": "mqtt://127.0.0.1:1883"},
        },
        "default_binder": "rabbit",
        "bindings": {
            "price-in-0": {"binder": "rabbit"},
            "price-out-0": {"binder": "kafka"},
            "ship-in-0": {"binder": "kafka"},
            "ship-out-0": {"binder": "mqtt"},
            "audit-in-0": {"binder": "mqtt"},
            orders: {"binder": "rabbit"},
        },
    }
    tracer = trace.get_tracer("test")
    async with app.run(config=config, environ={}):
        with tracer.start_as_current_span("checkout") as root:
            await app.send(orders, {"id": 7})
        await wait_until(lambda: len(seen) == 1, 30, "the order audited")
    trace_id = root.get_span_context().trace_id
    mine = [s for s in spans.get_finished_spans() if s.context.trace_id == trace_id]
    systems = {
        (s.name, (s.attributes or {}).get("messaging.system")) for s in mine if s.name != "checkout"
    }
    assert systems == {
        (f"send {orders}", "rabbitmq"),
        (f"process {orders}", "rabbitmq"),
        (f"send {priced}", "kafka"),
        (f"process {priced}", "kafka"),
        (f"send {shipped}", "mqtt"),
        (f"process {shipped}", "mqtt"),
    }
    parents = {s.name: s.parent.span_id if s.parent else None for s in mine}
    ids = {s.name: s.context.span_id for s in mine}
    assert parents[f"process {shipped}"] == ids[f"send {shipped}"]
    assert parents[f"send {shipped}"] == ids[f"process {priced}"]
    assert parents[f"process {priced}"] == ids[f"send {priced}"]
    assert parents[f"send {priced}"] == ids[f"process {orders}"]
    assert parents[f"process {orders}"] == ids[f"send {orders}"]
    assert parents[f"send {orders}"] == ids["checkout"]
