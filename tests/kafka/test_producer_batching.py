"""The producer side builds record batches itself: order, acknowledgement, partitioning,
cancellation and flushing must behave as with one ``AIOKafkaProducer.send`` per record."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from binder.message import Message

from .helpers import BOOTSTRAP, make_binder, producer_spec, unique

pytestmark = pytest.mark.broker("kafka")


async def read_all(topic: str, count: int, timeout: float = 15.0) -> list[Any]:
    """Read ``count`` records of ``topic`` from the beginning with plain aiokafka."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=BOOTSTRAP,
        group_id=unique("reader"),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    records: list[Any] = []
    try:
        async with asyncio.timeout(timeout):
            while len(records) < count:
                batch = await consumer.getmany(timeout_ms=200)
                for part in batch.values():
                    records.extend(part)
    finally:
        await consumer.stop()
    return records


async def test_concurrent_publishes_over_many_batches_keep_publish_order(
    binder: Any, topic: str
) -> None:
    producer = await binder.bind_producer(producer_spec(topic))
    count = 3000  # about 20 batches of 16 KiB
    await asyncio.gather(
        *(producer.publish(Message(b"%06d" % i + b"x" * 100)) for i in range(count))
    )
    records = await read_all(topic, count)
    assert [int(r.value[:6]) for r in records] == list(range(count))


async def test_oversized_records_keep_their_place_in_the_order(topic: str) -> None:
    binder = make_binder(max_batch_size=1024)
    await binder.start()
    try:
        producer = await binder.bind_producer(producer_spec(topic))
        sizes = [50, 3000, 50, 50, 5000, 50] * 10
        await asyncio.gather(
            *(producer.publish(Message(b"%04d" % i + b"x" * size)) for i, size in enumerate(sizes))
        )
    finally:
        await binder.close()
    records = await read_all(topic, len(sizes))
    assert [int(r.value[:4]) for r in records] == list(range(len(sizes)))
    assert [len(r.value) - 4 for r in records] == sizes


async def test_keyed_records_land_where_plain_aiokafka_puts_them(binder: Any, topic: str) -> None:
    await binder.provision(topic, None, {"partitions": 4})
    producer = await binder.bind_producer(producer_spec(topic))
    keys = [f"customer-{i}" for i in range(40)]
    await asyncio.gather(*(producer.publish(Message(b"x", key=key)) for key in keys))
    plain = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP)
    await plain.start()
    try:
        acks = await asyncio.gather(
            *[await plain.send(topic, b"plain", key=key.encode()) for key in keys]
        )
        expected = {key: ack.partition for key, ack in zip(keys, acks, strict=True)}
    finally:
        await plain.stop()
    records = await read_all(topic, 2 * len(keys))
    ours = {r.key.decode(): r.partition for r in records if r.value == b"x"}
    assert ours == expected


async def test_cancelling_one_publisher_does_not_fail_its_batch_mates(
    binder: Any, topic: str
) -> None:
    producer = await binder.bind_producer(producer_spec(topic))
    await producer.publish(Message(b"999"))  # metadata known: later publishes never suspend
    tasks = [asyncio.ensure_future(producer.publish(Message(b"%03d" % i))) for i in range(100)]
    await asyncio.sleep(0)  # every record is appended to the same open batch
    tasks[10].cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(results[10], asyncio.CancelledError)
    assert all(r is None for i, r in enumerate(results) if i != 10), results
    records = await read_all(topic, 101)  # the cancelled record was already appended
    assert sorted(int(r.value) for r in records) == [*range(100), 999]


async def test_close_flushes_batches_still_lingering(topic: str) -> None:
    binder = make_binder(linger_ms=60_000)
    await binder.start()
    producer = await binder.bind_producer(producer_spec(topic))
    first = asyncio.ensure_future(producer.publish(Message(b"100")))
    await asyncio.wait_for(binder._producer.partitions_for(topic), 10)
    tasks = [asyncio.ensure_future(producer.publish(Message(b"%d" % i))) for i in range(50)]
    await asyncio.sleep(0)  # appended to a batch that would linger for a minute
    async with asyncio.timeout(10):
        await binder.close()
        assert await asyncio.gather(first, *tasks) == [None] * 51
    with pytest.raises(Exception, match="closed"):
        await producer.publish(Message(b"late"))
    records = await read_all(topic, 51)
    assert sorted(int(r.value) for r in records) == [*range(50), 100]


async def test_records_without_key_stick_to_a_partition_per_batch(binder: Any, topic: str) -> None:
    await binder.provision(topic, None, {"partitions": 4})
    producer = await binder.bind_producer(producer_spec(topic))
    count = 3000  # about 20 batches: each goes to one randomly chosen partition
    await asyncio.gather(
        *(producer.publish(Message(b"%06d" % i + b"x" * 100)) for i in range(count))
    )
    records = await read_all(topic, count)
    by_partition: dict[int, list[int]] = {}
    for r in records:
        by_partition.setdefault(r.partition, []).append(int(r.value[:6]))
    assert sorted(i for ids in by_partition.values() for i in ids) == list(range(count))
    assert len(by_partition) > 1, "keyless records should spread over the partitions"
    for ids in by_partition.values():
        assert ids == sorted(ids)  # publish order kept within each partition
