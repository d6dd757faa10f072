"""A three-node RabbitMQ cluster loses the leader of the queues in use, mid-stream.

``scripts/brokers up rabbit-cluster`` starts the nodes (5681-5683).  A function binding
relays messages between two quorum queues; the node leading the function's input queue
is killed (SIGKILL) once a quarter of the outputs arrived.  The binder reconnects to a
surviving node from its URL list, re-declares what it can, and the stream goes on:
every message arrives (at-least-once: duplicates allowed, losses not).
"""

from __future__ import annotations

import asyncio
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from binder import App
from binder.testing import run_app, wait_until

pytestmark = pytest.mark.broker("rabbit-cluster")

REPO = Path(__file__).resolve().parents[2]
NODES = {1: 5681, 2: 5682, 3: 5683}
MESSAGES = 5000


def _brokers(*args: str) -> str:
    done = subprocess.run(
        [str(REPO / "scripts" / "brokers"), *args], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _ctl(node: int, *args: str) -> str:
    env = {"RABBITMQ_NODENAME": f"rabbit-c{node}@localhost", "PATH": "/usr/sbin:/usr/bin:/bin"}
    done = subprocess.run(
        ["rabbitmqctl", "-q", "-n", f"rabbit-c{node}@localhost", *args],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _leader_of(queue: str) -> int:
    for line in _ctl(1, "list_queues", "name", "leader", "--no-table-headers").splitlines():
        name, _, leader = line.partition("\t")
        if name == queue:
            return int(leader.strip().split("@")[0].removeprefix("rabbit-c"))
    raise AssertionError(f"no quorum queue {queue}")


async def test_killing_the_leader_node_loses_nothing() -> None:
    tag = uuid.uuid4().hex[:8]
    source, sink = f"cl-in-{tag}", f"cl-out-{tag}"
    urls = [f"amqp://guest:guest@127.0.0.1:{port}//" for port in NODES.values()]
    quorum = {"rabbit": {"queue_type": "quorum"}}
    config: dict[str, Any] = {
        "binders": {"cluster": {"type": "rabbit", "url": urls}},
        "default_binder": "cluster",
        "bindings": {"relay-in-0": quorum, "collect-in-0": quorum},
    }
    app = App("cluster")
    arrivals: dict[int, float] = {}

    @app.function(input=source, output=sink, group="fn")
    def relay(order: dict[str, int]) -> dict[str, int]:
        return order

    @app.consumer(sink, group="sink")
    def collect(order: dict[str, int]) -> None:
        arrivals.setdefault(order["n"], time.monotonic())

    killed: int | None = None
    try:
        async with run_app(app, config) as harness:
            leader = await asyncio.to_thread(_leader_of, f"{source}.fn")
            sends = []
            for n in range(MESSAGES):
                sends.append(asyncio.ensure_future(harness.send(source, {"n": n})))
                if n == MESSAGES // 4:
                    await wait_until(lambda: len(arrivals) >= MESSAGES // 8, 60, "early outputs")
                    await asyncio.to_thread(_brokers, "rabbit-cluster-node", "kill", str(leader))
                    killed, killed_at = leader, time.monotonic()
            results = await asyncio.gather(*sends, return_exceptions=True)
            failed = [r for r in results if isinstance(r, BaseException)]
            await wait_until(lambda: len(arrivals) >= MESSAGES - len(failed), 180, "every output")
    finally:
        if killed is not None:
            await asyncio.to_thread(_brokers, "rabbit-cluster-node", "start", str(killed))
    # A send that failed was reported failed to the sender (never reported sent): only
    # those may be missing, and none is.
    assert not failed, f"{len(failed)} sends failed: {failed[:3]}"
    assert sorted(arrivals) == list(range(MESSAGES))
    after = sorted(t for t in arrivals.values() if t >= killed_at)
    gaps = [b - a for a, b in zip([killed_at, *after], after, strict=False)]
    print(f"\nrabbit cluster: leader node {killed} killed; longest pause {max(gaps):.2f}s")
