"""ACLs on the broker's SASL_SSL listener (scripts/brokers: StandardAuthorizer; the SCRAM
user orders-only may use only the topics and consumer groups whose names start with
``orders-only.``): what it is allowed works; a topic or group outside its prefix ends the
start at once with an AccessRefused naming the topic or the group, and no secret."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest

from binder.app import App
from binder.config import load_settings
from binder.errors import AccessRefused
from binder.plugins import load_registry
from binder.runtime import Runtime
from binder.testing import run_app

from .helpers import LIMITED_PASSWORD, LIMITED_PREFIX, LIMITED_SETTINGS, unique

pytestmark = pytest.mark.broker("kafka")

CONFIG = {"binders": {"kafka": LIMITED_SETTINGS}}


async def test_the_user_exchanges_messages_on_its_own_topics_and_groups() -> None:
    source, group = unique(f"{LIMITED_PREFIX}in"), unique(f"{LIMITED_PREFIX}g")
    app = App("kafka-acl")
    got: list[dict[str, Any]] = []

    @app.function(input=source, output=f"{source}-out", group=group)
    def relay(order: dict[str, Any]) -> dict[str, Any]:
        return {**order, "relayed": True}

    @app.consumer(f"{source}-out", group=group)
    def collect(order: dict[str, Any]) -> None:
        got.append(order)

    async with run_app(app, CONFIG, record=False) as harness:
        await harness.send(source, {"id": 7})
        await harness.wait_for(lambda: len(got) == 1, 10, "the relayed message")
    assert got == [{"id": 7, "relayed": True}]


async def start_refused(app: App, caplog: pytest.LogCaptureFixture) -> str:
    """Start ``app`` on the limited user's binder (retrying unreachable brokers, not
    fail_fast): the AccessRefused it ends with, at once, with no secret anywhere."""
    caplog.set_level(logging.DEBUG)
    registry = load_registry()
    settings = load_settings(CONFIG, registry=registry, discover=False, environ={})
    runtime = Runtime(app, settings, registry)
    started = time.monotonic()
    try:
        with pytest.raises(AccessRefused) as refused:
            await asyncio.wait_for(runtime.start(), 10)
    finally:
        await runtime.stop()
    assert time.monotonic() - started < 3
    message = str(refused.value)
    assert LIMITED_PASSWORD not in message
    assert LIMITED_PASSWORD not in caplog.text
    assert not [r for r in caplog.records if "retrying" in r.getMessage()]
    return message


async def test_a_topic_outside_its_prefix_is_refused_by_name(
    caplog: pytest.LogCaptureFixture,
) -> None:
    topic = unique("payments")
    app = App("kafka-acl-topic")

    @app.consumer(topic, group=unique(f"{LIMITED_PREFIX}g"))
    def never(payload: bytes) -> None:
        raise AssertionError("no message can arrive")

    message = await start_refused(app, caplog)
    assert message == (
        f"describing Kafka topic '{topic}': not authorized for the topic (Returned by the "
        "broker when the client is not authorized to access the requested topic.)"
    )


async def test_a_group_outside_its_prefix_is_refused_by_name(
    caplog: pytest.LogCaptureFixture,
) -> None:
    topic, group = unique(f"{LIMITED_PREFIX}in"), unique("billing")
    app = App("kafka-acl-group")

    @app.consumer(topic, group=group)
    def never(payload: bytes) -> None:
        raise AssertionError("no message can arrive")

    message = await start_refused(app, caplog)
    assert message == (
        f"consuming Kafka topic '{topic}' in group '{group}': not authorized for the "
        f"consumer group ({group})"
    )


async def test_an_anonymous_consumer_needs_a_group_acl_too(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = App("kafka-acl-anonymous")

    @app.consumer(unique(f"{LIMITED_PREFIX}in"))
    def never(payload: bytes) -> None:
        raise AssertionError("no message can arrive")

    message = await start_refused(app, caplog)
    assert "in an anonymous group: not authorized for the consumer group (anonymous." in message
