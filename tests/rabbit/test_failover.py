"""What a reconnect cannot restore at once must not stop the rest, and a publishing
channel whose publishes RabbitMQ rejects is replaced.

In a cluster, a classic queue whose home node died answers ``404 NOT_FOUND - home
node ... is down`` to every re-declaration until the node is back.  On one node the
same refusal comes from a queue re-declared with other arguments meanwhile, which is
how these tests provoke it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import kombu
import pytest

from binder.message import Message
from binder.spi import ConsumerSpec, ProducerSpec
from binder.testing import Collector, wait_until
from binders.rabbit.confirms import PublishFailed
from tests.rabbit.support import (
    URL,
    RabbitUser,
    bind,
    close_consumers,
    consumer_options,
    delete_later,
    fresh,
    make_binder,
    producer_options,
)

pytestmark = pytest.mark.broker("rabbit")


def _redeclare_with_other_arguments(queue: str, arguments: dict[str, Any]) -> None:
    """Another app takes the queue's name with other arguments (as guest)."""
    with kombu.Connection(URL) as conn:
        channel = conn.default_channel
        channel.queue_delete(queue)
        channel.queue_declare(queue, durable=True, auto_delete=False, arguments=arguments)


def _delete(queue: str) -> None:
    with kombu.Connection(URL) as conn:
        conn.default_channel.queue_delete(queue)


def _json(n: int) -> Message:
    return Message(str(n).encode(), content_type="text/plain")


async def test_a_queue_that_cannot_be_redeclared_waits_while_the_rest_flows(
    rabbit_user: RabbitUser, caplog: pytest.LogCaptureFixture
) -> None:
    await rabbit_user.allow(".*", ".*", ".*")
    binder = await make_binder(
        url=rabbit_user.url(), reconnect_initial=0.1, reconnect_multiplier=2.0, reconnect_max=0.5
    )
    try:
        await _stall_and_restore(binder, rabbit_user, caplog)
    finally:
        await close_consumers()
        await binder.close()


async def _stall_and_restore(
    binder: Any, rabbit_user: RabbitUser, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="binders.rabbit")
    first, second, group = fresh("stall-a"), fresh("stall-b"), "g"
    delete_later(
        exchanges=(first, second),
        queues=(f"{first}.{group}", f"{first}.{group}.dlq", f"{second}.{group}"),
    )
    got_first, got_second = Collector(), Collector()
    await bind(binder, ConsumerSpec("a", first, group, options=consumer_options()), got_first)
    await bind(binder, ConsumerSpec("b", second, group, options=consumer_options()), got_second)
    publish_first = await binder.bind_producer(
        ProducerSpec("pa", first, options=producer_options())
    )
    publish_second = await binder.bind_producer(
        ProducerSpec("pb", second, options=producer_options())
    )

    # The DLQ of the first consumer and the whole queue of the second one now clash.
    await asyncio.to_thread(
        _redeclare_with_other_arguments, f"{first}.{group}.dlq", {"x-max-length": 7}
    )
    await asyncio.to_thread(
        _redeclare_with_other_arguments, f"{second}.{group}", {"x-max-length": 7}
    )
    await rabbit_user.disconnect()

    def stalled(name: str) -> bool:
        return any(
            "the rest goes on" in r.getMessage() and name in r.getMessage() for r in caplog.records
        )

    await wait_until(
        lambda: stalled(f"queue '{first}.{group}.dlq'") and stalled(f"queue '{second}.{group}'"),
        15.0,
        "a warning naming both queues that could not be restored",
    )
    # The first consumer resumed although its DLQ is missing; publishing goes on.
    await publish_first.publish(_json(1))
    await got_first.wait_for(1)

    # Once the clash is gone, the next attempt restores the rest: the second consumer
    # resumes on its re-declared queue.
    await asyncio.to_thread(_delete, f"{first}.{group}.dlq")
    await asyncio.to_thread(_delete, f"{second}.{group}")
    await wait_until(
        lambda: any("restored everything" in r.getMessage() for r in caplog.records),
        15.0,
        "the stalled declarations restored",
    )
    await publish_second.publish(_json(2))
    await got_second.wait_for(1)
    assert [m.payload for m in got_second.messages] == [b"2"]


async def test_rejected_publishes_get_a_fresh_channel() -> None:
    """A queue that refuses overflow (``reject-publish``) makes RabbitMQ nack: the link
    replaces its publishing channel, and later publishes are confirmed on the new one."""
    binder = await make_binder()
    try:
        await _reject_then_renew(binder)
    finally:
        await binder.close()


async def _reject_then_renew(binder: Any) -> None:
    destination = fresh("nack")
    queue = f"{destination}.full"
    delete_later(exchanges=(destination,), queues=(queue,))
    producer = await binder.bind_producer(
        ProducerSpec("out", destination, options=producer_options())
    )

    def declare_full_queue() -> None:
        with kombu.Connection(URL) as conn:
            exchange = kombu.Exchange(destination, "topic", durable=True)
            kombu.Queue(
                queue,
                exchange,
                routing_key="#",
                queue_arguments={"x-max-length": 1, "x-overflow": "reject-publish"},
            )(conn.default_channel).declare()

    await asyncio.to_thread(declare_full_queue)
    publishing = binder._publisher._publishing
    opened = publishing.opened
    await producer.publish(_json(1))
    # Rejected: sent again on a fresh channel, and confirmed once the cause is gone.
    second = asyncio.ensure_future(producer.publish(_json(2)))
    await wait_until(lambda: publishing.opened > opened, 5.0, "a fresh publishing channel")
    assert not second.done()
    await asyncio.to_thread(_delete, queue)
    await asyncio.wait_for(second, 10.0)
    # Rejected every time: it fails after a few attempts, in one sentence.
    await asyncio.to_thread(declare_full_queue)
    await producer.publish(_json(3))
    with pytest.raises(PublishFailed, match="the broker rejected the message"):
        await asyncio.wait_for(producer.publish(_json(4)), 15.0)
