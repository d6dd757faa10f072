"""The Kafka binder against the SPI directly: round trip, groups, nack, dead letters."""

from __future__ import annotations

import asyncio
import struct
import time
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.coordinator.assignors.range import RangePartitionAssignor

from binder import App
from binder.errors import BinderError
from binder.message import Message
from binder.testing import consume, run_app, wait_until

from .helpers import BOOTSTRAP, SETTINGS, consumer_spec, make_binder, producer_spec, unique

pytestmark = pytest.mark.broker("kafka")


async def test_round_trip_keeps_payload_headers_key_content_type(binder: Any, topic: str) -> None:
    got: list[Message] = []

    async def handler(message: Message) -> None:
        got.append(message)

    consumer = await consume(binder, consumer_spec(topic), handler)
    producer = await binder.bind_producer(producer_spec(topic))
    sent = Message(
        payload=b'{"a": 1}',
        headers={"h1": "v1", "traceparent": "00-abc-def-01"},
        key="k1",
        content_type="application/json",
    )
    await producer.publish(sent)
    await wait_until(lambda: len(got) == 1, 15, "the message")
    received = got[0]
    assert received.payload == sent.payload
    assert received.headers == sent.headers
    assert received.key == "k1"
    assert received.content_type == "application/json"
    assert received.message_id == sent.message_id
    assert abs(received.timestamp - sent.timestamp) < 0.002
    assert received.destination == topic
    assert received.partition == 0
    assert received.delivery_attempt == 1
    await consumer.close()
    await consumer.close()


async def test_group_members_share_and_groups_each_get_a_copy(binder: Any) -> None:
    topic = unique("t")
    a, b = unique("a"), unique("b")
    await binder.provision(topic, a, {"partitions": 4})
    seen: dict[str, list[int]] = {"a1": [], "a2": [], "b": []}

    def collect(name: str) -> Any:
        async def handler(message: Message) -> None:
            seen[name].append(int(message.payload))

        return handler

    await consume(binder, consumer_spec(topic, a), collect("a1"))
    await consume(binder, consumer_spec(topic, a), collect("a2"))
    await consume(binder, consumer_spec(topic, b), collect("b"))
    producer = await binder.bind_producer(producer_spec(topic))
    await asyncio.gather(
        *(producer.publish(Message(payload=str(i).encode(), key=f"k{i}")) for i in range(100))
    )
    await wait_until(
        lambda: len(seen["a1"]) + len(seen["a2"]) >= 100 and len(seen["b"]) >= 100,
        15,
        "100 messages in each group",
    )
    assert sorted(seen["a1"] + seen["a2"]) == list(range(100))
    assert sorted(seen["b"]) == list(range(100))


async def test_a_group_is_shared_with_a_member_offering_only_javas_range(binder: Any) -> None:
    """Java clients offer range and cooperative-sticky by default; range is common ground."""
    topic, group = unique("t"), unique("g")
    await binder.provision(topic, group, {"partitions": 4})
    ours: list[int] = []

    async def handler(message: Message) -> None:
        ours.append(int(message.payload))

    await consume(binder, consumer_spec(topic, group), handler)
    other = AIOKafkaConsumer(
        topic,
        bootstrap_servers=BOOTSTRAP,
        group_id=group,
        auto_offset_reset="earliest",
        partition_assignment_strategy=(RangePartitionAssignor,),
    )
    await other.start()
    theirs: list[int] = []
    try:
        await wait_until(lambda: len(other.assignment()) == 2, 30, "the rebalance to range")
        producer = await binder.bind_producer(producer_spec(topic))
        await asyncio.gather(
            *(producer.publish(Message(payload=str(i).encode(), key=f"k{i}")) for i in range(100))
        )

        async def drain() -> None:
            while len(ours) + len(theirs) < 100:
                batch = await other.getmany(timeout_ms=100)
                theirs.extend(int(r.value) for records in batch.values() for r in records)

        await asyncio.wait_for(drain(), 30)
    finally:
        await other.stop()
    assert ours and theirs
    assert sorted(ours + theirs) == list(range(100))


