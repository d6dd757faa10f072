"""A broker restart in the middle of a stream of 2,000 messages loses nothing."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path
from typing import Any

import pytest

from binder.message import Message
from binder.testing import consume

from .helpers import consumer_spec, producer_spec, unique, wait_for

pytestmark = pytest.mark.broker("kafka")

BROKERS = Path(__file__).resolve().parents[2] / "scripts" / "brokers"
log = logging.getLogger(__name__)


async def restart_kafka() -> None:
    """``scripts/brokers restart kafka``; fails the test if it does not come back."""
    process = await asyncio.create_subprocess_exec(
        str(BROKERS),
        "restart",
        "kafka",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, output.decode(errors="replace")


async def test_broker_restart_mid_stream_loses_nothing(binder: Any, topic: str) -> None:
    count, group = 2000, unique("g")
    await binder.provision(topic, group, {"partitions": 3})
    producer = await binder.bind_producer(producer_spec(topic))
    received: set[int] = set()
    deliveries: list[int] = []

    async def handler(message: Message) -> None:
        value = int(message.payload)
        received.add(value)
        deliveries.append(value)

    await consume(binder, consumer_spec(topic, group, concurrency=3), handler)

    async def publish(i: int) -> None:
        # At-least-once on the producing side too: a publish the broker did not
        # acknowledge (because it was down) is sent again.
        while True:
            try:
                await producer.publish(Message(str(i).encode(), key=f"k{i % 30}"))
                return
            except Exception as exc:
                log.info("publish %d failed (%s), again", i, type(exc).__name__)
                await asyncio.sleep(0.2)

    published: list[int] = []

    async def publish_all() -> None:
        # Paced (about 1,000 messages a second) so the restart falls mid-stream.
        for start in range(0, count, 20):
            await asyncio.gather(*(publish(i) for i in range(start, start + 20)))
            published.append(20)
            await asyncio.sleep(0.02)

    publishing = asyncio.create_task(publish_all())
    try:
        await wait_for(lambda: len(received) >= 400, what="the stream to be flowing")
        assert sum(published) < count, "the restart should happen mid-stream"
        started = time.monotonic()
        await restart_kafka()
        log.warning("restart took %.1fs", time.monotonic() - started)
        await asyncio.wait_for(publishing, 60)
        log.warning("publishing done %.1fs after the restart began", time.monotonic() - started)
        await wait_for(lambda: len(received) == count, timeout=60, what="all 2000 messages")
    finally:
        publishing.cancel()
        with contextlib.suppress(BaseException):
            await publishing
    log.warning("all received %.1fs after the restart began", time.monotonic() - started)
    assert received == set(range(count))
    log.info("deliveries %d for %d messages", len(deliveries), count)
