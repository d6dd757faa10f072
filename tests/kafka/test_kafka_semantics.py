"""What users choose Kafka for: order per key across partitions, rebalancing without
loss, replay, compacted topics, and interoperability with plain aiokafka clients."""

from __future__ import annotations

import asyncio
import json
import random
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from binder.message import Message
from binder.partitioning import partition_for
from binder.testing import consume, wait_until

from .helpers import BOOTSTRAP, consumer_spec, producer_spec, unique

pytestmark = pytest.mark.broker("kafka")


async def test_order_per_key_across_partitions_with_concurrency(binder: Any, topic: str) -> None:
    partitions, keys, per_key = 4, [f"key-{k}" for k in range(8)], 40
    producer = await binder.bind_producer(producer_spec(topic, partition_count=partitions))
    seen: dict[str, list[int]] = {key: [] for key in keys}
    active, peak = 0, 0

    async def handler(message: Message) -> None:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await asyncio.sleep(random.random() / 500)  # handler work of random length
        body = message.json()
        seen[body["key"]].append(body["seq"])
        active -= 1

    await consume(binder, consumer_spec(topic, unique("g"), concurrency=4), handler)
    publishes = []
    for seq in range(per_key):
        for key in keys:
            body = json.dumps({"key": key, "seq": seq}).encode()
            message = Message(body, key=key, partition=partition_for(key, partitions))
            publishes.append(producer.publish(message))
    await asyncio.gather(*publishes)
    total = len(keys) * per_key
    await wait_until(lambda: sum(map(len, seen.values())) >= total, 15, f"{total} messages")
    for key in keys:
        assert seen[key] == list(range(per_key)), f"order broken for {key}"
    assert peak > 1, "handlers of different partitions should run concurrently"


