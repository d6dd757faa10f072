"""MQTT-specific behaviour of the binder, against the real Mosquitto."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from binder.app import App
from binder.errors import AccessRefused, ConfigError, UnsupportedFeature
from binder.message import Message
from binder.spi import Delivery
from binder.testing import Collector, run_app, wait_until
from binders.mqtt.binder import MqttBinder
from binders.mqtt.connection import MqttConnectionError

from .conftest import (
    AUTH_PORT,
    BASE_SETTINGS,
    HOST,
    PASSWORD,
    PORT,
    USER,
    Subscribe,
    consumer_spec,
    count_unsettled,
    fresh,
    fresh_group,
    producer_spec,
)

pytestmark = pytest.mark.broker("mqtt")

ROOT = Path(__file__).resolve().parents[2]


def _json(value: Any, **kwargs: Any) -> Message:
    return Message(json.dumps(value).encode(), content_type="application/json", **kwargs)


def _config(bindings: dict[str, Any]) -> dict[str, Any]:
    """A configuration running an app on the test broker (``bindings`` as in a file)."""
    return {
        "binders": {"mqtt": {"type": "mqtt", **BASE_SETTINGS}},
        "default_binder": "mqtt",
        "bindings": bindings,
    }


# -- groups, wildcards, metadata ----------------------------------------------------------


async def test_shared_subscription_splits_the_load_across_group_members(
    binder: MqttBinder, subscribe: Subscribe
) -> None:
    topic, group = fresh("share"), fresh_group()
    members = [Collector(), Collector()]
    for i, member in enumerate(members):
        await subscribe(binder, consumer_spec(f"in-{i}", topic, group=group), member)
    producer = await binder.bind_producer(producer_spec("out", topic))
    for n in range(40):
        await producer.publish(_json({"n": n}))
    await wait_until(lambda: sum(len(m.messages) for m in members) >= 40, what="40 messages")
    seen = sorted(msg.json()["n"] for m in members for msg in m.messages)
    assert seen == list(range(40)), "each message must reach exactly one member"
    assert all(m.messages for m in members), "both members must get a share"


async def test_wildcard_subscriptions_see_the_concrete_topic(
    binder: MqttBinder, subscribe: Subscribe
) -> None:
    base = fresh("wild")
    one_level, all_levels = Collector(), Collector()
    await subscribe(
        binder, consumer_spec("plus", f"{base}/+/temp", dead_letter=f"{base}-dlq"), one_level
    )
    await subscribe(binder, consumer_spec("hash", f"{base}/#", group=fresh_group()), all_levels)
    for topic in (f"{base}/kitchen/temp", f"{base}/garage/temp", f"{base}/kitchen/humidity"):
        producer = await binder.bind_producer(producer_spec(topic, topic))
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
    binder: MqttBinder, subscribe: Subscribe
) -> None:
    assert binder.dead_letter_destination("a/b", "g") == "a/b/dlq"
    with pytest.raises(ConfigError, match="wildcards"):
        binder.dead_letter_destination(f"{fresh('w')}/#", None)
    topic = fresh("loop")
    with pytest.raises(ConfigError, match="outside the subscription"):
        await subscribe(
            binder, consumer_spec("w", f"{topic}/#", dead_letter=f"{topic}/x"), Collector()
        )
    with pytest.raises(ConfigError, match="outside the subscription"):
        await subscribe(binder, consumer_spec("w", topic, dead_letter=f"{topic}/+"), Collector())


async def test_an_app_on_a_wildcard_destination_is_refused_at_start_without_a_dlq_name() -> None:
    base = fresh("wild-app")

    def build() -> App:
        app = App("wild")

        @app.consumer(f"{base}/+/temp", group=fresh_group())
        async def reading(payload: dict) -> None:
            return None

        return app

    with pytest.raises(ConfigError, match="has wildcards") as refused:
        async with run_app(build(), _config({})):  # the start stops what it started
            pass
    # The binder names no source; the core locates the error in the configuration.
    assert refused.value.key == "bindings.reading-in-0.dead_letter"
    assert refused.value.source is not None
    named = _config({"reading-in-0": {"dead_letter": f"{base}-dlq"}})
    async with run_app(build(), named) as harness:
        assert harness.runtime.status()["reading-in-0"] == "running"


async def test_headers_content_type_key_and_id_round_trip_under_mqtt5(
    binder: MqttBinder, subscribe: Subscribe
) -> None:
    topic = fresh("headers")
    received = Collector()
    await subscribe(binder, consumer_spec("in", topic), received)
    producer = await binder.bind_producer(producer_spec("out", topic))
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


async def test_a_message_from_mosquitto_pub_is_consumed_and_decoded(
    binder: MqttBinder, subscribe: Subscribe
) -> None:
    if shutil.which("mosquitto_pub") is None:
        pytest.skip("mosquitto_pub is not installed")
    topic = fresh("cli-pub")
    received = Collector()
    await subscribe(binder, consumer_spec("in", topic, group=fresh_group()), received)
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
    producer = await binder.bind_producer(producer_spec("out", topic))
    await producer.publish(_json({"hello": "cli"}, headers={"tenant": "acme"}, key="k1"))
    line = await read_until("RECEIVED|")
    await asyncio.wait_for(proc.wait(), 10)
    _, got_topic, content_type, props, payload = line.split("|", 4)
    assert got_topic == topic
    assert content_type == "application/json"
    assert "tenant:acme" in props and "messageKey:k1" in props
    assert json.loads(payload) == {"hello": "cli"}


# -- connection ---------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_wrong_credentials_on_the_auth_listener_are_refused_access(
    protocol: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Mosquitto answers a wrong password with "not authorized" (MQTT 5 reason 0x87,
    MQTT 3.1.1 return code 5): AccessRefused naming the reason and the user, at once."""
    caplog.set_level(logging.DEBUG)
    wrong = "not-the-password-42"
    settings = {**BASE_SETTINGS, "port": AUTH_PORT, "protocol": protocol, "connect_timeout": 10}
    binder = MqttBinder("auth", {**settings, "username": USER, "password": wrong})
    started = asyncio.get_running_loop().time()
    with pytest.raises(AccessRefused) as info:
        await binder.start()
    assert asyncio.get_running_loop().time() - started < 2.0
    text = str(info.value)
    assert text == (
        f"the MQTT broker at {HOST}:{AUTH_PORT} refused the connection: Not authorized "
        f"(user {USER!r}: check the binder's username and password)"
    )
    assert wrong not in caplog.text and wrong not in repr(binder)
    await binder.close()

    anonymous = MqttBinder("auth", settings)
    with pytest.raises(AccessRefused, match=r"Not authorized \(the binder sent no username"):
        await anonymous.start()
    await anonymous.close()


