"""binders.memory specifics beyond the conformance suite."""

import asyncio
import logging

import pytest

from binder.errors import BinderError
from binder.message import Message
from binder.spi import ConsumerSpec, Delivery, Failure, ProducerSpec
from binder.testing import Collector, consume, wait_until
from binders.memory.binder import MemoryBinder


@pytest.fixture
async def binder() -> MemoryBinder:  # type: ignore[misc]
    instance = MemoryBinder("memory")
    await instance.start()
    yield instance
    await instance.close()


def consumer_spec(destination: str, **kwargs: object) -> ConsumerSpec:
    return ConsumerSpec(binding=f"{destination}-in-0", destination=destination, **kwargs)  # type: ignore[arg-type]


def producer_spec(destination: str, **kwargs: object) -> ProducerSpec:
    return ProducerSpec(binding=f"{destination}-out-0", destination=destination, **kwargs)  # type: ignore[arg-type]


def msg(n: int, **kwargs: object) -> Message:
    return Message(str(n).encode(), content_type="text/plain", **kwargs)  # type: ignore[arg-type]


# -- partitioned consumers (instance_index / instance_count) -----------------------------


async def test_instances_receive_only_their_partitions(binder: MemoryBinder) -> None:
    instances = [Collector(), Collector()]
    for index, handler in enumerate(instances):
        await consume(
            binder,
            consumer_spec("p", group="g", instance_index=index, instance_count=2),
            handler,
        )
    producer = await binder.bind_producer(producer_spec("p", partition_count=4))
    for n in range(12):
        await producer.publish(msg(n, partition=n % 4))
    # instance 0 owns partitions 0 and 2, instance 1 owns 1 and 3
    await instances[0].wait_for(6)
    await instances[1].wait_for(6)
    assert sorted({m.partition for m in instances[0].messages}) == [0, 2]  # type: ignore[type-var]
    assert sorted({m.partition for m in instances[1].messages}) == [1, 3]  # type: ignore[type-var]
    assert [int(m.payload) for m in instances[0].messages] == [0, 2, 4, 6, 8, 10]


async def test_instance_count_larger_than_partition_count_leaves_some_idle(
    binder: MemoryBinder,
) -> None:
    instances = [Collector() for _ in range(3)]
    for index, handler in enumerate(instances):
        await consume(
            binder,
            consumer_spec("q", group="g", instance_index=index, instance_count=3),
            handler,
        )
    producer = await binder.bind_producer(producer_spec("q", partition_count=2))
    for n in range(4):
        await producer.publish(msg(n, partition=n % 2))
    await instances[0].wait_for(2)
    await instances[1].wait_for(2)
    assert instances[2].messages == []
    assert not binder.broker.group_queue("q", "g").entries, "nothing left behind"


async def test_partition_owned_by_the_later_waiting_instance_is_delivered(
    binder: MemoryBinder,
) -> None:
    instances = [Collector(), Collector()]
    for index, handler in enumerate(instances):
        await consume(
            binder,
            consumer_spec("w", group="g", instance_index=index, instance_count=2),
            handler,
        )
    # regression: put() woke a single waiter; when that was instance 0, whose filter
    # rejects partition 1, instance 1 slept on and the message was never delivered.
    # Let both workers reach queue.wait(): instance 0 waits first.
    queue = binder.broker.group_queue("w", "g")
    await wait_until(lambda: len(queue._waiters) == 2)
    producer = await binder.bind_producer(producer_spec("w", partition_count=2))
    await producer.publish(msg(1, partition=1))  # owned by instance 1
    [got] = await instances[1].wait_for(1)
    assert got.partition == 1
    assert instances[0].messages == []


async def test_unpartitioned_consumer_in_a_partitioned_group_gets_everything(
    binder: MemoryBinder,
) -> None:
    handler = Collector()
    await consume(binder, consumer_spec("u", group="g", instance_count=1), handler)
    producer = await binder.bind_producer(producer_spec("u", partition_count=3))
    for n in range(6):
        await producer.publish(msg(n, partition=n % 3))
    assert [int(m.payload) for m in await handler.wait_for(6)] == list(range(6))


# -- provisioning ------------------------------------------------------------------------