async def test_a_group_without_a_common_assignment_protocol_is_one_clear_error(
    binder: Any,
) -> None:
    topic, group = unique("t"), unique("g")
    await binder.provision(topic, group, {"partitions": 2})
    other = AIOKafkaConsumer(
        topic,
        bootstrap_servers=BOOTSTRAP,
        group_id=group,
        partition_assignment_strategy=(RangePartitionAssignor,),
    )
    await other.start()
    try:
        await wait_until(lambda: other.assignment(), 30, "the range-only member's partitions")

        async def handler(message: Message) -> None:
            pass

        spec = consumer_spec(topic, group, options={"partition_assignment_strategy": "roundrobin"})
        with pytest.raises(BinderError, match="no partition assignment protocol in common") as err:
            await consume(binder, spec, handler)
        assert "offers roundrobin (partition_assignment_strategy)" in str(err.value)
    finally:
        await other.stop()


async def test_handler_failure_is_redelivered_in_order(binder: Any, topic: str) -> None:
    attempts: list[tuple[int, int]] = []

    async def handler(message: Message) -> None:
        value = int(message.payload)
        attempts.append((value, message.delivery_attempt))
        if value == 3 and message.delivery_attempt < 3:
            raise RuntimeError("boom")

    await consume(binder, consumer_spec(topic, unique("g")), handler)
    producer = await binder.bind_producer(producer_spec(topic))
    for i in range(6):
        await producer.publish(Message(payload=str(i).encode()))
    await wait_until(lambda: any(v == 5 for v, _ in attempts), 15, "all messages")
    assert attempts == [(0, 1), (1, 1), (2, 1), (3, 1), (3, 2), (3, 3), (4, 1), (5, 1)]


async def test_committed_offsets_survive_a_restart_of_the_consumer(binder: Any) -> None:
    topic, group = unique("t"), unique("g")
    first: list[int] = []

    async def record_first(message: Message) -> None:
        first.append(int(message.payload))

    consumer = await consume(binder, consumer_spec(topic, group), record_first)
    producer = await binder.bind_producer(producer_spec(topic))
    for i in range(10):
        await producer.publish(Message(payload=str(i).encode()))
    await wait_until(lambda: len(first) == 10, 15, "the first 10 messages")
    await consumer.close()
    for i in range(10, 15):
        await producer.publish(Message(payload=str(i).encode()))
    second: list[int] = []

    async def record_second(message: Message) -> None:
        second.append(int(message.payload))

    await consume(binder, consumer_spec(topic, group), record_second)
    await wait_until(lambda: len(second) >= 5, 15, "the 5 messages after the restart")
    assert second == list(range(10, 15))


async def test_dead_letter_has_kafka_and_failure_headers(binder: Any, topic: str) -> None:
    group = unique("g")
    app = App("kafka-dead-letters")

    @app.consumer(topic, group=group, max_attempts=1)
    async def reject(order: dict) -> None:
        raise ValueError("bad order")

    async with run_app(app, {"binders": {"kafka": SETTINGS}}) as harness:
        producer = await binder.bind_producer(producer_spec(topic))
        await producer.publish(
            Message(payload=b'{"id": 7}', key="o7", content_type="application/json")
        )
        await harness.wait_handled(1, timeout=15)
        assert len(harness.dead_letters(topic, group)) == 1
    letters: list[Message] = []

    async def read(message: Message) -> None:
        letters.append(message)

    await consume(
        binder,
        consumer_spec(
            f"error.{topic}.{group}", unique("dlq"), options={"start_offset": "earliest"}
        ),
        read,
    )
    await wait_until(lambda: len(letters) == 1, 15, "the dead letter")
    letter = letters[0]
    assert letter.payload == b'{"id": 7}'
    assert letter.key == "o7"
    assert letter.content_type == "application/json"
    assert letter.headers["x-original-topic"] == topic
    assert letter.headers["x-original-partition"] == "0"
    assert letter.headers["x-original-offset"] == "0"
    assert letter.headers["x-exception-message"] == "bad order"
    assert "ValueError" in letter.headers["x-exception-stacktrace"]
    assert letter.headers["x-original-group"] == group
    origin = letter.dead_letter
    assert origin is not None
    assert (origin.destination, origin.group, origin.partition, origin.offset) == (
        topic,
        group,
        0,
        0,
    )
    assert origin.exception_type == "builtins.ValueError"
    assert origin.attempts == 1
    assert origin.timestamp is not None and abs(origin.timestamp - time.time()) < 120


