"""Helpers for the RabbitMQ binder tests: settings, fresh names, collectors, clean-up.

One module imported under one name by the conftest and the tests, so the clean-up
registry is shared."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable
from typing import Any

from binder.message import Message
from binder.spi import ConsumerSpec
from binder.testing import wait_until
from binders.rabbit.binder import RabbitBinder
from binders.rabbit.options import validate_binding_options, validate_settings
from binders.rabbit.topology import ExchangeDecl, QueueDecl

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


#: Name prefixes of everything the tests declare (``fresh`` and the conformance suite).
TEST_PREFIXES = ("ebtest-", "conf-")
_tracked_binders: list[RabbitBinder] = []
_extra_queues: set[str] = set()
_extra_exchanges: set[str] = set()


def track(binder: RabbitBinder) -> RabbitBinder:
    """Delete what ``binder`` declared (test names only) after the current test."""
    _tracked_binders.append(binder)
    return binder


def delete_later(*, queues: tuple[str, ...] = (), exchanges: tuple[str, ...] = ()) -> None:
    """Delete these (declared by a plain client) after the current test."""
    _extra_queues.update(queues)
    _extra_exchanges.update(exchanges)


def _delete(queues: set[str], exchanges: set[str]) -> None:
    import amqp

    conn = amqp.Connection("127.0.0.1:5672", userid="guest", password="guest")
    conn.connect()
    try:
        for kind, names in (("queue", queues), ("exchange", exchanges)):
            for name in sorted(names):
                if not name.startswith(TEST_PREFIXES):
                    continue  # never DLX or anything shared
                channel = conn.channel()
                with contextlib.suppress(Exception):
                    if kind == "queue":
                        channel.queue_delete(name)
                    else:
                        channel.exchange_delete(name)
                with contextlib.suppress(Exception):
                    channel.close()
    finally:
        conn.close()


def delete_tracked() -> None:
    """Delete what tracked binders and ``delete_later`` registered; reset the registry."""
    queues, exchanges = set(_extra_queues), set(_extra_exchanges)
    for binder in _tracked_binders:
        for decl in binder.declared():
            if isinstance(decl, QueueDecl):
                queues.add(decl.name)
            elif isinstance(decl, ExchangeDecl):
                exchanges.add(decl.name)
    _tracked_binders.clear()
    _extra_queues.clear()
    _extra_exchanges.clear()
    if queues or exchanges:
        with contextlib.suppress(OSError):
            _delete(queues, exchanges)


async def make_binder(**overrides: Any) -> RabbitBinder:
    """A started binder with :data:`BASE_SETTINGS` plus ``overrides``; cleaned up after."""
    binder = track(RabbitBinder("test", validate_settings({**BASE_SETTINGS, **overrides})))
    await binder.start()
    return binder


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
