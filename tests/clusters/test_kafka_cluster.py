"""A three-node Kafka cluster loses the leader of the partitions in use, mid-stream.

``scripts/brokers up kafka-cluster`` starts the nodes (127.0.0.1:9192, 9292, 9392;
replication factor 3, ``min.insync.replicas=2``).  A function binding relays keyed
messages between two topics of 3 partitions each (created by the binder with
replication factor 3; the binder's producer sends with ``acks=all``), and a sink
consumer collects them.  Once a quarter of the outputs arrived, the node leading
partition 0 of the input topic is killed (SIGKILL), while the test is still sending.
Kafka fences the dead node after ``broker.session.timeout.ms`` (9 s by default) and
moves its leaderships and in-sync replicas; the stream goes on from there.

What is checked: every message arrives (at-least-once: duplicates allowed, losses
not) and each key's order is kept, and the longest pause at the sink after the kill is
printed (docs/reliability.md has the figures).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import subprocess
import time
import uuid
from collections import defaultdict, deque
from pathlib import Path
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from binder import App
from binder.message import Message
from binder.testing import run_app, wait_until

pytestmark = pytest.mark.broker("kafka-cluster")

REPO = Path(__file__).resolve().parents[2]
NODES = {1: 9192, 2: 9292, 3: 9392}
SERVERS = ",".join(f"127.0.0.1:{port}" for port in NODES.values())
MESSAGES = 100_000
KEYS = 50
#: The test sends at most this many messages ahead of what the sink has received, so
#: that sending is still under way when the node is killed, and at most IN_FLIGHT
#: sends unconfirmed.
AHEAD = 10_000
IN_FLIGHT = 2_000
#: Seconds for every output to arrive after the kill.
DEADLINE = 120


def _brokers(*args: str) -> str:
    done = subprocess.run(
        [str(REPO / "scripts" / "brokers"), *args], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _active_controller() -> int:
    """The node leading the KRaft quorum (the active controller), from Kafka's tool."""
    status = _brokers(
        "kafka-run",
        "org.apache.kafka.tools.MetadataQuorumCommand",
        *("--bootstrap-server", SERVERS, "describe", "--status"),
    )
    found = re.search(r"^LeaderId:\s+(\d+)$", status, re.MULTILINE)
    assert found, status
    return int(found[1])


async def _leader_of_partition_0(admin: AIOKafkaAdminClient, topic: str) -> int:
    (described,) = await admin.describe_topics([topic])
    leaders = {p["partition"]: p["leader"] for p in described["partitions"]}
    replicas = {len(p["replicas"]) for p in described["partitions"]}
    assert len(leaders) == 3 and replicas == {3}, described
    return int(leaders[0])


def first_occurrences(seen: list[int]) -> list[int]:
    """``seen`` (one key's sequence numbers in arrival order) without redeliveries:
    each number where it first arrived.  At-least-once lets an earlier message arrive
    again after later ones (a consumer that resumes from its last committed offset
    delivers again what followed it); order is kept when these first arrivals are
    0, 1, 2, ... with nothing skipped."""
    known: set[int] = set()
    firsts = []
    for n in seen:
        if n not in known:
            known.add(n)
            firsts.append(n)
    return firsts


def test_first_occurrences_ignore_redeliveries_only() -> None:
    assert first_occurrences([0, 1, 2, 1, 2, 3]) == [0, 1, 2, 3]
    assert first_occurrences([0, 2, 1, 2]) == [0, 2, 1]  # out of order: fails the check


