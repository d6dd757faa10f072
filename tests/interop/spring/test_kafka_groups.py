"""A Spring Cloud Stream consumer and an eventbinder consumer in one Kafka group.

The Spring app keeps the Java client's default assignment strategies (range and
cooperative-sticky); eventbinder offers roundrobin and range.  The group must form
with ``range`` whichever member joins first, split the partitions, and handle every
message exactly once.  (With roundrobin alone, the second member to join was refused
with InconsistentGroupProtocol.)
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from binder.app import App
from binder.message import Message
from binder.testing import run_app, wait_until
from tests.interop.spring.springapp import SpringApp, SpringFactory
from tests.interop.spring.support import create_topics, eventbinder_settings

pytestmark = pytest.mark.broker("kafka")

MESSAGES = 40


def _fresh(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.mark.parametrize("first", ["spring", "eventbinder"])
async def test_a_group_shared_with_a_spring_consumer_splits_the_partitions(
    first: str, spring: SpringFactory
) -> None:
    topic, forwarded, group = _fresh("shared"), _fresh("shared-spring-out"), _fresh("g")
    await create_topics(4, topic, forwarded)
    app = App("interop")
    ours: list[Message] = []
    theirs: list[Message] = []

    @app.consumer(topic, group=group)
    def handle(message: Message) -> None:
        ours.append(message)

    @app.consumer(forwarded, group="collector")
    def collect(message: Message) -> None:
        theirs.append(message)

    member = spring(
        "kafka",
        {
            "spring.cloud.stream.bindings.member-in-0.destination": topic,
            "spring.cloud.stream.bindings.member-in-0.group": group,
            "spring.cloud.stream.bindings.member-out-0.destination": forwarded,
        },
    )
    async with _both_running(first, member, app, eventbinder_settings("kafka")) as harness:
        # Spring logs each assignment; the last one is from the rebalance that took
        # eventbinder in (or from its own joining), so both own partitions now.
        member.wait_for_log(rf"{group}: partitions assigned: \[{topic}-\d")
        for n in range(MESSAGES):
            await harness.send(topic, {"n": n}, key=f"order-{n}")
        await wait_until(
            lambda: len(ours) + len(theirs) >= MESSAGES,
            30.0,
            f"{MESSAGES} messages handled by eventbinder or Spring",
            detail=member.problems,
        )
    handled = [m.json()["n"] for m in ours] + [m.json()["n"] for m in theirs]
    assert sorted(handled) == list(range(MESSAGES)), "each message handled exactly once"
    assert ours and theirs, "both members got partitions"
    our_partitions = {m.partition for m in ours}
    their_partitions = {int(m.headers["x-source-partition"]) for m in theirs}
    assert not our_partitions & their_partitions
    assert our_partitions | their_partitions <= {0, 1, 2, 3}
    assert all(m.headers.get("x-handled-by") == "spring" for m in theirs)


@contextlib.asynccontextmanager
async def _both_running(
    first: str, member: SpringApp, app: App, config: dict[str, Any]
) -> AsyncIterator[Any]:
    """Start the Spring app and the eventbinder app, ``first`` first."""
    if first == "spring":
        async with member, run_app(app, config) as harness:
            yield harness
    else:
        async with run_app(app, config) as harness, member:
            yield harness
