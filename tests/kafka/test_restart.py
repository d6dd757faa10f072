"""A broker restart in the middle of a stream of 2,000 messages loses nothing."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import pytest

from binder.message import Message
from binder.testing import consume, wait_until

from .helpers import consumer_spec, producer_spec, unique

pytestmark = pytest.mark.broker("kafka")

BROKERS = Path(__file__).resolve().parents[2] / "scripts" / "brokers"
log = logging.getLogger(__name__)


#: Handlers are held from this many messages received until the broker is down, so
#: that the consumer is in the middle of the first half (deliveries unsettled,
#: offsets uncommitted) when it goes down.
HOLD_FROM = 400


async def brokers(command: str) -> None:
    """``scripts/brokers <command> kafka``; fails the test if it does not succeed."""
    process = await asyncio.create_subprocess_exec(
        str(BROKERS),
        command,
        "kafka",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, output.decode(errors="replace")


async def test_broker_restart_mid_stream_loses_nothing(binder: Any, topic: str) -> None:
    count, group = 2000, unique("g")
    half = count // 2
    await binder.provision(topic, group, {"partitions": 3})
    producer = await binder.bind_producer(producer_spec(topic))
    received: set[int] = set()
    deliveries: list[int] = []
    down = asyncio.Event()

    async def handler(message: Message) -> None:
        if len(received) >= HOLD_FROM:
            await down.wait()
        value = int(message.payload)
        received.add(value)
        deliveries.append(value)

    consumer = await consume(binder, consumer_spec(topic, group, concurrency=3), handler)
    acknowledged: set[int] = set()

    async def publish(i: int) -> None:
        # At-least-once on the producing side too: a publish the broker did not
        # acknowledge (because it was down) is sent again, after a backoff pause.
        while True:
            try:
                await producer.publish(Message(str(i).encode(), key=f"k{i % 30}"))
            except Exception as exc:
                log.info("publish %d failed (%s), again", i, type(exc).__name__)
                await asyncio.sleep(0.2)  # the producer's retry pause, not a wait
            else:
                acknowledged.add(i)
                return

    async def publish_all(numbers: range) -> None:
        for start in range(numbers.start, numbers.stop, 100):
            await asyncio.gather(
                *(publish(i) for i in range(start, min(start + 100, numbers.stop)))
            )

    # The first half is in Kafka and the consumer is part-way through it (its handlers
    # held) when the broker goes down; the second half is published while it is down
    # and coming back.  Mid-stream on both sides by construction, not by timing.
    await publish_all(range(half))
    await wait_until(
        lambda: len(received) >= HOLD_FROM and consumer.dispatcher.in_flight > 0,
        15,
        f"{HOLD_FROM} messages received and more in flight",
    )
    is_down = False
    publishing: asyncio.Task[None] | None = None
    started = time.monotonic()
    try:
        is_down = True
        await brokers("down")
        assert len(received) < half, "the consumer should be in the middle of the first half"
        down.set()
        publishing = asyncio.create_task(publish_all(range(half, count)))
        await brokers("up")
        is_down = False
        log.warning("the broker went down and came back in %.1fs", time.monotonic() - started)
        await asyncio.wait_for(publishing, 120)
        assert acknowledged == set(range(count))
        await wait_until(lambda: len(received) == count, 60, f"all {count} messages")
    finally:
        down.set()
        if publishing is not None and not publishing.done():
            publishing.cancel()
            await asyncio.gather(publishing, return_exceptions=True)
        if is_down:
            await brokers("up")  # leave the broker running for the other tests
    log.warning("all received %.1fs after the broker began to go down", time.monotonic() - started)
    assert received == set(range(count))
    log.info("deliveries %d for %d messages", len(deliveries), count)
