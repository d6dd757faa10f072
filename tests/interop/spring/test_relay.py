"""eventbinder -> Spring Cloud Stream -> eventbinder, on RabbitMQ and on Kafka.

A real Spring app (``app/``, built with Maven) relays what an eventbinder app sends:
the payload, the content type and the eventbinder app's headers must survive both
hops, and the header Spring adds must reach eventbinder.  A message Spring builds
itself (``member``, nothing copied) must read as well.
"""

from __future__ import annotations

import json
from typing import Any

from binder.app import App
from binder.message import Message
from binder.testing import run_app, wait_until
from tests.interop.spring.springapp import SpringFactory
from tests.rabbit.support import delete_later, fresh

#: The group of the Spring app's consumers, and of eventbinder's.
SPRING_GROUP = "spring"
EVENTBINDER_GROUP = "eventbinder"


def _forget_later(broker: str, *destinations: str) -> None:
    """On RabbitMQ, delete the exchanges and group queues of ``destinations`` after the
    test (Kafka topics have fresh names and are left, as in tests/kafka)."""
    if broker != "rabbit":
        return
    queues = tuple(
        f"{destination}.{group}{suffix}"
        for destination in destinations
        for group in (SPRING_GROUP, EVENTBINDER_GROUP)
        for suffix in ("", ".dlq")
    )
    delete_later(exchanges=destinations, queues=queues)


def _collector(app: App, destination: str) -> list[Message]:
    """The messages ``app`` receives on ``destination`` (group ``eventbinder``)."""
    received: list[Message] = []

    @app.consumer(destination, group=EVENTBINDER_GROUP)
    def collect(message: Message) -> None:
        received.append(message)

    return received


async def test_relay_through_spring_keeps_payload_content_type_and_headers(
    broker: str, eventbinder_config: dict[str, Any], spring: SpringFactory
) -> None:
    inbound, outbound = fresh("spring-relay-in"), fresh("spring-relay-out")
    _forget_later(broker, inbound, outbound)
    app = App("interop")
    received = _collector(app, outbound)
    relay = spring(
        broker,
        {
            "spring.cloud.stream.bindings.relay-in-0.destination": inbound,
            "spring.cloud.stream.bindings.relay-in-0.group": SPRING_GROUP,
            "spring.cloud.stream.bindings.relay-out-0.destination": outbound,
        },
    )
    async with relay, run_app(app, eventbinder_config) as harness:
        sent = await harness.send(
            inbound,
            {"order": 7, "text": "héllo"},
            headers={"x-tenant": "acme", "x-trace": "t-1"},
            content_type="application/json",
        )
        await wait_until(
            lambda: received,
            30.0,
            f"the message relayed by Spring on {outbound!r}",
            detail=relay.problems,
        )
    got = received[0]
    assert got.payload == sent.payload
    assert json.loads(got.payload) == {"order": 7, "text": "héllo"}
    assert got.content_type == "application/json"
    assert got.headers.get("x-tenant") == "acme"
    assert got.headers.get("x-trace") == "t-1"
    assert got.headers.get("x-relayed-by") == "spring"
    # Spring Kafka's list of header types is read, not passed on as a header
    assert "spring_json_header_types" not in got.headers


async def test_a_message_spring_builds_reads_in_eventbinder(
    broker: str, eventbinder_config: dict[str, Any], spring: SpringFactory
) -> None:
    inbound, outbound = fresh("spring-member-in"), fresh("spring-member-out")
    _forget_later(broker, inbound, outbound)
    app = App("interop")
    received = _collector(app, outbound)
    member = spring(
        broker,
        {
            "spring.cloud.stream.bindings.member-in-0.destination": inbound,
            "spring.cloud.stream.bindings.member-in-0.group": SPRING_GROUP,
            "spring.cloud.stream.bindings.member-out-0.destination": outbound,
        },
    )
    async with member, run_app(app, eventbinder_config) as harness:
        sent = await harness.send(inbound, {"n": 1}, headers={"x-tenant": "acme"})
        await wait_until(
            lambda: received,
            30.0,
            f"Spring's message on {outbound!r}",
            detail=member.problems,
        )
    got = received[0]
    assert got.payload == sent.payload
    # Spring's own content type (its default), in Spring's own encoding on each broker
    assert got.content_type == "application/json"
    assert got.headers.get("x-handled-by") == "spring"
    assert "x-tenant" not in got.headers  # member copies no header