async def test_dead_letter_headers_are_in_spring_cloud_streams_binary_format(
    binder: Any, topic: str
) -> None:
    """Read raw: the record a Spring tool would read from the dead-letter topic."""
    group = unique("g")
    app = App("kafka-dead-letters")

    @app.consumer(topic, group=group, max_attempts=1)
    async def reject(order: dict) -> None:
        raise ValueError("bad order")

    async with run_app(app, {"binders": {"kafka": SETTINGS}}) as harness:
        producer = await binder.bind_producer(producer_spec(topic))
        await producer.publish(Message(payload=b"{}", content_type="application/json"))
        await harness.wait_handled(1, timeout=15)
    reader = AIOKafkaConsumer(
        f"error.{topic}.{group}", bootstrap_servers=BOOTSTRAP, auto_offset_reset="earliest"
    )
    await reader.start()
    try:
        record = await asyncio.wait_for(reader.getone(), 15)
    finally:
        await reader.stop()
    headers = dict(record.headers)
    assert headers["x-original-topic"] == topic.encode()
    assert headers["x-original-partition"] == struct.pack(">i", 0)
    assert headers["x-original-offset"] == struct.pack(">q", 0)
    assert len(headers["x-original-timestamp"]) == 8
    assert headers["x-original-timestamp-type"] == b"CreateTime"
    assert headers["x-exception-fqcn"] == b"builtins.ValueError"
    assert headers["x-exception-message"] == b"bad order"
    assert headers["kafka_dlt-original-consumer-group"] == group.encode()


async def test_anonymous_consumer_starts_at_latest(binder: Any, topic: str) -> None:
    producer = await binder.bind_producer(producer_spec(topic))
    await producer.publish(Message(payload=b"old"))
    got: list[bytes] = []

    async def handler(message: Message) -> None:
        got.append(message.payload)

    await consume(binder, consumer_spec(topic), handler)
    await producer.publish(Message(payload=b"new"))
    await wait_until(lambda: got == [b"new"], 15, "only the message published after binding")


async def test_partition_count_provisions_and_routes(binder: Any, topic: str) -> None:
    producer = await binder.bind_producer(producer_spec(topic, partition_count=3))
    got: list[Message] = []

    async def handler(message: Message) -> None:
        got.append(message)

    await consume(binder, consumer_spec(topic, unique("g")), handler)
    for p in range(3):
        await producer.publish(Message(payload=b"x", partition=p))
    await wait_until(lambda: len(got) == 3, 15, "one message per partition")
    assert sorted(m.partition for m in got) == [0, 1, 2]
    with pytest.raises(BinderError):
        await producer.publish(Message(payload=b"x", partition=3))


async def test_start_fails_clearly_when_kafka_is_unreachable() -> None:
    binder = make_binder(bootstrap_servers="127.0.0.1:1", request_timeout_ms=2000)
    with pytest.raises(BinderError, match="cannot connect to Kafka"):
        await binder.start()
    await binder.close()


async def test_partitioned_instances_split_the_partitions(binder: Any, topic: str) -> None:
    group = unique("g")
    producer = await binder.bind_producer(producer_spec(topic, partition_count=4))
    seen: dict[int, list[int]] = {0: [], 1: []}

    def collect(index: int) -> Any:
        async def handler(message: Message) -> None:
            seen[index].append(message.partition or 0)

        return handler

    for index in (0, 1):
        spec = consumer_spec(topic, group, instance_index=index, instance_count=2)
        await consume(binder, spec, collect(index))
    for p in range(4):
        for _ in range(3):
            await producer.publish(Message(b"x", partition=p))
    await wait_until(lambda: len(seen[0]) + len(seen[1]) == 12, 15, "12 messages")
    assert sorted(set(seen[0])) == [0, 2]
    assert sorted(set(seen[1])) == [1, 3]


async def test_secrets_stay_out_of_repr_and_errors() -> None:
    binder = make_binder(
        bootstrap_servers="127.0.0.1:1",
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="SCRAM-SHA-256",
        sasl_plain_username="alice",
        sasl_plain_password="s3cret-pw",
        request_timeout_ms=2000,
    )
    assert "s3cret-pw" not in repr(binder)
    with pytest.raises(BinderError) as raised:
        await binder.start()
    assert "s3cret-pw" not in str(raised.value)
    assert "alice" in str(raised.value)
    await binder.close()
