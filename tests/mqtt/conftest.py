"""Fixtures for the MQTT binder tests: started binders, fresh topics, bound handlers.

Recording handlers and waits come from :mod:`binder.testing` (``Collector``,
``wait_until``)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest_asyncio

from binder.spi import Binder, ConsumerSpec, Delivery, Handler, ProducerSpec
from binder.testing import BoundConsumer, consume
from binders.mqtt.binder import MqttBinder
from binders.mqtt.plugin import MqttBinderType

HOST = "127.0.0.1"
PORT = 1883
AUTH_PORT = 1884
USER = "eventbinder"
PASSWORD = "eventbinder-secret"

#: Settings for tests: quick reconnects, short-lived sessions.
BASE_SETTINGS: dict[str, Any] = {
    "host": HOST,
    "port": PORT,
    "client_id": "eb-test",
    "session_expiry": 120,
    "reconnect_min_delay": 0.2,
    "reconnect_max_delay": 1.0,
    "connect_timeout": 5.0,
}


def consumer_spec(
    binding: str, destination: str, *, options: dict[str, Any] | None = None, **fields: Any
) -> ConsumerSpec:
    """A consumer spec with complete ``mqtt:`` options, as the runtime builds it."""
    checked = MqttBinderType().validate_binding_options(options or {}, "consumer")
    return ConsumerSpec(binding, destination, options=checked, **fields)


def producer_spec(
    binding: str, destination: str, *, options: dict[str, Any] | None = None, **fields: Any
) -> ProducerSpec:
    """A producer spec with complete ``mqtt:`` options, as the runtime builds it."""
    checked = MqttBinderType().validate_binding_options(options or {}, "producer")
    return ProducerSpec(binding, destination, options=checked, **fields)


def fresh(prefix: str) -> str:
    """A uuid-suffixed topic or group name."""
    return f"ebtest/{prefix}-{uuid.uuid4().hex[:10]}"


def fresh_group(prefix: str = "g") -> str:
    """A uuid-suffixed group name (no slashes: it is part of ``$share/<group>/``)."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


Subscribe = Callable[[Binder, ConsumerSpec, Handler], Awaitable[BoundConsumer]]


def count_unsettled(consumer: BoundConsumer) -> list[int]:
    """From now on, at every delivery into ``consumer``'s engine, append how many of its
    deliveries are unsettled to the list returned (which starts with the count now)."""
    engine = consumer.dispatcher
    counts = [engine.in_flight]
    deliver = engine.deliver

    def counting(delivery: Delivery) -> None:
        deliver(delivery)
        counts.append(engine.in_flight)

    engine.deliver = counting  # type: ignore[method-assign]
    return counts


@pytest_asyncio.fixture
async def subscribe() -> AsyncIterator[Subscribe]:
    """Bind a plain async handler through the delivery engine; closed at teardown.

    A handler that raises has its message nacked (for MQTT: logged and acknowledged);
    there are no retries and no dead letters (see :func:`binder.testing.consume`).
    """
    bound: list[BoundConsumer] = []

    async def bind(binder: Binder, spec: ConsumerSpec, handler: Handler) -> BoundConsumer:
        consumer = await consume(binder, spec, handler)
        bound.append(consumer)
        return consumer

    yield bind
    for consumer in bound:
        with contextlib.suppress(Exception):
            await consumer.close(timeout=5.0)


@pytest_asyncio.fixture
async def make_binder() -> AsyncIterator[Callable[..., Any]]:
    """Factory of started MQTT binders (settings overridable), closed at teardown."""
    created: list[MqttBinder] = []

    async def make(**overrides: Any) -> MqttBinder:
        binder = MqttBinder("test", {**BASE_SETTINGS, **overrides})
        await binder.start()
        created.append(binder)
        return binder

    yield make
    for binder in created:
        await binder.close()


@pytest_asyncio.fixture
async def binder() -> AsyncIterator[MqttBinder]:
    """A started MQTT 5 binder on the anonymous listener."""
    instance = MqttBinder("test", dict(BASE_SETTINGS))
    await instance.start()
    try:
        yield instance
    finally:
        await instance.close()