async def test_required_groups_keep_messages_published_before_the_consumer_binds(
    binder: MemoryBinder,
) -> None:
    producer = await binder.bind_producer(producer_spec("orders", required_groups=("billing",)))
    for n in range(3):
        await producer.publish(msg(n, headers={"n": str(n)}, key=f"k{n}"))
    handler = Collector()
    await consume(binder, consumer_spec("orders", group="billing"), handler)
    received = await handler.wait_for(3)
    assert [m.text() for m in received] == ["0", "1", "2"]
    assert [m.headers["n"] for m in received] == ["0", "1", "2"]
    assert [m.key for m in received] == ["k0", "k1", "k2"]
    assert all(m.destination == "orders" for m in received)


async def test_provisioned_group_keeps_messages_too(binder: MemoryBinder) -> None:
    await binder.provision("orders", "billing", {})
    producer = await binder.bind_producer(producer_spec("orders"))
    await producer.publish(msg(1))
    handler = Collector()
    await consume(binder, consumer_spec("orders", group="billing"), handler)
    assert [m.text() for m in await handler.wait_for(1)] == ["1"]


async def test_without_a_group_queue_early_messages_are_not_kept(binder: MemoryBinder) -> None:
    producer = await binder.bind_producer(producer_spec("orders"))
    await producer.publish(msg(1))
    handler = Collector()
    await consume(binder, consumer_spec("orders", group="late"), handler)
    await producer.publish(msg(2))
    assert [m.text() for m in await handler.wait_for(1)] == ["2"]
    assert not binder.broker.group_queue("orders", "late").entries


# -- anonymous subscribers ---------------------------------------------------------------


async def test_anonymous_queue_is_dropped_on_close(binder: MemoryBinder) -> None:
    first, second = Collector(), Collector()
    one = await consume(binder, consumer_spec("news"), first)
    two = await consume(binder, consumer_spec("news"), second)
    topic = binder.broker.topics["news"]
    assert len(topic.anonymous) == 2
    await one.close()
    assert len(topic.anonymous) == 1
    producer = await binder.bind_producer(producer_spec("news"))
    await producer.publish(msg(1))
    await second.wait_for(1)
    assert first.messages == []
    await one.close()  # idempotent
    await two.close()
    assert topic.anonymous == {}
    await producer.publish(msg(2))
    assert topic.anonymous == {} and topic.groups == {}, "nothing accumulates after close"


async def test_anonymous_subscribers_each_get_a_copy(binder: MemoryBinder) -> None:
    handlers = [Collector(), Collector()]
    for handler in handlers:
        await consume(binder, consumer_spec("fan"), handler)
    producer = await binder.bind_producer(producer_spec("fan"))
    await producer.publish(msg(7, headers={"h": "1"}))
    a = await handlers[0].wait_for(1)
    b = await handlers[1].wait_for(1)
    assert a[0].text() == b[0].text() == "7"
    assert a[0] is not b[0]
    assert a[0].headers is not b[0].headers


# -- isolation -----------------------------------------------------------------------------


async def test_two_binders_share_nothing() -> None:
    first, second = MemoryBinder("a"), MemoryBinder("b")
    await first.start()
    await second.start()
    try:
        assert first.broker is not second.broker
        in_first, in_second = Collector(), Collector()
        await consume(first, consumer_spec("orders", group="g"), in_first)
        await consume(second, consumer_spec("orders", group="g"), in_second)
        producer = await first.bind_producer(producer_spec("orders"))
        await producer.publish(msg(1))
        await in_first.wait_for(1)
        assert in_second.messages == []
        assert not second.broker.group_queue("orders", "g").entries
        binding = await consume(first, consumer_spec("dl", group="g"), Collector())
        await binding.dead_letter(Delivery(msg(2)), Failure("E", "m", "", 1, "dl", "g"))
        assert len(first.dead_letters("dl", "g")) == 1
        assert second.dead_letters("dl", "g") == []
    finally:
        await first.close()
        await second.close()


# -- acknowledgement, dead letters, closing ---------------------------------------------