async def test_right_credentials_on_the_auth_listener_work(subscribe: Subscribe) -> None:
    url = f"mqtt://{USER}:{PASSWORD}@{HOST}:{AUTH_PORT}"
    binder = MqttBinder("auth", {**BASE_SETTINGS, "url": url})
    assert PASSWORD not in repr(binder) and PASSWORD not in repr(binder.settings)
    await binder.start()
    try:
        topic = fresh("auth")
        received = Collector()
        await subscribe(binder, consumer_spec("in", topic), received)
        producer = await binder.bind_producer(producer_spec("out", topic))
        await producer.publish(_json({"ok": True}))
        [got] = await received.wait_for(1)
        assert got.json() == {"ok": True}
    finally:
        await binder.close()


async def test_unreachable_broker_raises_at_start() -> None:
    binder = MqttBinder("down", {**BASE_SETTINGS, "port": 1})
    with pytest.raises(MqttConnectionError, match="cannot connect"):
        await binder.start()


ConnectionHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def _listener(handle: ConnectionHandler) -> AsyncIterator[int]:
    """A local TCP listener serving every connection with ``handle``; yields its port
    and, on leaving, waits (up to 5 s) for the connections it served to end."""
    served: list[asyncio.Task[Any]] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            served.append(task)
        await handle(reader, writer)

    server = await asyncio.start_server(serve, HOST, 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()
        await asyncio.wait_for(asyncio.gather(*served), 5.0)


async def _close_at_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Close the connection (FIN) without a byte, reading what the client sent, so the
    close is never turned into a reset by unread data."""
    writer.write_eof()
    await reader.read()
    writer.close()


async def _reset_at_once(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Reset the connection (SO_LINGER 0: close sends RST)."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def _start_fails_at_once(port: int, caplog: pytest.LogCaptureFixture) -> str:
    """Start a binder on ``port`` (connect_timeout 10 s); return its one-line error,
    raised within two seconds with no other warning or error logged."""
    caplog.set_level(logging.DEBUG)
    binder = MqttBinder("wrong-port", {**BASE_SETTINGS, "port": port, "connect_timeout": 10})
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        with pytest.raises(MqttConnectionError) as info:
            await binder.start()
    finally:
        await binder.close()
    assert loop.time() - started < 2.0, "reported after the close, not after connect_timeout"
    noise = [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.WARNING and r.name.startswith(("binder", "paho"))
    ]
    assert noise == [], "the error is the one line: nothing logged besides"
    text = str(info.value)
    assert "\n" not in text
    return text


async def test_a_port_that_closes_the_connection_fails_the_start_at_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with _listener(_close_at_once) as port:
        text = await _start_fails_at_once(port, caplog)
    assert text == (
        f"{HOST}:{port} closed the connection before answering CONNECT: is it an MQTT broker?"
    )


async def test_a_port_that_resets_the_connection_fails_the_start_at_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with _listener(_reset_at_once) as port:
        text = await _start_fails_at_once(port, caplog)
    assert text == (
        f"{HOST}:{port} reset the connection before answering CONNECT: is it an MQTT broker?"
    )


@pytest.mark.broker("rabbit")
async def test_rabbitmqs_port_fails_the_start_at_once(caplog: pytest.LogCaptureFixture) -> None:
    """RabbitMQ answers the CONNECT with its AMQP protocol header and drops the
    connection (a reset, as the rest of the CONNECT is unread)."""
    text = await _start_fails_at_once(5672, caplog)
    assert text.startswith(f"{HOST}:5672 ")
    assert text.endswith(" the connection before answering CONNECT: is it an MQTT broker?")


# -- sessions, acknowledgement, backpressure ----------------------------------------------


async def test_group_consumer_restarted_gets_what_was_published_while_away(
    binder: MqttBinder, subscribe: Subscribe
) -> None:
    topic, group = fresh("away"), fresh_group()
    spec = consumer_spec("in", topic, group=group)
    first = Collector()
    consumer = await subscribe(binder, spec, first)
    producer = await binder.bind_producer(producer_spec("out", topic))
    await producer.publish(_json({"n": -1}))
    await first.wait_for(1)
    await consumer.close()
    for n in range(20):
        await producer.publish(_json({"n": n}))
    second = Collector()
    await subscribe(binder, spec, second)
    await second.wait_for(20)
    assert [m.json()["n"] for m in second.messages] == list(range(20))


async def test_order_is_kept_per_key_with_concurrency(
    binder: MqttBinder, subscribe: Subscribe
) -> None:
    topic = fresh("order")
    received = Collector()

    async def slow_sometimes(message: Message) -> None:
        if message.json()["seq"] % 3 == 0:
            await asyncio.sleep(0.002)  # disturb the interleaving, not a synchronisation
        await received(message)

    await subscribe(
        binder,
        consumer_spec("in", topic, group=fresh_group(), concurrency=4, prefetch=16),
        slow_sometimes,
    )
    producer = await binder.bind_producer(producer_spec("out", topic))
    keys = [f"k{i}" for i in range(4)]
    for seq in range(15):
        for key in keys:
            await producer.publish(_json({"key": key, "seq": seq}, key=key))
    await received.wait_for(60)
    for key in keys:
        seqs = [m.json()["seq"] for m in received.messages if m.key == key]
        assert seqs == list(range(15)), key


async def test_slow_handler_bounds_messages_in_flight(
    binder: MqttBinder, subscribe: Subscribe
) -> None:
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

    watcher = Collector()
    await subscribe(binder, consumer_spec("watch", topic), watcher)
    consumer = await subscribe(
        binder, consumer_spec("in", topic, group=fresh_group(), concurrency=2, prefetch=4), blocked
    )
    unsettled = count_unsettled(consumer)
    producer = await binder.bind_producer(producer_spec("out", topic))
    for n in range(30):
        await producer.publish(_json({"n": n}))
    # Every message reached the broker's subscribers (the watcher has them all) while
    # the handlers are held: the broker holds back what is beyond the receive
    # maximum (4) by then, and the engine's window is full.
    await watcher.wait_for(30)
    await wait_until(
        lambda: running == 2 and consumer.dispatcher.in_flight == 4,
        what="two handlers running and four messages taken",
    )
    gate.set()
    await done.wait_for(30)
    assert sorted(m.json()["n"] for m in done.messages) == list(range(30))
    assert peak == 2, f"{peak} handlers ran at once"
    assert max(unsettled) == 4, f"{max(unsettled)} messages unsettled at once"


async def test_qos0_consumer_stops_reading_while_its_handlers_are_full(
    binder: MqttBinder, subscribe: Subscribe
) -> None:
    topic = fresh("slow-q0")
    gate = asyncio.Event()
    done = Collector()

    async def blocked(message: Message) -> None:
        await gate.wait()
        await done(message)

    watcher = Collector()
    await subscribe(binder, consumer_spec("watch", topic, options={"qos": 0}), watcher)
    # QoS 0 has no receive maximum at the broker: only the binding's intake bounds it.
    consumer = await subscribe(
        binder, consumer_spec("in", topic, concurrency=2, prefetch=4, options={"qos": 0}), blocked
    )
    unsettled = count_unsettled(consumer)
    producer = await binder.bind_producer(producer_spec("out", topic, options={"qos": 0}))
    try:
        for n in range(200):
            await producer.publish(_json({"n": n}))
        # The broker sent all 200 (the watcher has them) while the handlers are held:
        # the consumer's socket holds what its intake did not take.
        await watcher.wait_for(200)
        await wait_until(lambda: consumer.dispatcher.in_flight == 4, what="four messages taken")
    finally:
        gate.set()  # else closing the binding would wait for the handlers forever
    await done.wait_for(200)
    assert sorted(m.json()["n"] for m in done.messages) == list(range(200))
    assert max(unsettled) == 4, f"{max(unsettled)} messages unsettled at once"


async def test_qos0_publisher_waits_for_the_socket_instead_of_queuing_without_bound(
    binder: MqttBinder,
) -> None:
    producer = await binder.bind_producer(producer_spec("out", fresh("q0"), options={"qos": 0}))
    publisher = binder._publisher
    assert publisher is not None
    most = 0
    for n in range(5000):  # never waits for anything else: only the bound lets paho write
        await producer.publish(Message(b"%d" % n))
        most = max(most, len(publisher._unwritten))
    assert 0 < most <= 1000
    await wait_until(lambda: not publisher._unwritten, what="everything written")


async def test_publish_queues_at_once_in_call_order_with_many_in_flight(
    binder: MqttBinder, subscribe: Subscribe
) -> None:
    topic = fresh("pipelined")
    received = Collector()
    await subscribe(binder, consumer_spec("in", topic, group=fresh_group()), received)
    producer = await binder.bind_producer(producer_spec("out", topic))
    count = 300  # far more than the connection's 20 unconfirmed publishes
    confirmations = [producer.publish(_json({"n": n})) for n in range(count)]
    assert not any(c.done() for c in confirmations), "QoS 1 resolves on the PUBACK only"
    await asyncio.wait_for(asyncio.gather(*confirmations), 30)
    await received.wait_for(count)
    assert [m.json()["n"] for m in received.messages] == list(range(count))


async def test_qos0_backlog_keeps_call_order_and_bounds_what_paho_holds(
    binder: MqttBinder, subscribe: Subscribe
) -> None:
    topic = fresh("q0-order")
    received = Collector()
    await subscribe(binder, consumer_spec("in", topic, options={"qos": 0}), received)
    producer = await binder.bind_producer(producer_spec("out", topic, options={"qos": 0}))
    publisher = binder._publisher
    assert publisher is not None
    handed: list[int] = []
    most = 0
    send = publisher.publish

    def recording(topic: str, payload: bytes, *args: Any) -> Any:
        nonlocal most
        handed.append(int(payload))
        result = send(topic, payload, *args)
        most = max(most, len(publisher._unwritten))
        return result

    publisher.publish = recording  # type: ignore[method-assign]
    count = 3000
    # Never suspends: the first 1,000 go to paho, the rest wait in the backlog.
    confirmations = [producer.publish(Message(b"%d" % n)) for n in range(count)]
    assert len(handed) == 1000 and len(producer._backlog) == count - 1000
    await asyncio.wait_for(asyncio.gather(*confirmations), 30)
    assert handed == list(range(count))
    assert most <= 1000
    await received.wait_for(count, 30)
    assert [int(m.payload) for m in received.messages] == list(range(count))


async def test_publishes_in_flight_follow_the_brokers_receive_maximum(make_binder: Any) -> None:
    # scripts/mosquitto.conf: max_inflight_messages 100, announced in the CONNACK.
    def limit(binder: MqttBinder) -> int:
        assert binder._publisher is not None
        return binder._publisher._client._max_inflight_messages  # type: ignore[attr-defined,no-any-return]

    assert limit(await make_binder()) == 100  # paho alone would keep 20
    assert limit(await make_binder(max_inflight=7)) == 7
    assert limit(await make_binder(max_inflight=500)) == 100  # more would be refused
    assert limit(await make_binder(protocol="3.1.1")) == 20  # no CONNACK properties


async def test_receive_maximum_is_the_prefetch_unless_set(
    binder: MqttBinder, subscribe: Subscribe
) -> None:
    topic = fresh("rm")
    default = await subscribe(binder, consumer_spec("a", topic), Collector())
    assert default.connection._receive_maximum == 256  # the core's default prefetch
    small = await subscribe(binder, consumer_spec("b", topic, prefetch=7), Collector())
    assert small.connection._receive_maximum == 7 and small._intake.capacity == 7
    overridden = await subscribe(
        binder, consumer_spec("c", topic, prefetch=7, options={"receive_maximum": 3}), Collector()
    )
    assert overridden.connection._receive_maximum == 3 and overridden._intake.capacity == 7


async def test_released_messages_are_not_acknowledged_and_come_back_to_the_group(
    binder: MqttBinder, subscribe: Subscribe
) -> None:
    topic, group = fresh("release"), fresh_group()
    spec = consumer_spec("in", topic, group=group)
    gate = asyncio.Event()
    first = Collector()

    async def held(message: Message) -> None:
        await gate.wait()
        await first(message)

    consumer = await subscribe(binder, spec, held)
    producer = await binder.bind_producer(producer_spec("out", topic))
    for n in range(5):
        await producer.publish(_json({"n": n}))
    await wait_until(lambda: consumer.in_flight == 5, what="five messages taken")
    closing = asyncio.ensure_future(consumer.close())
    # Stopping releases the four not started (no PUBACK) and waits for the running one.
    await wait_until(lambda: consumer.in_flight == 1, what="four messages released")
    assert not closing.done()
    gate.set()
    await asyncio.wait_for(closing, 10)
    assert [m.json()["n"] for m in first.messages] == [0]
    second = Collector()
    await subscribe(binder, spec, second)
    await producer.publish(_json({"n": 99}))  # after the redeliveries: a marker
    await second.wait_for(5)
    assert [m.json()["n"] for m in second.messages] == [1, 2, 3, 4, 99]
    assert [m.delivery_attempt for m in second.messages] == [2, 2, 2, 2, 1]


async def test_failed_handler_is_acknowledged_and_the_stream_goes_on(
    binder: MqttBinder, subscribe: Subscribe, caplog: pytest.LogCaptureFixture
) -> None:
    topic = fresh("fail")
    received = Collector(fail=lambda m: m.json()["n"] == 0)
    consumer = await subscribe(binder, consumer_spec("in", topic, group=fresh_group()), received)
    producer = await binder.bind_producer(producer_spec("out", topic))
    sent = [_json({"n": n}) for n in range(3)]
    for message in sent:
        await producer.publish(message)
    await received.wait_for(2)
    assert [m.json()["n"] for m in received.messages] == [1, 2]
    assert len(received.attempts) == 3  # MQTT cannot redeliver: redelivery_on_nack is False
    assert binder.capabilities.redelivery_on_nack is False
    # The engine nacked it; the binder logged it by message id and acknowledged it.
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any(sent[0].message_id in text and "acknowledging" in text for text in errors), errors
    await wait_until(lambda: consumer.in_flight == 0, what="every message settled")


async def test_dead_letter_goes_to_destination_dlq_with_error_properties(
    binder: MqttBinder, subscribe: Subscribe
) -> None:
    from binder.spi import Failure

    topic, group = fresh("dl"), fresh_group()
    dead = Collector()
    dlq = binder.dead_letter_destination(topic, group)
    assert dlq == f"{topic}/dlq"
    await subscribe(binder, consumer_spec("dlq", dlq), dead)
    consumer = await subscribe(
        binder, consumer_spec("in", topic, group=group, dead_letter=dlq), Collector()
    )
    try:
        raise ValueError("no\nway")
    except ValueError as exc:
        failure = Failure.from_exception(exc, attempts=3, destination=topic, group=group)
    original = _json({"n": 1}, headers={"tenant": "acme"}, key="k")
    await consumer.dead_letter(Delivery(original), failure)
    [got] = await dead.wait_for(1)
    assert got.json() == {"n": 1}
    assert got.headers["x-exception-message"] == "no\nway"
    assert got.headers["x-original-group"] == group
    assert got.headers["x-delivery-attempts"] == "3"
    assert got.headers["tenant"] == "acme" and got.key == "k"


# -- MQTT 3.1.1 -----------------------------------------------------------------------------


async def test_mqtt311_carries_payload_only_and_refuses_dead_letters(
    make_binder: Any, subscribe: Subscribe
) -> None:
    binder = await make_binder(protocol="3.1.1")
    assert binder.capabilities.native_headers is False
    topic = fresh("v311")
    with pytest.raises(UnsupportedFeature, match=r"3\.1\.1"):
        await subscribe(
            binder,
            consumer_spec("in", topic, group=fresh_group(), dead_letter=f"{topic}/dlq"),
            Collector(),
        )
    received = Collector()  # dead_letter None: dead-lettering is off
    await subscribe(binder, consumer_spec("in", topic, group=fresh_group()), received)
    producer = await binder.bind_producer(producer_spec("out", topic))
    await producer.publish(_json({"v": 311}, headers={"tenant": "acme"}, key="k"))
    [got] = await received.wait_for(1)
    assert got.json() == {"v": 311}
    assert got.headers == {} and got.key is None and got.content_type is None


# -- configuration ---------------------------------------------------------------------------


async def test_required_groups_get_one_warning_per_binding_that_configures_them(
    binder: MqttBinder, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="binders")
    await binder.bind_producer(producer_spec("plain-out", fresh("rg")))
    assert [r for r in caplog.records if r.name.startswith("binders")] == []

    await binder.bind_producer(
        producer_spec("orders-out", fresh("rg"), required_groups=("billing", "mailer"))
    )
    [warning] = [r for r in caplog.records if r.name.startswith("binders")]
    assert warning.levelno == logging.WARNING
    text = warning.getMessage()
    assert text.startswith("binding orders-out: required_groups billing, mailer cannot be")
    assert "published before a group's first member subscribed reach nobody" in text

    caplog.clear()
    await binder.bind_producer(producer_spec("audit-out", fresh("rg"), required_groups=("a",)))
    [again] = [r for r in caplog.records if r.name.startswith("binders")]
    assert again.getMessage().startswith("binding audit-out: required_groups a cannot be")


async def test_producer_refuses_wildcards_and_partitions(binder: MqttBinder) -> None:
    with pytest.raises(ConfigError, match="without wildcards"):
        await binder.bind_producer(producer_spec("out", "a/+/b"))
    with pytest.raises(UnsupportedFeature, match="partitioning"):
        await binder.bind_producer(producer_spec("out", fresh("p"), partition_count=2))


async def test_retained_message_reaches_a_later_subscriber(
    binder: MqttBinder, subscribe: Subscribe
) -> None:
    topic = fresh("retain")
    producer = await binder.bind_producer(producer_spec("out", topic, options={"retain": True}))
    await producer.publish(_json({"state": "on"}))
    late = Collector()
    await subscribe(binder, consumer_spec("in", topic), late)
    [got] = await late.wait_for(1)
    assert got.json() == {"state": "on"}
    clear = await binder.bind_producer(producer_spec("clear", topic, options={"retain": True}))
    await clear.publish(Message(b""))  # an empty retained message deletes it


# -- the broker restarts -----------------------------------------------------------------------


def _connected(binder: MqttBinder) -> bool:
    return binder._publisher is not None and binder._publisher.connected


async def test_broker_restart_in_the_middle_of_2000_qos1_messages_loses_none(
    binder: MqttBinder, subscribe: Subscribe
) -> None:
    script = ROOT / "scripts" / "brokers"
    if not os.access(script, os.X_OK):
        pytest.skip("scripts/brokers is missing")
    topic, group = fresh("restart"), fresh_group()
    received = Collector()
    await subscribe(
        binder, consumer_spec("in", topic, group=group, concurrency=4, prefetch=50), received
    )
    producer = await binder.bind_producer(producer_spec("out", topic))
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
            await wait_until(lambda: not _connected(binder), 300, "the broker going down")
    assert restarted is not None
    assert await asyncio.wait_for(restarted, 300) == 0
    await asyncio.wait_for(asyncio.gather(*sends), 60)
    unique = lambda: {m.json()["n"] for m in received.messages}  # noqa: E731
    await wait_until(lambda: len(unique()) == total, 30, "all 2000 messages, none lost")
    assert unique() == set(range(total))


async def test_last_will_is_published_when_the_connection_dies(
    binder: MqttBinder, make_binder: Any, subscribe: Subscribe
) -> None:
    import socket

    topic = fresh("will")
    watcher = Collector()
    await subscribe(binder, consumer_spec("will-in", topic), watcher)
    dying = await make_binder(will={"topic": topic, "payload": "gone", "qos": 1})
    assert dying._publisher is not None
    sock = dying._publisher._client.socket()  # no DISCONNECT: an abnormal end
    sock.shutdown(socket.SHUT_RDWR)
    [got] = await watcher.wait_for(1)
    assert got.payload == b"gone"


async def test_a_stopped_member_keeps_its_share_unless_it_ends_its_session(
    binder: MqttBinder, subscribe: Subscribe
) -> None:
    topic, group = fresh("share-away"), fresh_group()
    stays, leaves, ends = Collector(), Collector(), Collector()
    await subscribe(binder, consumer_spec("stays", topic, group=group), stays)
    leaving = await subscribe(binder, consumer_spec("leaves", topic, group=group), leaves)
    ending = await subscribe(
        binder,
        consumer_spec("ends", topic, group=group, options={"end_session_on_close": True}),
        ends,
    )
    await leaving.close()  # its session stays in the group and queues its share
    await ending.close()  # its session is gone
    producer = await binder.bind_producer(producer_spec("out", topic))
    for n in range(10):
        await producer.publish(_json({"n": n}))
    await stays.wait_for(5)
    back = Collector()
    await subscribe(binder, consumer_spec("leaves", topic, group=group), back)
    await wait_until(lambda: len(stays.messages) + len(back.messages) >= 10, what="all ten")
    assert sorted(m.json()["n"] for m in stays.messages + back.messages) == list(range(10))
    assert back.messages, "the member that came back gets what was queued for it"
