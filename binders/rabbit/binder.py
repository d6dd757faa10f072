"""The RabbitMQ binder: asyncio bindings over :class:`binders.rabbit.link.Link`.

A binder owns two AMQP connections, each driven by its own I/O thread (see
:mod:`binders.rabbit.link` for the bridge): one for publishing (producers, dead
letters, provisioning) and one for consuming, as RabbitMQ recommends, so flow control
on publishers never stalls deliveries and acks.

The binder only moves bytes: each delivery goes to the core's delivery engine (the
binding's sink) as a :class:`RabbitDelivery`, which the engine settles with
``basic.ack`` or ``basic.reject(requeue=True)``; ordering, concurrency, retries and
dead-letter decisions are the engine's.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Hashable, Mapping
from typing import Any

from binder.backoff import Backoff
from binder.errors import BinderError
from binder.message import Message
from binder.partitioning import partition_for
from binder.spi import (
    Capabilities,
    ConsumerSpec,
    Delivery,
    DeliverySink,
    Failure,
    ProducerSpec,
    require,
)
from binders.rabbit.codec import from_amqp, to_amqp
from binders.rabbit.connection import connection_factory
from binders.rabbit.link import ConsumerHandle, Link, Publish
from binders.rabbit.options import CONSUMER_OPTIONS, PRODUCER_OPTIONS
from binders.rabbit.topology import (
    DLX,
    BindDecl,
    Decl,
    QueueDecl,
    consumer_topology,
    dead_letter_queue,
    dead_letter_target,
    dead_letter_topology,
    destination_topology,
    group_queue_topology,
)

__all__ = [
    "RABBIT_CAPABILITIES",
    "RabbitBinder",
    "RabbitConsumerBinding",
    "RabbitDelivery",
    "RabbitProducerBinding",
]

log = logging.getLogger("binders.rabbit")

RABBIT_CAPABILITIES = Capabilities(
    consumer_groups=True,
    anonymous_subscribers=True,
    ordering=True,
    durable=True,
    replay=False,
    native_headers=True,
    partitioning=True,
    redelivery_on_nack=True,
)


def _with_defaults(options: Mapping[str, Any], consumer: bool) -> dict[str, Any]:
    """Fill in defaults for keys missing from an (already validated) options mapping."""
    schema = CONSUMER_OPTIONS if consumer else PRODUCER_OPTIONS
    result = {key: opt.default for key, opt in schema.items() if not opt.required}
    result.update(options)
    return result


def _queue_own_decls(decls: list[Decl], queue: str) -> list[Decl]:
    """The declaration of ``queue`` and its bindings, without exchanges or DLQs."""
    return [
        d
        for d in decls
        if (isinstance(d, QueueDecl) and d.name == queue)
        or (isinstance(d, BindDecl) and d.queue == queue)
    ]


class RabbitProducerBinding:
    """Publishes to the destination's exchange; ``publish`` queues and returns a future
    resolved by RabbitMQ's publisher confirm."""

    def __init__(self, binder: RabbitBinder, spec: ProducerSpec, options: dict[str, Any]) -> None:
        self.spec = spec
        self._binder = binder
        self._loop = binder._loop
        self._link = binder._publisher
        self._options = options
        self._persistent = bool(options["persistent"])
        self._confirm = bool(options["confirms"])
        self._default_exchange = bool(options["default_exchange"])
        self._exchange = "" if self._default_exchange else spec.destination
        source = options.get("routing_key") or {}
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
        confirmed it; it fails with :class:`~binders.rabbit.link.PublishFailed` (or
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
    """

    def __init__(
        self,
        binder: RabbitBinder,
        link: Link,
        spec: ConsumerSpec,
        sink: DeliverySink,
        options: dict[str, Any],
        queue: str,
        decls: list[Decl],
    ) -> None:
        self.spec = spec
        self.queue = queue
        self._binder = binder
        self._link = link
        self._sink = sink
        self._options = options
        self._partition = spec.instance_index if spec.partitioned else None
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
            if self._options["declare"] and self._options["auto_bind_dlq"]:
                await self._binder._publisher.declare(
                    dead_letter_topology(self._dlq_name, self._dlq_key)
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
        future: asyncio.Future[None] = self._binder._loop.create_future()
        self._binder._publisher.publish(
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
        self._closing = self._binder._loop.create_future()
        try:
            try:
                if self._link.connected:
                    await self._link.cancel_consumer(self.handle)
            except Exception as exc:  # the connection may be gone; RabbitMQ requeues
                log.debug("%s: cancel failed: %s", self.spec.binding, exc)
            try:
                await self._link.close_consumer(self.handle)
            except Exception as exc:
                log.debug("%s: closing the channel failed: %s", self.spec.binding, exc)
            self._binder._forget(self)
        finally:
            self._closing.set_result(None)


class RabbitBinder:
    """A RabbitMQ binder: one publishing and one consuming connection."""

    capabilities = RABBIT_CAPABILITIES

    def __init__(self, name: str, settings: Mapping[str, Any]) -> None:
        self.name = name
        self.settings = dict(settings)
        self._connect = connection_factory(self.settings)
        self._publisher: Link = None  # type: ignore[assignment]
        self._consumer_link: Link | None = None
        self._consumer_link_lock = asyncio.Lock()
        self._links: list[Link] = []  # every link ever opened, for declared()
        self._consumers: list[RabbitConsumerBinding] = []
        self._producers: list[RabbitProducerBinding] = []
        self._loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]
        self._started = False

    def __repr__(self) -> str:
        return f"<RabbitBinder {self.name!r}>"

    def _link(self, role: str) -> Link:
        s = self.settings
        link = Link(
            f"{self.name}/{role}",
            self._connect,
            self._loop,
            backoff=Backoff(
                initial=s.get("reconnect_initial", 0.2),
                multiplier=s.get("reconnect_multiplier", 2.0),
                maximum=s.get("reconnect_max", 10.0),
            ),
            publish_timeout=s.get("publish_timeout", 60.0),
        )
        self._links.append(link)
        return link

    async def start(self) -> None:
        """Open the publishing connection; raise :class:`LinkError` if RabbitMQ is unreachable."""
        if self._started:
            return
        self._loop = asyncio.get_running_loop()
        publisher = self._link("publish")
        try:
            await publisher.start()
        except BaseException:
            await publisher.close()
            raise
        self._publisher = publisher
        self._started = True

    async def _consumer(self) -> Link:
        async with self._consumer_link_lock:
            if self._consumer_link is None:
                link = self._link("consume")
                try:
                    await link.start()
                except BaseException:
                    await link.close()
                    raise
                self._consumer_link = link
            return self._consumer_link

    def dead_letter_destination(self, destination: str, group: str | None) -> str:
        """The conventional DLQ: ``<destination>.<group or 'anonymous'>.dlq``.

        Its messages go through the ``DLX`` exchange with routing key
        ``<destination>.<group>``, as in Spring Cloud Stream.
        """
        return dead_letter_queue(destination, group)

    def _require_started(self) -> None:
        if not self._started:
            raise BinderError(f"rabbit binder {self.name!r} is not started")

    async def provision(
        self, destination: str, group: str | None, options: Mapping[str, Any]
    ) -> None:
        """Declare the destination's exchange and, with a group, its queue and DLQ."""
        self._require_started()
        opts = _with_defaults(options, consumer=False)
        if not opts["declare"]:
            return
        decls = list(destination_topology(destination, opts))
        if group is not None:
            decls += group_queue_topology(destination, group, opts).decls
        await self._publisher.declare(decls)

    async def bind_producer(self, spec: ProducerSpec) -> RabbitProducerBinding:
        """Declare the exchange (and required groups' queues); return the producer."""
        self._require_started()
        opts = _with_defaults(spec.options, consumer=False)
        if spec.partition_count > 1:
            require(self.capabilities, "partitioning", "rabbit", f"binding {spec.binding}")
        if opts["declare"]:
            decls = list(destination_topology(spec.destination, opts))
            for group in spec.required_groups:
                partitions: list[int | None] = (
                    list(range(spec.partition_count)) if spec.partition_count > 1 else [None]
                )
                for partition in partitions:
                    top = group_queue_topology(spec.destination, group, opts, partition=partition)
                    decls += top.decls
            await self._publisher.declare(decls)
        producer = RabbitProducerBinding(self, spec, opts)
        self._producers.append(producer)
        return producer

    async def bind_consumer(self, spec: ConsumerSpec, sink: DeliverySink) -> RabbitConsumerBinding:
        """Declare and bind the queue, then start consuming it into ``sink``."""
        self._require_started()
        if spec.group is not None:
            require(self.capabilities, "consumer_groups", "rabbit", f"binding {spec.binding}")
        if spec.partitioned:
            require(self.capabilities, "partitioning", "rabbit", f"binding {spec.binding}")
        opts = _with_defaults(spec.options, consumer=True)
        partition = spec.instance_index if spec.partitioned else None
        top = consumer_topology(
            spec.destination,
            spec.group,
            opts,
            partition=partition,
            dead_letter=spec.dead_letter,
        )
        if not opts["declare"]:
            # A pre-existing topology is used as is; only a fresh anonymous queue (which
            # cannot pre-exist) is still declared and bound.
            anonymous = spec.group is None and not opts["default_exchange"]
            top.decls = _queue_own_decls(top.decls, top.queue) if anonymous else []
        link = await self._consumer()
        binding = RabbitConsumerBinding(self, link, spec, sink, opts, top.queue, top.decls)
        await binding.start()
        self._consumers.append(binding)
        return binding

    def declared(self) -> set[Decl]:
        """Every exchange, queue and binding this binder declared so far."""
        return set().union(*(link.declared for link in self._links))

    def _forget(self, binding: RabbitConsumerBinding) -> None:
        if binding in self._consumers:
            self._consumers.remove(binding)

    async def close(self) -> None:
        """Close bindings, then both connections; idempotent."""
        for consumer in list(self._consumers):
            await consumer.close()
        for producer in self._producers:
            await producer.close()
        self._producers.clear()
        if self._consumer_link is not None:
            await self._consumer_link.close()
            self._consumer_link = None
        if self._publisher is not None:
            await self._publisher.close()
        self._started = False
