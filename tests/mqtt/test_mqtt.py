"""MQTT-specific behaviour of the binder, against the real Mosquitto."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from binder.errors import ConfigError, UnsupportedFeature
from binder.message import Message
from binder.spi import ConsumerSpec, ProducerSpec
from binders.mqtt.binder import MqttBinder
from binders.mqtt.connection import MqttConnectionError

from .conftest import (
    AUTH_PORT,
    BASE_SETTINGS,
    HOST,
    PASSWORD,
    PORT,
    USER,
    Collector,
    fresh,
    fresh_group,
    wait_for,
)

pytestmark = pytest.mark.broker("mqtt")

ROOT = Path(__file__).resolve().parents[2]


def _json(value: Any, **kwargs: Any) -> Message:
    return Message(json.dumps(value).encode(), content_type="application/json", **kwargs)


# -- groups, wildcards, metadata ----------------------------------------------------------


async def test_shared_subscription_splits_the_load_across_group_members(binder: MqttBinder) -> None:
    topic, group = fresh("share"), fresh_group()
    members = [Collector(), Collector()]
    for i, member in enumerate(members):
        await binder.bind_consumer(ConsumerSpec(f"in-{i}", topic, group=group), member)
    producer = await binder.bind_producer(ProducerSpec("out", topic))
    for n in range(40):
        await producer.publish(_json({"n": n}))
    await wait_for(lambda: sum(len(m.messages) for m in members) >= 40, what="40 messages")
    seen = sorted(msg.json()["n"] for m in members for msg in m.messages)
    assert seen == list(range(40)), "each message must reach exactly one member"
    assert all(m.messages for m in members), "both members must get a share"


async def test_wildcard_subscriptions_see_the_concrete_topic(binder: MqttBinder) -> None:
    base = fresh("wild")
    one_level, all_levels = Collector(), Collector()
    await binder.bind_consumer(
        ConsumerSpec("plus", f"{base}/+/temp", dead_letter=f"{base}-dlq"), one_level
    )
    await binder.bind_consumer(
        ConsumerSpec("hash", f"{base}/#", group=fresh_group(), dead_letter=False), all_levels
    )
    for topic in (f"{base}/kitchen/temp", f"{base}/garage/temp", f"{base}/kitchen/humidity"):
        producer = await binder.bind_producer(ProducerSpec(topic, topic))
        await producer.publish(_json({"at": topic}))
    await one_level.wait_for(2)
    await all_levels.wait_for(3)
    assert sorted(m.destination for m in one_level.messages) == [
        f"{base}/garage/temp",
        f"{base}/kitchen/temp",
    ]
    assert all(m.json()["at"] == m.destination for m in all_levels.messages)
    assert len(all_levels.messages) == 3


async def test_wildcard_destination_needs_an_explicit_dead_letter_topic(
    binder: MqttBinder,
) -> None:
    with pytest.raises(ConfigError, match="wildcards"):
        await binder.bind_consumer(ConsumerSpec("w", f"{fresh('w')}/#"), Collector())
    topic = fresh("loop")
    with pytest.raises(ConfigError, match="outside the subscription"):
        await binder.bind_consumer(ConsumerSpec("w", f"{topic}/#", dead_letter=f"{topic}/x"), None)  # type: ignore[arg-type]


async def test_headers_content_type_key_and_id_round_trip_under_mqtt5(binder: MqttBinder) -> None:
    topic = fresh("headers")
    received = Collector()
    await binder.bind_consumer(ConsumerSpec("in", topic), received)
    producer = await binder.bind_producer(ProducerSpec("out", topic))
    sent = Message(
        b"\x00\x01binary",
        headers={
            "tenant": "acme",
            "note": "line one\nline two\ttab",
            "unicode": "h\u00e9llo \u2603",
        },
        key="device-7",
        content_type="application/vnd.sensor+cbor",
        timestamp=1_700_000_000.125,
    )
    await producer.publish(sent)
    [got] = await received.wait_for(1)
    assert got.payload == sent.payload
    assert got.headers == sent.headers
    assert got.key == "device-7"
    assert got.content_type == "application/vnd.sensor+cbor"
    assert got.message_id == sent.message_id
    assert got.timestamp == sent.timestamp
    assert got.destination == topic


# -- interoperability with the Mosquitto command line tools -------------------------------


async def test_a_message_from_mosquitto_pub_is_consumed_and_decoded(binder: MqttBinder) -> None:
    if shutil.which("mosquitto_pub") is None:
        pytest.skip("mosquitto_pub is not installed")
    topic = fresh("cli-pub")
    received = Collector()
    await binder.bind_consumer(ConsumerSpec("in", topic, group=fresh_group()), received)
    proc = await asyncio.create_subprocess_exec(
        "mosquitto_pub", "-h", HOST, "-p", str(PORT), "-V", "5", "-q", "1", "-t", topic,
        "-m", '{"temperature": 21.5}',
        "-D", "publish", "content-type", "application/json",
        "-D", "publish", "user-property", "sensor", "s-1",
    )  # fmt: skip
    assert await asyncio.wait_for(proc.wait(), 10) == 0
    [got] = await received.wait_for(1)
    assert got.json() == {"temperature": 21.5}
    assert got.content_type == "application/json"
    assert got.headers == {"sensor": "s-1"}
    assert got.destination == topic


async def test_a_message_from_eventbinder_is_read_by_mosquitto_sub(binder: MqttBinder) -> None:
    if shutil.which("mosquitto_sub") is None:
        pytest.skip("mosquitto_sub is not installed")
    topic = fresh("cli-sub")
    unbuffered = ["stdbuf", "-oL"] if shutil.which("stdbuf") else []
    proc = await asyncio.create_subprocess_exec(
        *unbuffered, "mosquitto_sub", "-h", HOST, "-p", str(PORT), "-V", "5", "-q", "1", "-d",
        "-t", topic, "-C", "1", "-W", "10", "-F", "RECEIVED|%t|%C|%P|%p",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    assert proc.stdout is not None
    lines: list[str] = []

    async def read_until(marker: str) -> str:
        while True:
            raw = await asyncio.wait_for(proc.stdout.readline(), 10)  # type: ignore[union-attr]
            if not raw:
                raise AssertionError(f"mosquitto_sub ended before {marker!r}: {lines}")
            line = raw.decode().rstrip("\n")
            lines.append(line)
            if marker in line:
                return line

    await read_until("received SUBACK")
    producer = await binder.bind_producer(ProducerSpec("out", topic))
    await producer.publish(_json({"hello": "cli"}, headers={"tenant": "acme"}, key="k1"))
    line = await read_until("RECEIVED|")
    await asyncio.wait_for(proc.wait(), 10)
    _, got_topic, content_type, props, payload = line.split("|", 4)
    assert got_topic == topic
    assert content_type == "application/json"
    assert "tenant:acme" in props and "messageKey:k1" in props
    assert json.loads(payload) == {"hello": "cli"}


# -- connection ---------------------------------------------------------------------------


async def test_wrong_credentials_on_the_auth_listener_give_a_clear_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "not-the-password-42"
    binder = MqttBinder(
        "auth", {**BASE_SETTINGS, "port": AUTH_PORT, "username": USER, "password": wrong}
    )
    with pytest.raises(MqttConnectionError) as info:
        await binder.start()
    text = str(info.value)
    assert f"{HOST}:{AUTH_PORT}" in text
    assert "refused the connection" in text and "username and password" in text
    assert wrong not in text and wrong not in caplog.text and wrong not in repr(binder)
    await binder.close()

    anonymous = MqttBinder("auth", {**BASE_SETTINGS, "port": AUTH_PORT})
    with pytest.raises(MqttConnectionError, match="refused the connection"):
        await anonymous.start()


async def test_right_credentials_on_the_auth_listener_work() -> None:
    url = f"mqtt://{USER}:{PASSWORD}@{HOST}:{AUTH_PORT}"
    binder = MqttBinder("auth", {**BASE_SETTINGS, "url": url})
    assert PASSWORD not in repr(binder) and PASSWORD not in repr(binder.settings)
    await binder.start()
    try:
        topic = fresh("auth")
        received = Collector()
        await binder.bind_consumer(ConsumerSpec("in", topic), received)
        producer = await binder.bind_producer(ProducerSpec("out", topic))
        await producer.publish(_json({"ok": True}))
        [got] = await received.wait_for(1)
        assert got.json() == {"ok": True}
    finally:
        await binder.close()


async def test_unreachable_broker_raises_at_start() -> None:
    binder = MqttBinder("down", {**BASE_SETTINGS, "port": 1})
    with pytest.raises(MqttConnectionError, match="cannot connect"):
        await binder.start()


# -- sessions, acknowledgement, backpressure ----------------------------------------------


async def test_group_consumer_restarted_gets_what_was_published_while_away(
    binder: MqttBinder,
) -> None:
    topic, group = fresh("away"), fresh_group()
    spec = ConsumerSpec("in", topic, group=group)
    first = Collector()
    consumer = await binder.bind_consumer(spec, first)
    producer = await binder.bind_producer(ProducerSpec("out", topic))
    await producer.publish(_json({"n": -1}))
    await first.wait_for(1)
    await consumer.close()
    for n in range(20):
        await producer.publish(_json({"n": n}))
    second = Collector()
    await binder.bind_consumer(spec, second)
    await second.wait_for(20)
    assert [m.json()["n"] for m in second.messages] == list(range(20))


async def test_order_is_kept_per_key_with_concurrency(binder: MqttBinder) -> None:
    topic = fresh("order")
    received = Collector()

    async def slow_sometimes(message: Message) -> None:
        if message.json()["seq"] % 3 == 0:
            await asyncio.sleep(0.002)  # disturb the interleaving, not a synchronisation
        await received(message)

    await binder.bind_consumer(
        ConsumerSpec("in", topic, group=fresh_group(), concurrency=4, prefetch=16),
        slow_sometimes,
    )
    producer = await binder.bind_producer(ProducerSpec("out", topic))
    keys = [f"k{i}" for i in range(4)]
    for seq in range(15):
        for key in keys:
            await producer.publish(_json({"key": key, "seq": seq}, key=key))
    await received.wait_for(60)
    for key in keys:
        seqs = [m.json()["seq"] for m in received.messages if m.key == key]
        assert seqs == list(range(15)), key


async def test_slow_handler_bounds_messages_in_flight(binder: MqttBinder) -> None:
    topic = fresh("slow")
    gate = asyncio.Event()
    running = 0
    peak = 0
    done = Collector()

    async def blocked(message: Message) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        try:
            await gate.wait()
            await done(message)
        finally:
            running -= 1

    consumer = await binder.bind_consumer(
        ConsumerSpec("in", topic, group=fresh_group(), concurrency=2, prefetch=4), blocked
    )
    producer = await binder.bind_producer(ProducerSpec("out", topic))
    for n in range(30):
        await producer.publish(_json({"n": n}))
    await wait_for(lambda: running == 2, what="two handlers running")
    # The broker holds back everything beyond the receive maximum (4): observe a while.
    loop = asyncio.get_running_loop()
    end = loop.time() + 0.3
    while loop.time() < end:
        assert consumer.in_flight <= 4  # type: ignore[attr-defined]
        await asyncio.sleep(0.02)
    assert peak == 2
    gate.set()
    await done.wait_for(30)
    assert sorted(m.json()["n"] for m in done.messages) == list(range(30))


async def test_qos0_consumer_stops_reading_while_its_handlers_are_full(
    binder: MqttBinder,
) -> None:
    topic = fresh("slow-q0")
    gate = asyncio.Event()
    done = Collector()

    async def blocked(message: Message) -> None:
        await gate.wait()
        await done(message)

    # QoS 0 has no receive maximum at the broker: only the binding's intake bounds it.
    consumer = await binder.bind_consumer(
        ConsumerSpec("in", topic, concurrency=2, prefetch=4, options={"qos": 0}), blocked
    )
    producer = await binder.bind_producer(ProducerSpec("out", topic, options={"qos": 0}))
    try:
        for n in range(200):
            await producer.publish(_json({"n": n}))
        await wait_for(lambda: consumer.in_flight == 4, what="four messages taken")
        loop = asyncio.get_running_loop()
        end = loop.time() + 0.3
        while loop.time() < end:
            assert consumer.in_flight <= 4
            await asyncio.sleep(0.02)
    finally:
        gate.set()  # else closing the binding would wait for the handlers forever
    await done.wait_for(200)
    assert sorted(m.json()["n"] for m in done.messages) == list(range(200))


async def test_qos0_publisher_waits_for_the_socket_instead_of_queuing_without_bound(
    binder: MqttBinder,
) -> None:
    producer = await binder.bind_producer(ProducerSpec("out", fresh("q0"), options={"qos": 0}))
    publisher = binder._publisher
    assert publisher is not None
    most = 0
    for n in range(5000):  # never waits for anything else: only the bound lets paho write
        await producer.publish(Message(b"%d" % n))
        most = max(most, len(publisher._unwritten))
    assert 0 < most <= 1000
    await wait_for(lambda: not publisher._unwritten, what="everything written")


async def test_failed_handler_is_acknowledged_and_the_stream_goes_on(binder: MqttBinder) -> None:
    topic = fresh("fail")
    received = Collector(fail=lambda m: m.json()["n"] == 0)
    await binder.bind_consumer(ConsumerSpec("in", topic, group=fresh_group()), received)
    producer = await binder.bind_producer(ProducerSpec("out", topic))
    for n in range(3):
        await producer.publish(_json({"n": n}))
    await received.wait_for(2)
    assert [m.json()["n"] for m in received.messages] == [1, 2]
    assert received.calls == 3  # MQTT cannot redeliver: redelivery_on_nack is False
    assert binder.capabilities.redelivery_on_nack is False


async def test_dead_letter_goes_to_destination_dlq_with_error_properties(
    binder: MqttBinder,
) -> None:
    from binder.spi import Failure

    topic, group = fresh("dl"), fresh_group()
    dead = Collector()
    await binder.bind_consumer(ConsumerSpec("dlq", f"{topic}/dlq"), dead)
    consumer = await binder.bind_consumer(ConsumerSpec("in", topic, group=group), Collector())
    try:
        raise ValueError("no\nway")
    except ValueError as exc:
        failure = Failure.from_exception(exc, attempts=3, destination=topic, group=group)
    await consumer.dead_letter(_json({"n": 1}, headers={"tenant": "acme"}, key="k"), failure)
    [got] = await dead.wait_for(1)
    assert got.json() == {"n": 1}
    assert got.headers["x-exception-message"] == "no\nway"
    assert got.headers["x-original-group"] == group
    assert got.headers["x-delivery-attempts"] == "3"
    assert got.headers["tenant"] == "acme" and got.key == "k"


# -- MQTT 3.1.1 -----------------------------------------------------------------------------


async def test_mqtt311_carries_payload_only_and_refuses_dead_letters(make_binder: Any) -> None:
    binder = await make_binder(protocol="3.1.1")
    assert binder.capabilities.native_headers is False
    topic = fresh("v311")
    with pytest.raises(UnsupportedFeature, match=r"3\.1\.1"):
        await binder.bind_consumer(ConsumerSpec("in", topic, group=fresh_group()), Collector())
    received = Collector()
    await binder.bind_consumer(
        ConsumerSpec("in", topic, group=fresh_group(), dead_letter=False), received
    )
    producer = await binder.bind_producer(ProducerSpec("out", topic))
    await producer.publish(_json({"v": 311}, headers={"tenant": "acme"}, key="k"))
    [got] = await received.wait_for(1)
    assert got.json() == {"v": 311}
    assert got.headers == {} and got.key is None and got.content_type is None


# -- configuration ---------------------------------------------------------------------------


async def test_producer_refuses_wildcards_and_partitions(binder: MqttBinder) -> None:
    with pytest.raises(ConfigError, match="without wildcards"):
        await binder.bind_producer(ProducerSpec("out", "a/+/b"))
    with pytest.raises(UnsupportedFeature, match="partitioning"):
        await binder.bind_producer(ProducerSpec("out", fresh("p"), partition_count=2))


async def test_retained_message_reaches_a_later_subscriber(binder: MqttBinder) -> None:
    topic = fresh("retain")
    producer = await binder.bind_producer(ProducerSpec("out", topic, options={"retain": True}))
    await producer.publish(_json({"state": "on"}))
    late = Collector()
    await binder.bind_consumer(ConsumerSpec("in", topic), late)
    [got] = await late.wait_for(1)
    assert got.json() == {"state": "on"}
    clear = await binder.bind_producer(ProducerSpec("clear", topic, options={"retain": True}))
    await clear.publish(Message(b""))  # an empty retained message deletes it


# -- the broker restarts -----------------------------------------------------------------------


def _connected(binder: MqttBinder) -> bool:
    return binder._publisher is not None and binder._publisher.connected


async def test_broker_restart_in_the_middle_of_2000_qos1_messages_loses_none(
    binder: MqttBinder,
) -> None:
    script = ROOT / "scripts" / "brokers"
    if not os.access(script, os.X_OK):
        pytest.skip("scripts/brokers is missing")
    topic, group = fresh("restart"), fresh_group()
    received = Collector()
    await binder.bind_consumer(
        ConsumerSpec("in", topic, group=group, concurrency=4, prefetch=50), received
    )
    producer = await binder.bind_producer(ProducerSpec("out", topic))
    total, window = 2000, asyncio.Semaphore(200)
    restarted: asyncio.Task[int] | None = None

    async def restart() -> int:
        proc = await asyncio.create_subprocess_exec(
            str(script), "restart", "mqtt",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        return await proc.wait()

    async def send(n: int) -> None:
        try:
            await producer.publish(_json({"n": n}))
        finally:
            window.release()

    sends = []
    for n in range(total):
        await window.acquire()
        sends.append(asyncio.create_task(send(n)))
        if n == total // 2:
            # Mosquitto goes down with ~half published, up to 200 unconfirmed and
            # the consumer holding unacknowledged messages; the rest is published
            # while it is down or coming back.
            restarted = asyncio.create_task(restart())
            # generous: scripts/brokers serialises restarts machine-wide (other brokers)
            await wait_for(lambda: not _connected(binder), 300, "the broker going down")
    assert restarted is not None
    assert await asyncio.wait_for(restarted, 300) == 0
    await asyncio.wait_for(asyncio.gather(*sends), 60)
    unique = lambda: {m.json()["n"] for m in received.messages}  # noqa: E731
    await wait_for(lambda: len(unique()) == total, 30, "all 2000 messages, none lost")
    assert unique() == set(range(total))


async def test_last_will_is_published_when_the_connection_dies(
    binder: MqttBinder, make_binder: Any
) -> None:
    import socket

    topic = fresh("will")
    watcher = Collector()
    await binder.bind_consumer(ConsumerSpec("will-in", topic, dead_letter=False), watcher)
    dying = await make_binder(will={"topic": topic, "payload": "gone", "qos": 1})
    assert dying._publisher is not None
    sock = dying._publisher._client.socket()  # no DISCONNECT: an abnormal end
    sock.shutdown(socket.SHUT_RDWR)
    [got] = await watcher.wait_for(1)
    assert got.payload == b"gone"


async def test_a_stopped_member_keeps_its_share_unless_it_ends_its_session(
    binder: MqttBinder,
) -> None:
    topic, group = fresh("share-away"), fresh_group()
    stays, leaves, ends = Collector(), Collector(), Collector()
    await binder.bind_consumer(ConsumerSpec("stays", topic, group=group), stays)
    leaving = await binder.bind_consumer(ConsumerSpec("leaves", topic, group=group), leaves)
    ending = await binder.bind_consumer(
        ConsumerSpec("ends", topic, group=group, options={"end_session_on_close": True}), ends
    )
    await leaving.close()  # its session stays in the group and queues its share
    await ending.close()  # its session is gone
    producer = await binder.bind_producer(ProducerSpec("out", topic))
    for n in range(10):
        await producer.publish(_json({"n": n}))
    await stays.wait_for(5)
    back = Collector()
    await binder.bind_consumer(ConsumerSpec("leaves", topic, group=group), back)
    await wait_for(lambda: len(stays.messages) + len(back.messages) >= 10, what="all ten")
    assert sorted(m.json()["n"] for m in stays.messages + back.messages) == list(range(10))
    assert back.messages, "the member that came back gets what was queued for it"
