"""Partitioned producers: for the same key, eventbinder (``partition_key`` +
``partition_count``) picks the partition Spring Cloud Stream does
(``partitionKeyExpression`` + ``partitionCount``), on Kafka (the record's partition)
and on RabbitMQ (routing key ``<destination>-<n>``)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import kombu

from binder.app import App
from binder.message import Message
from binder.testing import run_app, wait_until
from tests.interop.spring.springapp import SpringFactory
from tests.interop.spring.support import create_topics
from tests.rabbit.support import URL, delete_later, fresh

PARTITIONS = 4
KEYS = ["a", "b", "c", *(f"order-{n}" for n in range(1, 10)), "héllo"]


async def test_a_key_lands_on_the_same_partition_from_spring_and_eventbinder(
    broker: str, eventbinder_config: dict[str, Any], spring: SpringFactory
) -> None:
    inbound, outbound = fresh("part-in"), fresh("part-out")
    config = {
        **eventbinder_config,
        "bindings": {
            outbound: {
                "destination": outbound,
                "partition_count": PARTITIONS,
                "partition_key": "pkey",
            }
        },
    }
    properties = {
        "spring.cloud.stream.bindings.partitioned-in-0.destination": inbound,
        "spring.cloud.stream.bindings.partitioned-in-0.group": "spring",
        "spring.cloud.stream.bindings.partitioned-out-0.destination": outbound,
        "spring.cloud.stream.bindings.partitioned-out-0.producer.partition-count": str(PARTITIONS),
    }
    app = App("interop")
    # (who, key) -> partition
    placed: dict[tuple[str, str], int] = {}
    if broker == "kafka":
        await create_topics(PARTITIONS, inbound, outbound)

        @app.consumer(outbound, group="collector")
        def collect(message: Message) -> None:
            assert message.partition is not None
            placed[(message.headers.get("x-by", "spring"), message.headers["pkey"])] = (
                message.partition
            )

    else:
        delete_later(exchanges=(inbound, outbound), queues=(f"{inbound}.spring", f"{outbound}.all"))
        await asyncio.to_thread(_bind_all, outbound, f"{outbound}.all")

    async with spring(broker, properties) as java, run_app(app, config) as harness:
        for key in KEYS:
            await harness.send(inbound, {"key": key}, headers={"pkey": key})
            await harness.send(outbound, {"key": key}, headers={"pkey": key, "x-by": "eventbinder"})
        if broker == "rabbit":
            placed.update(await asyncio.to_thread(_routing_keys, f"{outbound}.all", outbound))
        await wait_until(
            lambda: len(placed) == 2 * len(KEYS),
            30.0,
            "every key published by both",
            detail=java.problems,
        )
    spring_side = {key: placed[("spring", key)] for key in KEYS}
    ours = {key: placed[("eventbinder", key)] for key in KEYS}
    assert ours == spring_side
    assert len(set(ours.values())) == PARTITIONS, "the keys cover every partition"


def _bind_all(exchange: str, queue: str) -> None:
    """A queue receiving everything published to ``exchange`` (a topic exchange)."""
    with kombu.Connection(URL) as conn:
        kombu.Queue(queue, kombu.Exchange(exchange, "topic", durable=True), routing_key="#")(
            conn.default_channel
        ).declare()


def _routing_keys(queue: str, destination: str) -> dict[tuple[str, str], int]:
    """(who, key) -> partition, from the routing keys ``<destination>-<n>`` of the
    messages on ``queue``; waits until every key arrived from both producers."""
    placed: dict[tuple[str, str], int] = {}
    deadline = time.monotonic() + 30.0
    with kombu.Connection(URL) as conn:
        simple = conn.SimpleQueue(kombu.Queue(queue, no_declare=True))
        while len(placed) < 2 * len(KEYS) and time.monotonic() < deadline:
            try:
                message = simple.get(block=True, timeout=1.0)
            except simple.Empty:
                continue
            routing_key = message.delivery_info["routing_key"]
            assert routing_key.startswith(f"{destination}-"), routing_key
            headers = message.headers
            placed[(headers.get("x-by", "spring"), headers["pkey"])] = int(
                routing_key.rsplit("-", 1)[1]
            )
            message.ack()
        simple.close()
    return placed