async def test_nack_redelivers_with_increasing_delivery_attempt(binder: MemoryBinder) -> None:
    handler = Collector(fail=lambda m: m.delivery_attempt < 3)
    await consume(binder, consumer_spec("r", group="g"), handler)
    producer = await binder.bind_producer(producer_spec("r"))
    await producer.publish(msg(1))
    await handler.wait_for(1)
    assert [m.delivery_attempt for m in handler.attempts] == [1, 2, 3]
    assert handler.messages[0].delivery_attempt == 3


async def test_dead_letter_is_stored_and_published_to_the_dlq_destination(
    binder: MemoryBinder,
) -> None:
    dlq, named = Collector(), Collector()
    await consume(binder, consumer_spec("orders.billing.dlq"), dlq)
    await consume(binder, consumer_spec("parking"), named)
    conventional = await consume(binder, consumer_spec("orders", group="billing"), Collector())
    custom = await consume(
        binder, consumer_spec("orders", group="audit", dead_letter="parking"), Collector()
    )
    original = msg(5, headers={"tenant": "t"}, key="k", delivery_attempt=3)
    failure = Failure.from_exception(
        ValueError("boom"), attempts=3, destination="orders", group="billing"
    )
    await conventional.dead_letter(Delivery(original), failure)
    await custom.dead_letter(Delivery(original), failure)

    [dead] = await dlq.wait_for(1)
    assert dead.text() == "5" and dead.key == "k" and dead.message_id == original.message_id
    assert dead.headers["tenant"] == "t"
    assert dead.headers["x-exception-type"] == "builtins.ValueError"
    assert dead.headers["x-delivery-attempts"] == "3"
    assert dead.destination == "orders.billing.dlq"
    assert [m.text() for m in await named.wait_for(1)] == ["5"]
    assert [m.text() for m in binder.dead_letters("orders", "billing")] == ["5"]
    assert [m.text() for m in binder.dead_letters("orders", "audit")] == ["5"]
    assert "x-exception-type" not in original.headers, "the original is not mutated"


async def test_publish_after_producer_close_is_refused(binder: MemoryBinder) -> None:
    producer = await binder.bind_producer(producer_spec("c"))
    await producer.close()
    await producer.close()
    with pytest.raises(BinderError, match="closed"):
        await producer.publish(msg(1))


async def test_close_waits_for_the_in_flight_handler(binder: MemoryBinder) -> None:
    started, release = asyncio.Event(), asyncio.Event()
    finished: list[str] = []

    async def slow(message: Message) -> None:
        started.set()
        await release.wait()
        finished.append(message.text())

    consumer = await consume(binder, consumer_spec("slow", group="g"), slow)
    producer = await binder.bind_producer(producer_spec("slow"))
    await producer.publish(msg(1))
    await producer.publish(msg(2))
    await asyncio.wait_for(started.wait(), 2.0)
    closing = asyncio.create_task(consumer.close())
    await asyncio.sleep(0)  # one loop turn
    assert not closing.done()
    release.set()
    await asyncio.wait_for(closing, 2.0)
    assert finished == ["1"], "the in-flight message finished, the next was not taken"
    assert [e.message.text() for e in binder.broker.group_queue("slow", "g").entries] == ["2"]


async def test_binder_close_closes_its_consumers_and_is_idempotent() -> None:
    binder = MemoryBinder()
    await binder.start()
    await consume(binder, consumer_spec("x"), Collector())
    await consume(binder, consumer_spec("x", group="g"), Collector())
    await binder.close()
    await binder.close()
    assert binder.broker.topics["x"].anonymous == {}
    assert binder._consumers == []


async def test_publishing_where_nothing_receives_warns_once_per_binding(
    caplog: pytest.LogCaptureFixture,
) -> None:
    binder = MemoryBinder("memory")
    await binder.start()
    lonely = await binder.bind_producer(ProducerSpec(binding="lonely-out-0", destination="void"))
    with caplog.at_level(logging.WARNING, logger="binders.memory"):
        for n in range(3):
            await lonely.publish(Message(b"%d" % n))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "binding lonely-out-0: nothing receives what is published to 'void'" in warnings[0]
    caplog.clear()
    await binder.provision("heard", "g", {})
    heard = await binder.bind_producer(ProducerSpec(binding="heard-out-0", destination="heard"))
    with caplog.at_level(logging.WARNING, logger="binders.memory"):
        await heard.publish(Message(b"x"))
    assert not caplog.records
    await binder.close()