async def test_member_joining_mid_stream_loses_nothing(binder: Any, topic: str) -> None:
    group, count, prefetch = unique("g"), 600, 20
    await binder.provision(topic, group, {"partitions": 4})
    producer = await binder.bind_producer(producer_spec(topic))
    first: list[int] = []
    second: list[int] = []
    revoking = asyncio.Event()
    held = 0

    async def first_member(message: Message) -> None:
        nonlocal held
        if len(first) >= 100:  # from then on, held until the rebalance takes partitions
            held += 1
            await revoking.wait()
        first.append(int(message.payload))

    async def second_member(message: Message) -> None:
        second.append(int(message.payload))

    async def publish(numbers: range) -> None:
        for start in range(numbers.start, numbers.stop, 50):
            await asyncio.gather(
                *(
                    producer.publish(Message(str(i).encode(), key=f"k{i % 16}"))
                    for i in range(start, min(start + 50, numbers.stop))
                )
            )

    spec = consumer_spec(topic, group, concurrency=2, prefetch=prefetch)
    member = await consume(binder, spec, first_member)
    engine = member.dispatcher
    revoke = engine.revoke

    async def revoked(lanes: Any) -> None:
        revoking.set()  # the rebalance began: let the held handlers finish
        await revoke(lanes)

    engine.revoke = revoked  # type: ignore[method-assign]
    # Half the stream before the second member joins, half after; and when it joins,
    # the first member has handled 100 and holds the next ones unsettled (up to its
    # prefetch): the join falls mid-stream by construction, not by timing.
    await publish(range(0, count // 2))
    await wait_until(lambda: held > 0, 15, "the first member to handle 100 and hold the next")
    assert 0 < engine.in_flight <= prefetch
    await consume(
        binder, consumer_spec(topic, group, concurrency=2, prefetch=prefetch), second_member
    )
    assert revoking.is_set(), "the join should have revoked the first member's partitions"
    await publish(range(count // 2, count))
    await wait_until(lambda: set(first) | set(second) >= set(range(count)), 15, "every message")
    assert second, "the second member should have received partitions"
    # At the revocation the binding releases what the first member had not started,
    # waits for the handlers running, and commits everything its engine settled before
    # giving the partitions up.  So only records in flight at the first member then
    # (at most its prefetch) can be handled twice; anything committed is not fetched
    # again.  (The second member never loses partitions.)
    duplicates = len(first) + len(second) - count
    assert duplicates <= prefetch, f"{duplicates} duplicates: more than the prefetch bound"


async def test_replay_from_earliest_rebuilds_the_same_state(binder: Any, topic: str) -> None:
    group = unique("g")
    producer = await binder.bind_producer(producer_spec(topic))
    for i in range(30):
        await producer.publish(Message(json.dumps({"n": i}).encode(), key=f"acct-{i % 5}"))

    def builder(state: dict[str, int], counter: list[int]) -> Any:
        async def handler(message: Message) -> None:
            state[message.key or ""] = state.get(message.key or "", 0) + message.json()["n"]
            counter.append(1)

        return handler

    state1: dict[str, int] = {}
    done1: list[int] = []
    consumer = await consume(binder, consumer_spec(topic, group), builder(state1, done1))
    await wait_until(lambda: len(done1) == 30, 15, "30 messages")
    await consumer.wait_committed()
    await consumer.close()

    offsets = await binder.reset_offsets(topic, group, "earliest")
    assert offsets == {0: 0}
    state2: dict[str, int] = {}
    done2: list[int] = []
    await consume(binder, consumer_spec(topic, group), builder(state2, done2))
    await wait_until(lambda: len(done2) == 30, 15, "30 messages replayed")
    assert state2 == state1


async def test_reset_offsets_option_replays_from_a_timestamp(binder: Any, topic: str) -> None:
    producer = await binder.bind_producer(producer_spec(topic))
    now = time.time()
    for i in range(5):
        await producer.publish(Message(str(i).encode(), timestamp=now - 120 + i))
    for i in range(5, 10):
        await producer.publish(Message(str(i).encode(), timestamp=now + i))
    moment = datetime.fromtimestamp(now - 60, UTC).isoformat()
    got: list[int] = []

    async def handler(message: Message) -> None:
        got.append(int(message.payload))

    group = unique("g")
    await consume(binder, consumer_spec(topic, group, options={"reset_offsets": moment}), handler)
    await wait_until(lambda: len(got) >= 5, 15, "5 messages")
    assert got == [5, 6, 7, 8, 9]


async def test_compacted_topic_keeps_the_last_value_per_key(binder: Any, topic: str) -> None:
    config = {"cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0.01"}
    await binder.provision(topic, None, {"config": config})
    described = await binder.topic_config(topic)
    assert described["cleanup.policy"] == "compact"
    producer = await binder.bind_producer(producer_spec(topic))
    for value, key in enumerate(["a", "b", "a", "c", "b", "a"]):
        await producer.publish(Message(str(value).encode(), key=key))
    table: dict[str, int] = {}
    count: list[int] = []

    async def handler(message: Message) -> None:
        table[message.key or ""] = int(message.payload)
        count.append(1)

    await consume(
        binder, consumer_spec(topic, unique("g"), options={"reset_offsets": "earliest"}), handler
    )
    await wait_until(lambda: table == {"a": 5, "b": 4, "c": 3}, 15, "the last-value table")


async def test_plain_aiokafka_producer_to_eventbinder_consumer(binder: Any, topic: str) -> None:
    got: list[Message] = []

    async def handler(message: Message) -> None:
        got.append(message)

    await consume(binder, consumer_spec(topic), handler)
    plain = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP)
    await plain.start()
    try:
        await plain.send_and_wait(
            topic,
            json.dumps({"sku": "X1", "qty": 2}).encode(),
            key=b"order-9",
            headers=[("contentType", b"application/json"), ("tenant", b"acme")],
        )
        await plain.send_and_wait(topic, b'{"bare": true}')
    finally:
        await plain.stop()
    await wait_until(lambda: len(got) == 2, 15, "both messages")
    first, bare = got
    assert first.json() == {"sku": "X1", "qty": 2}
    assert first.key == "order-9"
    assert first.content_type == "application/json"
    assert first.headers == {"tenant": "acme"}
    assert first.message_id == f"{topic}-0-0"
    assert bare.json() == {"bare": True}
    assert bare.key is None and bare.content_type is None


async def test_eventbinder_producer_to_plain_aiokafka_consumer(binder: Any, topic: str) -> None:
    producer = await binder.bind_producer(producer_spec(topic))
    sent = Message(
        b'{"id": 3}', key="k3", content_type="application/json", headers={"tenant": "acme"}
    )
    await producer.publish(sent)
    plain = AIOKafkaConsumer(
        topic, bootstrap_servers=BOOTSTRAP, auto_offset_reset="earliest", group_id=unique("p")
    )
    await plain.start()
    try:
        record = await asyncio.wait_for(plain.getone(), 15)
    finally:
        await plain.stop()
    assert json.loads(record.value) == {"id": 3}
    assert record.key == b"k3"
    headers = dict(record.headers)
    assert headers["contentType"] == b"application/json"
    assert headers["messageId"] == sent.message_id.encode()
    assert headers["tenant"] == b"acme"
    assert abs(record.timestamp / 1000 - sent.timestamp) < 0.002


async def test_slow_handler_keeps_the_buffer_bounded(binder: Any, topic: str) -> None:
    count, prefetch = 300, 10
    producer = await binder.bind_producer(producer_spec(topic))
    await asyncio.gather(*(producer.publish(Message(b"x" * 100)) for _ in range(count)))
    release = asyncio.Event()
    handled: list[int] = []

    async def handler(message: Message) -> None:
        await release.wait()
        handled.append(1)

    consumer = await consume(binder, consumer_spec(topic, unique("g"), prefetch=prefetch), handler)
    engine = consumer.dispatcher
    # Unsettled deliveries, counted at every delivery into the engine.  While the
    # handler is held nothing settles, so what was taken before this wrapper is
    # counted by its first figure.
    unsettled = [engine.in_flight]
    deliver = engine.deliver

    def counting(delivery: Any) -> None:
        deliver(delivery)
        unsettled.append(engine.in_flight)

    engine.deliver = counting  # type: ignore[method-assign]
    await wait_until(lambda: engine.in_flight == prefetch, 15, f"the window of {prefetch} to fill")
    release.set()
    await wait_until(lambda: len(handled) == count, 15, f"{count} messages handled")
    assert max(unsettled) == prefetch, f"{max(unsettled)} unsettled at once"


async def test_spring_style_quoted_content_type_is_understood(binder: Any, topic: str) -> None:
    got: list[Message] = []

    async def handler(message: Message) -> None:
        got.append(message)

    await consume(binder, consumer_spec(topic), handler)
    plain = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP)
    await plain.start()
    try:
        await plain.send_and_wait(
            topic, b'{"a": 1}', headers=[("contentType", b'"application/json"')]
        )
    finally:
        await plain.stop()
    await wait_until(lambda: len(got) == 1, 15, "the message")
    assert got[0].content_type == "application/json"
