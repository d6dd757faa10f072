"""RabbitMQ producer bindings: publish to the destination's exchange through the binder's
publishing :class:`~binders.rabbit.link.Link`, resolved by publisher confirms."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from binder.errors import BinderError
from binder.message import Message
from binder.partitioning import partition_for
from binder.spi import ProducerSpec
from binders.rabbit.confirms import Publish
from binders.rabbit.link import Link
from binders.rabbit.mapping import to_amqp

__all__ = ["RabbitProducerBinding"]


class RabbitProducerBinding:
    """Publishes to the destination's exchange; ``publish`` queues and returns a future
    resolved by RabbitMQ's publisher confirm."""

    def __init__(
        self,
        spec: ProducerSpec,
        options: Mapping[str, Any],
        *,
        link: Link,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.spec = spec
        self._loop = loop
        self._link = link
        self._options = options
        self._persistent = bool(options["persistent"])
        self._confirm = bool(options["confirms"])
        self._default_exchange = bool(options["default_exchange"])
        self._exchange = "" if self._default_exchange else spec.destination
        source = options["routing_key"] or {}
        self._fixed_key: str | None = source.get("fixed")
        self._header_key: str | None = source.get("header")
        self._from_message_key = bool(source.get("message_key"))
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._closed = False

    def routing_key(self, message: Message) -> str:
        """Where ``message`` goes: partition key, fixed, header, message key or destination."""
        destination = self.spec.destination
        if self._default_exchange:
            return destination
        count = self.spec.partition_count
        if count > 1:
            partition = message.partition
            if partition is None:
                partition = partition_for(message.key or message.message_id, count)
            return f"{destination}-{partition}"
        if self._fixed_key is not None:
            return self._fixed_key
        if self._header_key is not None:
            return message.headers.get(self._header_key, destination)
        if self._from_message_key and message.key is not None:
            return message.key
        return destination

    def publish(self, message: Message) -> asyncio.Future[None]:
        """Queue ``message`` (in call order) and return a future resolved once RabbitMQ
        confirmed it; it fails with :class:`~binders.rabbit.confirms.PublishFailed` (or
        :class:`~binders.rabbit.link.LinkError`) when RabbitMQ did not take it."""
        if self._closed:
            raise BinderError(f"producer binding {self.spec.binding!r} is closed")
        future: asyncio.Future[None] = self._loop.create_future()
        pub = Publish(
            self._exchange,
            self.routing_key(message),
            to_amqp(message, persistent=self._persistent),
            future,
            self._confirm,
        )
        self._in_flight += 1
        self._idle.clear()
        future.add_done_callback(self._published)
        self._link.publish(pub)
        return future

    def _published(self, _: asyncio.Future[None]) -> None:
        self._in_flight -= 1
        if not self._in_flight:
            self._idle.set()

    async def close(self) -> None:
        """Refuse new publishes, then wait for those in flight; idempotent."""
        self._closed = True
        await self._idle.wait()