async def test_killing_the_partition_leader_loses_nothing() -> None:
    tag = uuid.uuid4().hex[:8]
    source, sink = f"kc-in-{tag}", f"kc-out-{tag}"
    config: dict[str, Any] = {
        "binders": {
            "cluster": {
                "type": "kafka",
                "bootstrap_servers": SERVERS,
                "replication_factor": 3,
                "partitions": 3,
                "acks": "all",
            }
        },
        "default_binder": "cluster",
    }
    app = App("kafka-cluster")
    first_at: dict[int, float] = {}  # message id -> when it first arrived at the sink
    per_key: dict[str, list[int]] = defaultdict(list)  # key -> sequence numbers as arrived
    deliveries = 0
    wrong_keys: list[tuple[str | None, str]] = []

    @app.function(input=source, output=sink, group="fn")
    async def relay(message: Message) -> Message:
        return message  # passed through: same key, same payload

    @app.consumer(sink, group="sink")
    async def collect(order: dict[str, Any], message: Message) -> None:
        nonlocal deliveries
        deliveries += 1
        if message.key != order["key"]:
            wrong_keys.append((message.key, order["key"]))
        per_key[order["key"]].append(order["seq"])
        first_at.setdefault(order["id"], time.monotonic())

    failed: list[BaseException] = []

    async def produce() -> None:
        unconfirmed: deque[Any] = deque()

        async def confirm(sent: Any) -> None:
            try:
                await sent
            except Exception as exc:  # reported to the sender: counted, asserted below
                failed.append(exc)

        for n in range(MESSAGES):
            if n - len(first_at) > AHEAD:
                await wait_until(
                    lambda n=n: n - len(first_at) <= AHEAD, 120, "the sink to catch up"
                )
            key = f"k{n % KEYS}"
            order = {"id": n, "key": key, "seq": n // KEYS}
            unconfirmed.append(app.send(source, order, key=key))
            while len(unconfirmed) > IN_FLIGHT:
                await confirm(unconfirmed.popleft())
        while unconfirmed:
            await confirm(unconfirmed.popleft())

    admin = AIOKafkaAdminClient(bootstrap_servers=SERVERS, request_timeout_ms=20000)
    await admin.start()
    killed: int | None = None
    killed_at = started = time.monotonic()
    try:
        async with run_app(app, config, record=False):
            leader = await _leader_of_partition_0(admin, source)
            producing = asyncio.create_task(produce())

            def sending_failed() -> bool:
                return producing.done() and (bool(failed) or producing.exception() is not None)

            # Whether the killed node also leads the controllers changes the stall.
            controller = await asyncio.to_thread(_active_controller)
            try:
                await wait_until(
                    lambda: len(first_at) >= MESSAGES // 4 or sending_failed(),
                    60,
                    "a quarter of the outputs",
                )
                if sending_failed():
                    await producing  # raises what stopped it, if anything did
                    raise AssertionError(f"sends failed before the kill: {failed[:3]}")
                await asyncio.to_thread(_brokers, "kafka-cluster-node", "kill", str(leader))
                killed, killed_at = leader, time.monotonic()
                await wait_until(
                    lambda: len(first_at) >= MESSAGES or sending_failed(),
                    DEADLINE,
                    "every output",
                    detail=lambda: f"{len(first_at)} of {MESSAGES} arrived, {len(failed)} failed",
                )
                await producing
            finally:
                producing.cancel()
        done_at = time.monotonic()
    finally:
        try:
            if killed is not None:
                await asyncio.to_thread(_brokers, "kafka-cluster-node", "start", str(killed))
            with contextlib.suppress(Exception):  # tidying up only: never the failure
                await admin.delete_topics([source, sink])
        finally:
            await admin.close()

    # A send that failed was reported failed to the sender (never reported sent): only
    # those may be missing, and none is.
    assert not failed, f"{len(failed)} sends failed: {failed[:3]}"
    assert sorted(first_at) == list(range(MESSAGES))
    assert not wrong_keys, f"records with another key than sent: {wrong_keys[:3]}"
    for key, seen in per_key.items():
        firsts = first_occurrences(seen)
        assert firsts == list(range(len(firsts))), f"{key} out of order: {firsts[:50]}"
    # The stall: the longest time after the kill in which no new message arrived, and
    # when the stream resumed (the end of that pause), counted from the kill.
    after = sorted(t for t in first_at.values() if t >= killed_at)
    pause, resumed = max((b - a, b) for a, b in zip([killed_at, *after], after, strict=False))
    print(
        f"\nkafka cluster: node {killed} (leader of {source}-0, "
        f"{'' if killed == controller else 'not '}the active controller) killed "
        f"{killed_at - started:.1f}s in, after {MESSAGES // 4}+ outputs; longest pause at "
        f"the sink {pause:.2f}s, resumed {resumed - killed_at:.2f}s after the kill; "
        f"{MESSAGES} messages in {done_at - started:.1f}s, "
        f"{deliveries - MESSAGES} deliveries more than once"
    )
