"""Failover across broker URLs, against Mosquitto processes these tests start themselves.

Mosquitto has no clustering: the binder's ``url`` lists several brokers and every
connection tries them in turn, from the first, when it opens and on every reconnect.
Each test starts its own brokers (``mosquitto_process``: anonymous, no persistence, on
free loopback ports) and kills them at the end; the password in the URLs is accepted
(anonymous brokers take any) and must never show in a log line or an error.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from binder.app import App
from binder.errors import AccessRefused, describe_error
from binder.message import Message
from binder.testing import Collector, consume, run_app, wait_until
from binders.mqtt.binder import MqttBinder
from binders.mqtt.connection import MqttConnection, MqttConnectionError
from binders.mqtt.dialer import Dialer
from binders.mqtt.settings import ConnectionSettings

from .conftest import AUTH_PORT, USER, consumer_spec, fresh, fresh_group, producer_spec
from .mosquitto_process import HOST, MosquittoFactory, free_port, mosquitto_brokers

pytestmark = pytest.mark.broker("mqtt")

SECRET = "failover-pw-secret"
USERINFO = f"failover-user:{SECRET}"
#: Reconnect delays are the defaults (0.5 s doubling to 30 s): the failover measured
#: is the one a user gets.
SETTINGS: dict[str, Any] = {"client_id": "eb-failover", "session_expiry": 60, "connect_timeout": 5}
REFUSED = "ConnectionRefusedError: [Errno 111] Connection refused"


@pytest.fixture
def brokers(tmp_path: Path) -> Iterator[MosquittoFactory]:
    with mosquitto_brokers(tmp_path) as factory:
        yield factory


def _json(value: Any) -> Message:
    return Message(json.dumps(value).encode(), content_type="application/json")


def _failed_attempts(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """From now on, record ``(host:port, error)`` of every failed connection attempt."""
    failed: list[tuple[str, str]] = []
    attempt = Dialer.attempt

    async def recording(self: Dialer, target: ConnectionSettings, *, last: bool) -> Any:
        error = await attempt(self, target, last=last)
        if error is not None:
            failed.append((target.address, str(error)))
        return error

    monkeypatch.setattr(Dialer, "attempt", recording)
    return failed


def _dialer_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "binders.mqtt.dialer"]


def _assert_one_line_per_failed_attempt(
    failed: list[tuple[str, str]], lines: list[str], *, unlogged: int = 0
) -> None:
    """Every failed attempt (but the ``unlogged`` last ones of an opening that raised)
    has exactly one line, naming its broker and saying why; none holds the password."""
    logged = failed[: len(failed) - unlogged]
    assert len(lines) == len(logged), f"{len(logged)} failed attempts, lines: {lines}"
    for (address, error), line in zip(logged, lines, strict=True):
        assert address in line and f": {error}; " in line, line
        assert " next" in line or "next attempt in " in line, line
    assert not any(SECRET in line for line in lines)


async def _on(connection: MqttConnection | None, address: str) -> None:
    """Wait until ``connection`` is connected to ``address`` with its subscriptions."""

    def there() -> bool:
        return (
            connection is not None
            and connection.connected
            and connection.ready.is_set()
            and connection.settings.address == address
        )

    await wait_until(there, 20, f"{connection!r} on {address}")


# -- (a) the first URL is down at start ------------------------------------------------------


async def test_the_first_url_down_at_start_connects_to_the_second(
    brokers: MosquittoFactory, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.DEBUG)
    failed = _failed_attempts(monkeypatch)
    down = f"{HOST}:{free_port()}"
    b = brokers.start("b")
    binder = MqttBinder("fo", {**SETTINGS, "url": [f"mqtt://{USERINFO}@{down}", b.url(USERINFO)]})
    await binder.start()
    try:
        assert binder._publisher is not None
        assert binder._publisher.settings.address == b.address
        topic, group = fresh("first-down"), fresh_group()
        received = Collector()
        consumer = await consume(binder, consumer_spec("in", topic, group=group), received)
        assert binder._consumers[0].connection is not None
        assert binder._consumers[0].connection.settings.address == b.address
        producer = await binder.bind_producer(producer_spec("out", topic))
        await producer.publish(_json({"n": 1}))
        [got] = await received.wait_for(1)
        assert got.json() == {"n": 1}
        await consumer.close()
    finally:
        await binder.close()
    # The publisher and the consumer each tried the first URL once, and said so once.
    assert failed == [(down, f"cannot connect to the MQTT broker at {down}: {REFUSED}")] * 2
    assert _dialer_lines(caplog) == [
        f"fo publisher: cannot connect to the MQTT broker at {down}: {REFUSED}; "
        f"trying {b.address} next",
        f"fo consumer in: cannot connect to the MQTT broker at {down}: {REFUSED}; "
        f"trying {b.address} next",
    ]
    assert SECRET not in caplog.text and SECRET not in repr(binder)


async def test_no_broker_reachable_is_one_error_naming_each_without_the_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    first, second = f"{HOST}:{free_port()}", f"{HOST}:{free_port()}"
    url = f"mqtt://{USERINFO}@{first}, mqtt://{USERINFO}@{second}"  # as in a variable
    binder = MqttBinder("down", {**SETTINGS, "url": url})
    with pytest.raises(MqttConnectionError) as info:
        await binder.start()
    await binder.close()
    assert str(info.value) == (
        f"cannot connect to the MQTT broker at {first}: {REFUSED}; "
        f"cannot connect to the MQTT broker at {second}: {REFUSED}"
    )
    assert SECRET not in caplog.text


async def test_a_refusal_by_one_broker_is_access_refused_whatever_the_others_say() -> None:
    """The password-protected listener of the shared broker refuses a wrong password;
    the other URL is down: the refusal decides (as for RabbitMQ's URL lists)."""
    wrong = "wrong-failover-secret"
    down = f"{HOST}:{free_port()}"
    url = [f"mqtt://{USER}:{wrong}@{down}", f"mqtt://{USER}:{wrong}@{HOST}:{AUTH_PORT}"]
    binder = MqttBinder("refused", {**SETTINGS, "url": url})
    with pytest.raises(AccessRefused) as info:
        await binder.start()
    await binder.close()
    assert str(info.value) == (
        f"the MQTT broker at {HOST}:{AUTH_PORT} refused the connection: Not authorized "
        f"(user {USER!r}: check the binder's username and password); "
        f"cannot connect to the MQTT broker at {down}: {REFUSED}"
    )
    assert wrong not in str(info.value)


# -- (b), (c) a running app keeps going when its broker dies ---------------------------------


async def test_a_running_app_fails_over_to_the_next_broker_and_loses_nothing_confirmed(
    brokers: MosquittoFactory, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A group consumer and a producer (``app.send``, 20 unconfirmed at most) run on
    broker A of ``url: [A, B]``; A is killed (SIGKILL: a crash) while messages flow.
    Both connections move to B, the consumer subscribes to ``$share/<group>/<topic>``
    there again, and every message whose publish was confirmed is received: those in
    flight at the crash are sent again to B, those published during the failover wait
    for it.  A future that failed instead would be counted, not lost silently."""
    caplog.set_level(logging.INFO)
    failed = _failed_attempts(monkeypatch)
    a, b = brokers.start("a"), brokers.start("b")
    topic, group = fresh("failover"), fresh_group()
    loop = asyncio.get_running_loop()
    received: dict[int, float] = {}  # n -> when first received
    app = App("failover")

    @app.consumer(topic, group=group, concurrency=4)
    async def handle(payload: dict[str, int]) -> None:
        received.setdefault(payload["n"], loop.time())

    config = {
        "binders": {
            "mqtt": {"type": "mqtt", "url": [a.url(USERINFO), b.url(USERINFO)], **SETTINGS}
        },
        "default_binder": "mqtt",
    }
    total, window = 1500, asyncio.Semaphore(20)
    outcome: dict[int, str | None] = {}  # n -> None when confirmed, else the error
    sends: list[asyncio.Task[None]] = []

    async def send(n: int) -> None:
        try:
            await app.send(topic, {"n": n})
        except Exception as exc:
            outcome[n] = describe_error(exc)
        else:
            outcome[n] = None
        finally:
            window.release()

    async def produce() -> None:
        for n in range(total):
            await window.acquire()
            sends.append(asyncio.create_task(send(n)))

    async with run_app(app, config) as harness:
        binder = harness.binder
        assert isinstance(binder, MqttBinder)
        consumer = binder._consumers[0].connection
        await _on(consumer, a.address)
        producing = asyncio.create_task(produce())
        await _on(binder._publisher, a.address)
        await wait_until(
            lambda: len(outcome) >= 300 and len(sends) - len(outcome) >= 10,
            20,
            "300 messages confirmed by A and 10 more unconfirmed",
        )
        a.kill()  # SIGKILL, with messages in flight
        killed_at, sent_before = loop.time(), len(sends)
        unconfirmed_at_kill = sent_before - len(outcome)
        await _on(consumer, b.address)
        await _on(binder._publisher, b.address)
        reconnected = loop.time() - killed_at
        await asyncio.wait_for(producing, 60)
        await asyncio.wait_for(asyncio.gather(*sends), 60)
        confirmed = {n for n, error in outcome.items() if error is None}
        await wait_until(
            lambda: confirmed <= received.keys(),
            30,
            "every confirmed message",
            detail=lambda: f"missing {sorted(confirmed - received.keys())[:20]}",
        )
        assert consumer is not None
        assert f"$share/{group}/{topic}" in consumer._subscriptions

    failures = {n: e for n, e in outcome.items() if e is not None}
    after_kill = [received[n] for n in range(sent_before, total) if n in received]
    gap = min(after_kill) - killed_at
    print(
        f"\nfailover: connections on B {reconnected:.2f}s after the kill, first message "
        f"published after it received {gap:.2f}s after it; {len(confirmed)} confirmed, "
        f"{len(failures)} failed, {len(confirmed - received.keys())} lost, "
        f"{len(received)} received ({sent_before} sent before the kill, "
        f"{unconfirmed_at_kill} of them unconfirmed then)"
    )
    assert len(outcome) == total and unconfirmed_at_kill >= 10
    assert confirmed <= received.keys(), "a confirmed message was lost"
    assert not failures, f"publishes failed during the failover: {failures}"
    assert reconnected < 10

    # (c) one line per failed attempt (the reconnects trying the dead A), naming it and
    # never the password; the loss, the move to B and the new session are logged.
    assert failed and {address for address, _ in failed} == {a.address}
    _assert_one_line_per_failed_attempt(failed, _dialer_lines(caplog))
    messages = [r.getMessage() for r in caplog.records]
    assert SECRET not in caplog.text
    assert any(
        "reconnected, failing over from " + a.address in m and "mqtt consumer handle-in-0" in m
        for m in messages
    )
    assert any("the broker had no session for client id" in m for m in messages)


async def test_publishes_a_dead_broker_never_confirmed_are_sent_again_to_the_next(
    brokers: MosquittoFactory,
) -> None:
    """Broker A hangs (SIGSTOP: it takes bytes and answers nothing), ten QoS 1
    publishes go out to it unconfirmed, then it dies: paho sends them again on the
    connection to B, where their futures resolve and the group consumer gets them."""
    a, b = brokers.start("a"), brokers.start("b")
    binder = MqttBinder("resend", {**SETTINGS, "url": [a.url(), b.url()]})
    await binder.start()
    try:
        topic, group = fresh("resend"), fresh_group()
        received = Collector()
        consumer = await consume(binder, consumer_spec("in", topic, group=group), received)
        producer = await binder.bind_producer(producer_spec("out", topic))
        await producer.publish(_json({"n": -1}))
        await received.wait_for(1)
        publisher = binder._publisher
        assert publisher is not None and publisher.settings.address == a.address
        a.freeze()
        futures = [producer.publish(_json({"n": n})) for n in range(10)]
        await wait_until(lambda: not publisher._client.want_write(), 5, "the publishes written")
        assert not any(f.done() for f in futures), "a frozen broker confirms nothing"
        a.kill()  # its connections are reset: the ten were sent and never confirmed
        await asyncio.wait_for(asyncio.gather(*futures), 30)
        assert publisher.settings.address == b.address
        await received.wait_until(
            lambda: set(range(10)) <= {m.json()["n"] for m in received.messages},
            20,
            "the ten re-sent messages on B",
        )
        await consumer.close()
    finally:
        await binder.close()


# -- what a bridge does (the alternative to clustering the docs describe) ---------------------


async def _bridged(sender: MqttBinder, receiver: MqttBinder) -> None:
    """Wait until a probe published through ``sender`` reaches ``receiver`` (the bridge
    connects on its own schedule): one probe every 0.2 s, 20 s at most."""
    topic = fresh("probe")
    probes = Collector()
    watcher = await consume(receiver, consumer_spec("probe", topic), probes)
    producer = await sender.bind_producer(producer_spec("probe-out", topic))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    try:
        while not probes.messages:
            assert loop.time() < deadline, "the bridge did not come up within 20 s"
            await producer.publish(_json({"probe": True}))
            with contextlib.suppress(AssertionError):
                await probes.wait_for(1, timeout=0.2)
    finally:
        await watcher.close()


async def test_bridged_brokers_deliver_everywhere_and_a_group_split_over_both_twice(
    brokers: MosquittoFactory,
) -> None:
    """One bridge, configured on A only (``topic # both 1``): a message published on
    either broker reaches plain subscribers on both, once (no loop); a group with a
    member on each broker gets every message once per broker, i.e. twice."""
    b = brokers.start("b")
    a = brokers.start("a", f"connection to-b\naddress {b.address}\ntopic # both 1\n")
    on_a = MqttBinder("on-a", {**SETTINGS, "url": a.url()})
    on_b = MqttBinder("on-b", {**SETTINGS, "url": b.url()})
    await on_a.start()
    await on_b.start()
    bound: list[Any] = []
    try:
        await _bridged(on_a, on_b)
        await _bridged(on_b, on_a)
        topic, group = fresh("bridged"), fresh_group()
        plain_a, plain_b, member_a, member_b = Collector(), Collector(), Collector(), Collector()
        for binder, spec, collector in [
            (on_a, consumer_spec("plain-a", topic), plain_a),
            (on_b, consumer_spec("plain-b", topic), plain_b),
            (on_a, consumer_spec("member-a", topic, group=group), member_a),
            (on_b, consumer_spec("member-b", topic, group=group), member_b),
        ]:
            bound.append(await consume(binder, spec, collector))
        from_a = await on_a.bind_producer(producer_spec("out-a", topic))
        from_b = await on_b.bind_producer(producer_spec("out-b", topic))
        sent = [f"{where}-{n}" for where in ("a", "b") for n in range(10)]
        for text in sent:
            await (from_a if text.startswith("a") else from_b).publish(_json({"id": text}))

        def ids(collector: Collector) -> list[str]:
            return sorted(m.json()["id"] for m in collector.messages)

        group_total = lambda: len(member_a.messages) + len(member_b.messages)  # noqa: E731
        await wait_until(lambda: group_total() >= 40, 20, "each message twice in the group")
        await plain_a.wait_for(20)
        await plain_b.wait_for(20)
        assert ids(plain_a) == ids(plain_b) == sorted(sent), "once on each broker"
        assert ids(member_a) == ids(member_b) == sorted(sent), "once per broker in the group"
    finally:
        for consumer in bound:
            await consumer.close()
        await on_a.close()
        await on_b.close()
