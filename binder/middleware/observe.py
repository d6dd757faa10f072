"""Counting handled messages: feeds ``--max-messages`` and binding statistics."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from binder.message import Message
from binder.middleware.base import Middleware
from binder.spi import Handler

__all__ = ["BindingStats", "observe"]


@dataclass(slots=True)
class BindingStats:
    """Counters of one consumer binding."""

    handled: int = 0
    """Messages finished: handled successfully or dead-lettered."""
    failed: int = 0
    """Deliveries whose failure reached the binder (to be redelivered)."""


def observe(stats: BindingStats, on_handled: Callable[[], None]) -> Middleware:
    """Count each finished message in ``stats`` and call ``on_handled``."""

    def wrap(handler: Handler) -> Handler:
        async def handle(message: Message) -> None:
            try:
                await handler(message)
            except BaseException:
                stats.failed += 1
                raise
            stats.handled += 1
            on_handled()

        return handle

    return wrap
