"""FastStream implementations of the pipeline benchmark (Kafka and RabbitMQ), run under
the cached virtualenv that holds FastStream."""

from __future__ import annotations

import asyncio
from typing import Any

from _pipeline_common import (
    KAFKA,
    RABBIT_URL,
    Case,
    InFlight,
    Tally,
    drive,
    payload,
)

# ----------------------------------------------------------------------- FastStream


async def run_faststream_kafka(case: Case, *, ack: bool) -> tuple[float, Tally]:
    """FastStream's KafkaBroker at its defaults (``ack``: AckPolicy.ACK)."""
    from faststream import AckPolicy
    from faststream.kafka import KafkaBroker

    source, sink_topic = case.names
    tally = Tally(case.count)
    policy: dict[str, Any] = {"ack_policy": AckPolicy.ACK} if ack else {}
    broker = KafkaBroker(KAFKA)
    relay_in = broker.subscriber(source, group_id="fn", auto_offset_reset="earliest", **policy)
    sink_in = broker.subscriber(sink_topic, group_id="sink", auto_offset_reset="earliest", **policy)

    @broker.publisher(sink_topic)
    @relay_in
    async def relay(order: dict) -> dict:
        return order

    @sink_in
    async def sink(order: dict) -> None:
        tally.add(order["id"])

    async with broker:
        await broker.start()

        async def assigned(subscriber: Any) -> None:
            while subscriber.consumer is None or not subscriber.consumer.assignment():
                await asyncio.sleep(0.01)

        await asyncio.wait_for(asyncio.gather(assigned(relay_in), assigned(sink_in)), 60)
        inflight = InFlight(tally)

        async def publish(i: int) -> None:
            inflight.add(broker.publish(payload(i), source))

        elapsed = await drive(case, tally, publish)
        await inflight.drain()
        return elapsed, tally


async def run_faststream_rabbit(case: Case, *, ack: bool) -> tuple[float, Tally]:
    """FastStream's RabbitBroker at its defaults (``ack``: AckPolicy.ACK)."""
    from faststream import AckPolicy
    from faststream.rabbit import ExchangeType, RabbitBroker, RabbitExchange, RabbitQueue

    source, sink_topic = case.names
    tally = Tally(case.count)
    policy: dict[str, Any] = {"ack_policy": AckPolicy.ACK} if ack else {}
    broker = RabbitBroker(RABBIT_URL)
    source_exchange = RabbitExchange(source, type=ExchangeType.TOPIC, durable=True)
    out_exchange = RabbitExchange(sink_topic, type=ExchangeType.TOPIC, durable=True)
    relay_queue = RabbitQueue(f"{source}.fn", durable=True, routing_key="#")
    sink_queue = RabbitQueue(f"{sink_topic}.sink", durable=True, routing_key="#")

    @broker.publisher(exchange=out_exchange, routing_key=sink_topic)
    @broker.subscriber(relay_queue, source_exchange, **policy)
    async def relay(order: dict) -> dict:
        return order

    @broker.subscriber(sink_queue, out_exchange, **policy)
    async def sink(order: dict) -> None:
        tally.add(order["id"])

    async with broker:
        await broker.start()
        inflight = InFlight(tally)

        async def publish(i: int) -> None:
            inflight.add(broker.publish(payload(i), exchange=source_exchange, routing_key=source))

        elapsed = await drive(case, tally, publish)
        await inflight.drain()
        return elapsed, tally
