"""Kafka dead letters written by Spring Cloud Stream read in eventbinder, and the other
way round, in one format (``x-original-*`` with big-endian binary integers)."""

from __future__ import annotations

import json
import time
import uuid

import pytest

from binder.app import App
from binder.message import Message
from binder.testing import run_app, wait_until
from tests.interop.spring.springapp import SpringFactory
from tests.interop.spring.support import create_topics, eventbinder_settings

pytestmark = pytest.mark.broker("kafka")


def _fresh(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def test_dead_letters_written_by_either_side_read_on_the_other(
    spring: SpringFactory,
) -> None:
    spring_in, spring_group = _fresh("dl-spring-in"), _fresh("spring")
    ours_in, our_group = _fresh("dl-eventbinder-in"), _fresh("eventbinder")
    inspected = _fresh("dl-inspected")
    spring_dlq, our_dlq = f"error.{spring_in}.{spring_group}", f"error.{ours_in}.{our_group}"
    await create_topics(1, spring_in, spring_dlq, ours_in, our_dlq, inspected)

    app = App("interop")
    spring_letters: list[Message] = []
    reports: list[dict[str, object]] = []

    @app.consumer(ours_in, group=our_group, max_attempts=1)
    def refuse(order: dict[str, int]) -> None:
        raise ValueError(f"eventbinder says no to {order['id']}")

    @app.consumer(spring_dlq, group="audit")
    def audit(message: Message) -> None:
        spring_letters.append(message)

    @app.consumer(inspected, group="audit")
    def report(message: Message) -> None:
        reports.append(message.json())

    properties = {
        "spring.cloud.stream.bindings.fail-in-0.destination": spring_in,
        "spring.cloud.stream.bindings.fail-in-0.group": spring_group,
        "spring.cloud.stream.bindings.dlqinspect-in-0.destination": our_dlq,
        "spring.cloud.stream.bindings.dlqinspect-in-0.group": spring_group,
        "spring.cloud.stream.bindings.dlqinspect-out-0.destination": inspected,
    }
    started = time.time()
    async with (
        spring("kafka", properties) as java,
        run_app(app, eventbinder_settings("kafka")) as harness,
    ):
        sent = await harness.send(spring_in, {"id": 1}, key="order-1", headers={"x-tenant": "acme"})
        await harness.send(ours_in, {"id": 2}, key="order-2")
        await wait_until(
            lambda: spring_letters and reports,
            30.0,
            "Spring's dead letter in eventbinder and eventbinder's in Spring",
            detail=java.problems,
        )

    # Spring -> eventbinder
    letter = spring_letters[0]
    assert letter.payload == sent.payload
    assert letter.key == "order-1"  # Spring keeps the record key
    assert letter.content_type == "application/json"
    assert letter.headers["x-tenant"] == "acme"
    origin = letter.dead_letter
    assert origin is not None
    assert (origin.destination, origin.partition, origin.offset) == (spring_in, 0, 0)
    assert origin.timestamp is not None and abs(origin.timestamp - started) < 60
    assert origin.exception_type == "org.springframework.messaging.MessageHandlingException"
    assert origin.exception_message is not None
    assert "spring says no" in origin.exception_message
    assert origin.stacktrace is not None
    assert "java.lang.IllegalStateException: spring says no" in origin.stacktrace

    # eventbinder -> Spring: what Spring decoded from eventbinder's dead letter
    seen = reports[0]
    assert seen["errors"] == {}, seen["errors"]
    assert seen["topic"] == ours_in
    assert (seen["partition"], seen["offset"]) == (0, 0)
    assert seen["timestampType"] == "CreateTime"
    assert abs(int(seen["timestamp"]) / 1000 - started) < 60  # type: ignore[call-overload]
    assert seen["exceptionFqcn"] == "builtins.ValueError"
    assert seen["exceptionMessage"] == "eventbinder says no to 2"
    assert seen["consumerGroup"] == our_group
    assert json.loads(str(seen["payload"])) == {"id": 2}
