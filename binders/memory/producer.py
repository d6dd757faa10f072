"""Producer bindings of the in-memory binder: publishing is storing, confirmed at once."""

from __future__ import annotations

import asyncio
import logging

from binder.errors import BinderError
from binder.message import Message
from binder.spi import ProducerSpec
from binders.memory.broker import MemoryBroker, delivery_copy

__all__ = ["MemoryProducerBinding"]

log = logging.getLogger(__name__)


class MemoryProducerBinding:
    """Publishes straight into the broker's queues; nothing to flush."""

    def __init__(self, broker: MemoryBroker, spec: ProducerSpec) -> None:
        self.spec = spec
        self._broker = broker
        self._closed = False
        self._told_unreceived = False
        self._confirmed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._confirmed.set_result(None)

    def publish(self, message: Message) -> asyncio.Future[None]:
        """Store a copy of ``message`` in every queue of the destination (confirmed at once)."""
        if self._closed:
            raise BinderError(f"producer binding {self.spec.binding!r} is closed")
        destination = self.spec.destination
        if not self._told_unreceived and not self._broker.can_receive(destination):
            self._told_unreceived = True
            log.warning(
                "binding %s: nothing receives what is published to %r (no consumer group "
                "and no subscriber on this in-memory binder), so it is dropped; start the "
                "consumers first or set required_groups on the producer",
                self.spec.binding,
                destination,
            )
        self._broker.publish(destination, delivery_copy(message, destination))
        return self._confirmed

    async def close(self) -> None:
        """Idempotent; publishes are synchronous so there is nothing pending."""
        self._closed = True
