"""Fixtures for the MQTT binder tests: started binders, fresh topics, a collector."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest_asyncio

from binder.message import Message
from binder.spi import Binder, ConsumerSpec, Handler
from binder.testing import BoundConsumer, consume, wait_until
from binders.mqtt.binder import MqttBinder

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


def fresh(prefix: str) -> str:
    """A uuid-suffixed topic or group name."""
    return f"ebtest/{prefix}-{uuid.uuid4().hex[:10]}"


def fresh_group(prefix: str = "g") -> str:
    """A uuid-suffixed group name (no slashes: it is part of ``$share/<group>/``)."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


class Collector:
    """An async handler recording messages, with deadline-bounded waits."""

    def __init__(self, fail: Callable[[Message], bool] | None = None) -> None:
        self.messages: list[Message] = []
        self.calls = 0
        self._fail = fail
        self._changed = asyncio.Event()

    async def __call__(self, message: Message) -> None:
        self.calls += 1
        try:
            if self._fail is not None and self._fail(message):
                raise RuntimeError("deliberate failure")
            self.messages.append(message)
        finally:
            self._changed.set()

    async def wait_until(self, condition: Callable[[], bool], timeout: float = 10.0) -> None:
        """Wait until ``condition()`` holds, failing after ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not condition():
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(
                    f"timed out after {timeout}s; {len(self.messages)} message(s) received"
                )
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(remaining, 0.1))

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[Message]:
        """Wait for ``count`` messages."""
        await self.wait_until(lambda: len(self.messages) >= count, timeout)
        return self.messages


async def wait_for(condition: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    """Wait for ``condition`` (see :func:`binder.testing.wait_until`)."""
    await wait_until(condition, timeout, what or repr(condition))


Subscribe = Callable[[Binder, ConsumerSpec, Handler], Awaitable[BoundConsumer]]


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
