"""A broker restart (``rabbitmqctl stop_app`` / ``start_app``) in the middle of a stream.

2,000 persistent messages go to a durable group queue while the broker's app is
stopped and started again.  The binder must reconnect by itself: every publish it
reported as done was confirmed (so it survived the restart), every publish it had not
confirmed is sent again, and every message is handled at least once.
"""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from binder.message import Message
from binder.spi import ConsumerSpec, ProducerSpec
from binder.testing import wait_until
from tests.rabbit.support import (
    bind,
    close_consumers,
    consumer_options,
    fresh,
    make_binder,
    producer_options,
    rabbitmqctl,
    require_rabbitmqctl,
)

pytestmark = pytest.mark.broker("rabbit")

COUNT = 2000
RESTART_AFTER = 600
HOLD_FROM = 400


def _restart_app() -> None:
    rabbitmqctl("stop_app")
    rabbitmqctl("start_app")
    rabbitmqctl("await_startup")


async def test_stream_survives_a_broker_restart() -> None:
    """Half the stream before the restart (with deliveries in flight), half during it."""
    require_rabbitmqctl()
    destination, group = fresh("restart"), fresh("g")
    binder = await make_binder(reconnect_initial=0.1, reconnect_max=0.5, publish_timeout=60.0)
    seen: dict[int, int] = {}
    dropped = asyncio.Event()

    async def handle(message: Message) -> None:
        n = int(message.payload)
        if n >= HOLD_FROM:  # hold deliveries unacked until the connection is gone
            await dropped.wait()
        seen[n] = seen.get(n, 0) + 1

    restart: asyncio.Task[None] | None = None
    try:
        await bind(
            binder,
            ConsumerSpec("in", destination, group, prefetch=50, options=consumer_options()),
            handle,
        )
        anonymous: list[int] = []

        async def subscriber(message: Message) -> None:
            anonymous.append(int(message.payload))

        await bind(binder, ConsumerSpec("sub", destination, options=consumer_options()), subscriber)
        producer = await binder.bind_producer(
            ProducerSpec("out", destination, required_groups=(group,), options=producer_options())
        )
        window = asyncio.Semaphore(100)
        confirmed = 0

        async def send(n: int) -> None:
            nonlocal confirmed
            async with window:
                await producer.publish(Message(str(n).encode(), content_type="text/plain"))
                confirmed += 1

        first = [asyncio.create_task(send(n)) for n in range(COUNT // 2)]
        await wait_until(lambda: confirmed >= RESTART_AFTER, 30.0, "the first publishes")
        restart = asyncio.create_task(asyncio.to_thread(_restart_app))
        consumer_link = binder._consumer_link
        assert consumer_link is not None
        await wait_until(
            lambda: not consumer_link.connected and not binder._publisher.connected,
            60.0,
            "the connections to drop",
        )
        dropped.set()
        second = [asyncio.create_task(send(n)) for n in range(COUNT // 2, COUNT)]
        await asyncio.gather(*first, *second)
        await restart
        await wait_until(lambda: len(seen) == COUNT, 60.0, f"{COUNT} distinct messages")
        assert sorted(seen) == list(range(COUNT))
        assert binder._publisher.reconnects >= 1
        assert consumer_link.reconnects >= 1
        # The deliveries held unacked across the restart came again.
        assert max(seen.values()) >= 2
        # The anonymous subscriber's exclusive queue was declared again on the new
        # connection: it gets what is published after that (what was published while it
        # had no queue is gone, as for any anonymous subscriber).
        await producer.publish(Message(str(COUNT).encode(), content_type="text/plain"))
        await wait_until(lambda: COUNT in anonymous, 30.0, "the anonymous subscriber")
    finally:
        if restart is not None:
            with contextlib.suppress(Exception):
                await restart
            with contextlib.suppress(Exception):
                await asyncio.to_thread(rabbitmqctl, "start_app")
        await close_consumers()
        await binder.close()


async def test_publish_during_an_outage_fails_instead_of_reporting_sent() -> None:
    """With the broker app down past ``publish_timeout`` a publish raises, and the
    binder is back to normal once the broker is."""
    require_rabbitmqctl()
    from binder.errors import BinderError

    destination = fresh("outage")
    binder = await make_binder(reconnect_initial=0.1, reconnect_max=0.3, publish_timeout=1.0)
    stopped = False
    try:
        producer = await binder.bind_producer(
            ProducerSpec("out", destination, options=producer_options())
        )
        await asyncio.to_thread(rabbitmqctl, "stop_app")
        stopped = True
        await wait_until(lambda: not binder._publisher.connected, 30.0, "the connection to drop")
        with pytest.raises(BinderError):
            await producer.publish(Message(b"lost?", content_type="text/plain"))
        await asyncio.to_thread(rabbitmqctl, "start_app")
        await asyncio.to_thread(rabbitmqctl, "await_startup")
        stopped = False
        received: list[Message] = []

        async def handle(message: Message) -> None:
            received.append(message)

        await bind(binder, ConsumerSpec("in", destination, options=consumer_options()), handle)
        await producer.publish(Message(b"after", content_type="text/plain"))
        await wait_until(lambda: received, 30.0, "a message after the outage")
        assert [m.payload for m in received] == [b"after"]
    finally:
        if stopped:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(rabbitmqctl, "start_app")
        await close_consumers()
        await binder.close()
