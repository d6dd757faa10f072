"""RabbitMQ consumer bindings: one queue each, consumed on the binder's consuming
:class:`~binders.rabbit.link.Link`.

Each delivery goes to the core's delivery engine (the binding's sink) as a
:class:`RabbitDelivery`, which the engine settles with ``basic.ack`` or
``basic.reject(requeue=True)``; ordering, concurrency, retries and dead-letter
decisions are the engine's.  Dead letters are published through the binder's
publishing link to the ``DLX`` exchange.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Hashable, Mapping
from typing import Any

from binder.errors import BinderError
from binder.message import Message
from binder.spi import ConsumerSpec, Delivery, DeliverySink, Failure
from binders.rabbit.confirms import Publish
from binders.rabbit.errors import describe
from binders.rabbit.link import ConsumerHandle, Link
from binders.rabbit.mapping import from_amqp, to_amqp
from binders.rabbit.topology import DLX, Decl, dead_letter_target, dead_letter_topology

__all__ = ["RabbitConsumerBinding", "RabbitDelivery"]

log = logging.getLogger("binders.rabbit")


class RabbitDelivery(Delivery):
    """One AMQP delivery: its channel's delivery tag and epoch, and where it came from
    (the exchange and routing key it was published with, for the dead letter)."""

    __slots__ = ("binding", "epoch", "exchange", "routing_key", "tag")

    def __init__(
        self,
        binding: RabbitConsumerBinding,
        message: Message,
        lane: Hashable | None,
        tag: int,
        epoch: int,
        exchange: str,
        routing_key: str,
    ) -> None:
        super().__init__(message, lane)
        self.binding = binding
        self.tag = tag
        self.epoch = epoch
        self.exchange = exchange
        self.routing_key = routing_key

    def ack(self) -> None:
        """``basic.ack`` (queued for the I/O thread; dropped if the channel died)."""
        binding = self.binding
        binding._link.ack(binding.handle, self.epoch, self.tag, True)

    def nack(self) -> None:
        """``basic.reject(requeue=True)``: RabbitMQ delivers it again."""
        binding = self.binding
        binding._link.ack(binding.handle, self.epoch, self.tag, False)


class RabbitConsumerBinding:
    """Deliveries from one queue, handed to the sink as :class:`RabbitDelivery` objects.

    RabbitMQ bounds the unacked deliveries with ``basic.qos`` set to ``spec.prefetch``,
    the engine's window.  The lane of a delivery is the partition for a partitioned
    consumer, else the message key (``None`` without a key: no order needed).

    ``link`` is the consuming connection, ``publisher`` the publishing one (dead
    letters and the anonymous DLQ's declaration); ``on_closed`` is called once the
    binding closed.
    """

    def __init__(
        self,
        spec: ConsumerSpec,
        sink: DeliverySink,
        options: Mapping[str, Any],
        queue: str,
        decls: list[Decl],
        *,
        link: Link,
        publisher: Link,
        loop: asyncio.AbstractEventLoop,
        on_closed: Callable[[RabbitConsumerBinding], None],
    ) -> None:
        self.spec = spec
        self.queue = queue
        self._link = link
        self._publisher = publisher
        self._loop = loop
        self._on_closed = on_closed
        self._sink = sink
        self._options = options
        self._partition = spec.instance_index if spec.instance_count > 1 else None
        if spec.dead_letter is not None:
            self._dlq_name, self._dlq_key = dead_letter_target(
                spec.destination, spec.group, spec.dead_letter
            )
        self._exchange = "" if options["default_exchange"] else spec.destination
        self.handle = ConsumerHandle(queue, max(spec.prefetch, 1), decls, self._deliver)
        self._closing: asyncio.Future[None] | None = None
        self._dlq_declared = spec.group is not None  # anonymous: declared on first use

    async def start(self) -> None:
        """Start the AMQP consumer (queue declared and bound first)."""
        await self._link.add_consumer(self.handle)

    # called on the event loop by the I/O thread, one chunk per turn
    def _deliver(self, batch: list[Any], epoch: int) -> None:
        destination = self.spec.destination
        partition = self._partition
        deliver = self._sink.deliver
        for raw in batch:
            info = raw.delivery_info
            message = from_amqp(raw, destination)
            attempt = 2 if info["redelivered"] else 1
            headers = raw.properties.get("application_headers")
            if headers:
                count = headers.get("x-delivery-count")  # quorum queues
                if isinstance(count, int) and count >= attempt:
                    attempt = count + 1
            message.delivery_attempt = attempt
            if partition is not None:
                message.partition = partition
                lane: Hashable | None = partition
            else:
                lane = message.key
            deliver(
                RabbitDelivery(
                    self,
                    message,
                    lane,
                    info["delivery_tag"],
                    epoch,
                    info["exchange"],
                    info["routing_key"],
                )
            )

    async def dead_letter(self, delivery: Delivery, failure: Failure) -> None:
        """Publish a copy to ``DLX`` -> the DLQ with the failure and Spring headers;
        return once RabbitMQ confirmed it."""
        if self.spec.dead_letter is None:
            raise BinderError(f"binding {self.spec.binding!r} has dead letters turned off")
        if not self._dlq_declared:
            if self._options["declare"]:
                await self._publisher.declare(
                    dead_letter_topology(self._dlq_name, self._dlq_key, self._options)
                )
            self._dlq_declared = True
        if isinstance(delivery, RabbitDelivery):
            exchange, routing_key = delivery.exchange, delivery.routing_key
        else:
            exchange, routing_key = self._exchange, self.spec.destination
        message = delivery.message
        headers = dict(message.headers)
        headers.update(failure.headers())
        headers["x-original-exchange"] = exchange
        headers["x-original-routingKey"] = routing_key
        dead = message.copy(headers=headers, delivery_attempt=1)
        future: asyncio.Future[None] = self._loop.create_future()
        self._publisher.publish(
            Publish(DLX, self._dlq_key, to_amqp(dead, persistent=True), future, True)
        )
        await future

    async def close(self) -> None:
        """Cancel the AMQP consumer and close its channel; idempotent.

        The engine has settled every delivery by now; the acks it queued go out before
        the channel closes (the link keeps that order).  Whatever is still unacked
        (deliveries in flight when the consumer was cancelled) RabbitMQ requeues.
        """
        if self._closing is not None:
            await asyncio.shield(self._closing)
            return
        self._closing = self._loop.create_future()
        try:
            try:
                if self._link.connected:
                    await self._link.cancel_consumer(self.handle)
            except Exception as exc:  # the connection may be gone; RabbitMQ requeues
                log.debug("%s: cancel failed: %s", self.spec.binding, describe(exc))
            try:
                await self._link.close_consumer(self.handle)
            except Exception as exc:
                log.debug("%s: closing the channel failed: %s", self.spec.binding, describe(exc))
            self._on_closed(self)
        finally:
            self._closing.set_result(None)
