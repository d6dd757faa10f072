"""Fixtures for the RabbitMQ binder tests: started binders, fresh names, collectors."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest_asyncio

from binder.message import Message
from binder.spi import ConsumerSpec
from binders.rabbit.binder import RabbitBinder
from binders.rabbit.options import validate_binding_options, validate_settings

URL = "amqp://guest:guest@127.0.0.1:5672//"

#: Settings for tests: quick reconnects.
BASE_SETTINGS: dict[str, Any] = {
    "url": URL,
    "reconnect_initial": 0.1,
    "reconnect_max": 1.0,
    "heartbeat": 10.0,
}


def fresh(prefix: str) -> str:
    """A uuid-suffixed destination or group name."""
    return f"ebtest-{prefix}-{uuid.uuid4().hex[:10]}"


def consumer_options(**options: Any) -> dict[str, Any]:
    """A validated consumer ``rabbit:`` section."""
    return validate_binding_options(options, "consumer")


def producer_options(**options: Any) -> dict[str, Any]:
    """A validated producer ``rabbit:`` section."""
    return validate_binding_options(options, "producer")


async def make_binder(**overrides: Any) -> RabbitBinder:
    """A started binder with :data:`BASE_SETTINGS` plus ``overrides``."""
    binder = RabbitBinder("test", validate_settings({**BASE_SETTINGS, **overrides}))
    await binder.start()
    return binder


@pytest_asyncio.fixture
async def binder() -> AsyncIterator[RabbitBinder]:
    """A fresh, started RabbitMQ binder, closed after the test."""
    instance = await make_binder()
    try:
        yield instance
    finally:
        await instance.close()


class Collector:
    """A handler that records messages; ``fail`` decides which deliveries raise."""

    def __init__(self, fail: Callable[[Message], bool] | None = None) -> None:
        self.messages: list[Message] = []
        self.attempts: list[Message] = []
        self._fail = fail

    async def __call__(self, message: Message) -> None:
        self.attempts.append(message)
        if self._fail is not None and self._fail(message):
            raise RuntimeError("deliberate failure")
        self.messages.append(message)

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[Message]:
        """Wait (polling, with a deadline) until ``count`` messages were handled."""
        await wait_until(lambda: len(self.messages) >= count, timeout, f"{count} messages")
        return self.messages


async def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``condition`` until it holds or ``timeout`` seconds passed."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.005)


async def read_queue(
    binder: RabbitBinder, queue: str, count: int, timeout: float = 10.0
) -> list[Message]:
    """Consume ``count`` messages from the existing queue ``queue`` (default exchange)."""
    collector = Collector()
    consumer = await binder.bind_consumer(
        ConsumerSpec(
            binding="read-queue",
            destination=queue,
            group="reader",
            dead_letter=False,
            prefetch=max(count, 1),
            options=consumer_options(default_exchange=True),
        ),
        collector,
    )
    try:
        return list(await collector.wait_for(count, timeout))
    finally:
        await consumer.close()
