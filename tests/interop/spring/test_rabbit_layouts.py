"""eventbinder and Spring Cloud Stream sharing RabbitMQ queues, against the real Spring app.

* A consumer group shared by both, in each of the two group-queue layouts: Spring's
  default (``autoBindDlq: false``, eventbinder needs ``auto_bind_dlq: false``) and
  eventbinder's default (``auto_bind_dlq: true``, Spring needs ``autoBindDlq: true``).
* Dead letters both ways through the conventional DLQ ``<destination>.<group>.dlq``:
  the other side reads the failure headers the writer left (``Message.dead_letter``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import amqp
import pytest

from binder.app import App
from binder.errors import BinderError
from binder.message import Message
from binder.testing import Harness, run_app, wait_until
from tests.interop.spring.springapp import SpringApp, SpringFactory
from tests.rabbit.support import delete_later, fresh

pytestmark = pytest.mark.broker("rabbit")

#: The shared consumer group, and the group of eventbinder's reader of Spring's output.
GROUP = "shared"
READER = "eventbinder"
#: Messages sent to a shared group.
COUNT = 40


@pytest.fixture
def broker() -> str:
    """RabbitMQ only (the conftest's ``broker`` runs a test on both brokers)."""
    return "rabbit"


def _names(prefix: str) -> tuple[str, str, str]:
    """A fresh destination, its group queue and its DLQ, all deleted after the test."""
    destination = fresh(prefix)
    queue = f"{destination}.{GROUP}"
    delete_later(exchanges=(destination, queue), queues=(queue, f"{queue}.dlq"))
    return destination, queue, f"{queue}.dlq"


def _output(prefix: str) -> str:
    """A fresh destination Spring writes to and eventbinder reads (group ``READER``)."""
    destination = fresh(prefix)
    queue = f"{destination}.{READER}"
    delete_later(exchanges=(destination,), queues=(queue, f"{queue}.dlq"))
    return destination


def _dead_letter_arguments(queue: str) -> dict[str, str]:
    """The group queue's arguments in the layout with broker-side dead-lettering."""
    return {"x-dead-letter-exchange": "DLX", "x-dead-letter-routing-key": queue}


async def _accepts(queue: str, arguments: dict[str, str]) -> bool:
    """Whether RabbitMQ accepts re-declaring the existing durable ``queue`` with exactly
    ``arguments``: it refuses (PRECONDITION_FAILED) when the queue's own differ."""
    return await asyncio.to_thread(_declare_again, queue, arguments)


def _declare_again(queue: str, arguments: dict[str, str]) -> bool:
    conn = amqp.Connection("127.0.0.1:5672", userid="guest", password="guest")
    conn.connect()
    try:
        conn.channel().queue_declare(queue, passive=True)  # it exists
        try:
            conn.channel().queue_declare(
                queue, durable=True, auto_delete=False, arguments=arguments
            )
        except amqp.exceptions.PreconditionFailed:
            return False
        return True
    finally:
        with contextlib.suppress(Exception):
            conn.close()


def _group_member(destination: str, spring_output: str) -> tuple[App, list[int], list[Message]]:
    """An app with a member of ``GROUP`` on ``destination`` (prefetch 1, like Spring's
    default) and a reader of what Spring's ``member`` forwards to ``spring_output``:
    the app, the ``n`` of each message it handled, and Spring's forwarded messages."""
    app = App("layouts")
    mine: list[int] = []
    forwarded: list[Message] = []

    @app.consumer(destination, group=GROUP, prefetch=1)
    def take(order: dict[str, Any]) -> None:
        mine.append(order["n"])

    @app.consumer(spring_output, group=READER)
    def read(message: Message) -> None:
        forwarded.append(message)

    return app, mine, forwarded


def _member(spring: SpringFactory, destination: str, output: str, **rabbit: str) -> SpringApp:
    """Spring's ``member`` in ``GROUP`` on ``destination``, forwarding to ``output``;
    ``rabbit``: its Rabbit consumer properties (``auto_bind_dlq="true"``)."""
    binding = "spring.cloud.stream.rabbit.bindings.member-in-0.consumer"
    return spring(
        "rabbit",
        {
            "spring.cloud.stream.bindings.member-in-0.destination": destination,
            "spring.cloud.stream.bindings.member-in-0.group": GROUP,
            "spring.cloud.stream.bindings.member-out-0.destination": output,
            **{f"{binding}.{key.replace('_', '-')}": value for key, value in rabbit.items()},
        },
    )


async def _share(
    harness: Harness, destination: str, mine: list[int], forwarded: list[Message], member: SpringApp
) -> None:
    """Send ``COUNT`` messages to the shared group: each is handled exactly once, by
    eventbinder or by Spring, and each side handles some.  RabbitMQ deals a queue's
    messages round-robin to its consumers with room (both have a prefetch of 1), so
    each gets one of the first two; how many more depends on speed (Spring's first
    message, on a cold JVM, is slow: eventbinder often takes 30 or more)."""
    for n in range(COUNT):
        await harness.send(destination, {"n": n})
    await wait_until(
        lambda: len(mine) + len(forwarded) >= COUNT,
        15.0,
        f"{COUNT} messages handled by the group",
        detail=lambda: f"eventbinder {len(mine)}, Spring {len(forwarded)}; {member.problems()}",
    )
    by_spring = [json.loads(message.payload)["n"] for message in forwarded]
    assert sorted(mine + by_spring) == list(range(COUNT))  # each exactly once
    assert mine, "eventbinder got none of the group's messages"
    assert by_spring, "Spring got none of the group's messages"
    assert {message.headers.get("x-handled-by") for message in forwarded} == {"spring"}


async def test_spring_default_layout_is_shared_with_auto_bind_dlq_false(
    spring: SpringFactory, eventbinder_config: dict[str, Any]
) -> None:
    destination, queue, _ = _names("layout-spring-first")
    output = _output("layout-spring-first-out")
    app, mine, forwarded = _group_member(destination, output)
    async with _member(spring, destination, output) as member:  # autoBindDlq: false
        assert await _accepts(queue, {}), "Spring's default group queue has arguments"
        assert not await _accepts(queue, _dead_letter_arguments(queue))
        with pytest.raises(BinderError, match="auto_bind_dlq: false to share it"):
            async with run_app(app, eventbinder_config):
                pass
        bindings = {"take-in-0": {"rabbit": {"auto_bind_dlq": False}}}
        async with run_app(app, {**eventbinder_config, "bindings": bindings}) as harness:
            await _share(harness, destination, mine, forwarded, member)


async def test_eventbinder_default_layout_is_shared_with_auto_bind_dlq_true(
    spring: SpringFactory, eventbinder_config: dict[str, Any]
) -> None:
    destination, queue, dlq = _names("layout-eventbinder-first")
    output = _output("layout-eventbinder-first-out")
    app, mine, forwarded = _group_member(destination, output)
    async with run_app(app, eventbinder_config) as harness:
        assert await _accepts(queue, _dead_letter_arguments(queue))
        assert not await _accepts(queue, {})
        assert await _accepts(dlq, {})  # the DLQ has none
        async with _member(spring, destination, output, auto_bind_dlq="true") as member:
            await _share(harness, destination, mine, forwarded, member)
    # With its default layout here Spring would start and share the group all the same,
    # but log "Shutdown Signal: channel error; ... PRECONDITION_FAILED - inequivalent arg
    # 'x-dead-letter-exchange'" and stall its first publish for ~12 s of re-declarations.
    assert "inequivalent" not in member.log_text(), member.problems()


async def test_a_spring_dead_letter_reads_in_eventbinder(
    spring: SpringFactory, eventbinder_config: dict[str, Any]
) -> None:
    destination, _, dlq = _names("layout-spring-dead")
    app = App("layouts")
    dead: list[Message] = []

    @app.consumer(dlq, dead_letter=False)
    def read_dead(message: Message) -> None:
        dead.append(message)

    # the destination is the queue itself (no exchange): the DLQ as Spring declared it
    reader = {"read_dead-in-0": {"rabbit": {"default_exchange": True}}}
    fail = spring(
        "rabbit",
        {
            "spring.cloud.stream.bindings.fail-in-0.destination": destination,
            "spring.cloud.stream.bindings.fail-in-0.group": GROUP,
            "spring.cloud.stream.rabbit.bindings.fail-in-0.consumer.auto-bind-dlq": "true",
        },
    )
    async with fail, run_app(app, {**eventbinder_config, "bindings": reader}) as harness:
        sent = await harness.send(
            destination, {"order": 9}, headers={"x-tenant": "acme"}, key="order-9"
        )
        await wait_until(
            lambda: dead, 15.0, f"Spring's dead letter on {dlq!r}", detail=fail.problems
        )
    got = dead[0]
    assert got.payload == sent.payload
    assert got.content_type == "application/json"
    assert got.headers.get("x-tenant") == "acme"
    assert got.key == "order-9"
    assert got.message_id == sent.message_id
    letter = got.dead_letter
    assert letter is not None, got.headers
    assert letter.destination == destination
    assert letter.routing_key == destination  # eventbinder's default routing key
    assert letter.exception_message == "spring says no"
    assert letter.stacktrace is not None
    assert "IllegalStateException: spring says no" in letter.stacktrace


async def test_an_eventbinder_dead_letter_reads_in_spring(
    spring: SpringFactory, eventbinder_config: dict[str, Any]
) -> None:
    destination, queue, _ = _names("layout-eventbinder-dead")
    output = _output("layout-eventbinder-dead-out")
    app = App("layouts")
    relayed: list[Message] = []

    @app.consumer(destination, group=GROUP, max_attempts=1)
    def refuse(order: dict[str, Any]) -> None:
        raise ValueError(f"eventbinder says no to {order['n']}")

    @app.consumer(output, group=READER)
    def read(message: Message) -> None:
        relayed.append(message)

    # Spring's queue <destination>.<group> is the DLQ, declared as eventbinder did (no
    # arguments); no exchange, no binding: Spring only consumes it
    consumer = "spring.cloud.stream.rabbit.bindings.relay-in-0.consumer"
    relay = spring(
        "rabbit",
        {
            "spring.cloud.stream.bindings.relay-in-0.destination": queue,
            "spring.cloud.stream.bindings.relay-in-0.group": "dlq",
            f"{consumer}.declare-exchange": "false",
            f"{consumer}.bind-queue": "false",
            "spring.cloud.stream.bindings.relay-out-0.destination": output,
        },
    )
    async with run_app(app, eventbinder_config) as harness, relay:
        sent = await harness.send(destination, {"n": 4}, headers={"x-tenant": "acme"})
        await wait_until(
            lambda: relayed, 15.0, "the dead letter Spring relayed", detail=relay.problems
        )
    assert "inequivalent" not in relay.log_text(), relay.problems()
    got = relayed[0]
    assert got.payload == sent.payload
    assert got.headers.get("x-relayed-by") == "spring"
    assert got.headers.get("x-tenant") == "acme"
    # Spring saw the failure headers as string headers and wrote them back as such
    assert got.headers.get("x-exception-message") == "eventbinder says no to 4"
    assert got.headers.get("x-exception-type") == "builtins.ValueError"
    assert got.headers.get("x-original-exchange") == destination
    letter = got.dead_letter
    assert letter is not None, got.headers
    assert letter.destination == destination
    assert letter.group == GROUP
    assert letter.routing_key == destination
    assert letter.exception_type == "builtins.ValueError"
    assert letter.exception_message == "eventbinder says no to 4"
    assert letter.attempts == 1
    assert letter.stacktrace is not None and "eventbinder says no to 4" in letter.stacktrace
