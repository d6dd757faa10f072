"""Message sizes: the producer's max_request_size (binder setting, binding override),
the topic's max.message.bytes, dead letters of large records, and fetch sizes.

Every refusal names the setting to raise; a batch the broker refuses does not break
its partition for the records after it.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from binder.app import App
from binder.message import Message
from binder.testing import consume, run_app, wait_until
from binders.kafka.errors import RecordTooLarge

from .helpers import SETTINGS, consumer_spec, make_binder, producer_spec, unique

pytestmark = pytest.mark.broker("kafka")

MIB = 1024 * 1024


async def read(binder: Any, topic: str, count: int, **options: Any) -> list[Message]:
    """``count`` records of ``topic`` from the beginning, through the binder."""
    got: list[Message] = []

    async def collect(message: Message) -> None:
        got.append(message)

    spec = consumer_spec(topic, unique("reader"), options={"start_offset": "earliest", **options})
    bound = await consume(binder, spec, collect)
    try:
        await wait_until(lambda: len(got) >= count, 15, f"{count} record(s) of {topic}")
    finally:
        await bound.close(timeout=5)
    return got


async def test_binding_max_request_size_overrides_the_binders(binder: Any, topic: str) -> None:
    roomy = {"config": {"max.message.bytes": 4 * MIB}}
    await binder.provision(topic, None, roomy)
    blob = os.urandom(2 * MIB)
    plain = await binder.bind_producer(producer_spec(topic))
    with pytest.raises(RecordTooLarge, match=r"max_request_size \(1048576 bytes\)") as refused:
        plain.publish(Message(blob))
    assert f"producer binding '{topic}-out'" in str(refused.value)

    big = await binder.bind_producer(producer_spec(topic, options={"max_request_size": 3 * MIB}))
    await big.publish(Message(blob))
    small = await binder.bind_producer(producer_spec(topic, options={"max_request_size": 1000}))
    with pytest.raises(RecordTooLarge, match=r"max_request_size \(1000 bytes\)"):
        small.publish(Message(b"x" * 2000))

    [record] = await read(binder, topic, 1)
    assert record.payload == blob


async def test_the_topics_max_message_bytes_is_checked_before_sending(topic: str) -> None:
    binder = make_binder(max_request_size=10 * MIB)
    await binder.start()
    try:
        await binder.provision(topic, None, {"config": {"max.message.bytes": 100_000}})
        producer = await binder.bind_producer(producer_spec(topic))
        with pytest.raises(RecordTooLarge, match=r"max\.message\.bytes of Kafka topic"):
            producer.publish(Message(b"x" * 200_000))
        await producer.publish(Message(b"fits"))
        [record] = await read(binder, topic, 1)
        assert record.payload == b"fits"
    finally:
        await binder.close()


async def test_a_batch_the_broker_refuses_leaves_the_partition_usable(topic: str) -> None:
    # With compression the broker judges the size (compressed batches may fit); random
    # bytes do not compress, so it refuses. The idempotent producer must give back the
    # batch's sequence number, or every later record of the partition would fail.
    binder = make_binder(max_request_size=10 * MIB, compression_type="gzip")
    await binder.start()
    try:
        await binder.provision(topic, None, {"config": {"max.message.bytes": 100_000}})
        producer = await binder.bind_producer(producer_spec(topic))
        await producer.publish(Message(b"before"))  # the broker now tracks the sequence
        with pytest.raises(RecordTooLarge, match=r"max\.message\.bytes") as refused:
            await producer.publish(Message(os.urandom(300_000)))
        assert "message.max.bytes" in str(refused.value)
        for n in range(3):
            await producer.publish(Message(b"after %d" % n))
        records = await read(binder, topic, 4)
        assert [r.payload for r in records] == [b"before", b"after 0", b"after 1", b"after 2"]
    finally:
        await binder.close()


async def test_a_too_large_output_dead_letters_its_input_naming_the_setting(topic: str) -> None:
    source, target, group = topic, unique("out"), unique("g")
    app = App("kafka-too-large-output")

    @app.function(input=source, output=target, group=group, max_attempts=2, backoff_initial=0.01)
    def inflate(payload: bytes) -> Message:
        size = 2 * MIB if payload == b"big" else 10
        return Message(b"y" * size, content_type="application/octet-stream")

    async with run_app(app, {"binders": {"kafka": SETTINGS}}) as harness:
        await harness.send(source, b"big", content_type="application/octet-stream")
        await harness.send(source, b"small", content_type="application/octet-stream")
        await harness.wait_handled(2, timeout=15)
        [letter] = harness.dead_letters(source, group)
        out = await harness.receive(target, timeout=15)
    assert letter.payload == b"big"
    reason = letter.headers["x-exception-message"]
    assert "max_request_size (1048576 bytes)" in reason, reason
    assert "producer binding 'inflate-out-0'" in reason, reason
    # too large is permanent: no second attempt despite max_attempts=2
    assert letter.headers["x-delivery-attempts"] == "1"
    assert out.payload == b"y" * 10  # the stream goes on


async def test_a_large_record_can_be_dead_lettered(binder: Any, topic: str) -> None:
    group = unique("g")
    app = App("kafka-large-dead-letter")

    @app.consumer(topic, group=group, max_attempts=1)
    def reject(payload: bytes) -> None:
        raise ValueError("rejected")

    config = {
        "binders": {"kafka": SETTINGS},
        "bindings": {"reject-in-0": {"kafka": {"config": {"max.message.bytes": 3 * MIB}}}},
    }
    blob = os.urandom(2 * MIB)
    async with run_app(app, config) as harness:
        producer = await binder.bind_producer(
            producer_spec(topic, options={"max_request_size": 3 * MIB})
        )
        await producer.publish(Message(blob))
        await harness.wait_handled(1, timeout=15)
    dead_letters = f"error.{topic}.{group}"
    config = await binder.topic_config(dead_letters)
    assert int(config["max.message.bytes"]) == 3 * MIB + 65536
    [letter] = await read(binder, dead_letters, 1)
    assert letter.payload == blob
    assert letter.headers["x-exception-message"] == "rejected"


async def test_small_fetch_sizes_still_deliver_larger_records(binder: Any, topic: str) -> None:
    await binder.provision(topic, None, {"config": {"max.message.bytes": 3 * MIB}})
    producer = await binder.bind_producer(
        producer_spec(topic, options={"max_request_size": 3 * MIB})
    )
    blob = os.urandom(2 * MIB)
    await producer.publish(Message(blob))
    await producer.publish(Message(b"next"))
    records = await read(binder, topic, 2, max_partition_fetch_bytes=1024, fetch_max_bytes=1024)
    assert [r.payload for r in records] == [blob, b"next"]
