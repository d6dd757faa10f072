"""The RabbitMQ binder: the connections, provisioning, and binding consumers and producers.

A binder owns two AMQP connections, each driven by its own I/O thread (see
:mod:`binders.rabbit.link` for the bridge): one for publishing (producers, dead
letters, provisioning) and one for consuming, as RabbitMQ recommends, so flow control
on publishers never stalls deliveries and acks.

The bindings are in :mod:`binders.rabbit.consumer` and :mod:`binders.rabbit.producer`;
they only move bytes: each delivery goes to the core's delivery engine (the binding's
sink), which settles it; ordering, concurrency, retries and dead-letter decisions are
the engine's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from binder.backoff import Backoff
from binder.errors import BinderError
from binder.spi import Capabilities, ConsumerSpec, DeliverySink, ProducerSpec, require
from binders.rabbit.client import connection_factory
from binders.rabbit.consumer import RabbitConsumerBinding
from binders.rabbit.link import Link
from binders.rabbit.producer import RabbitProducerBinding
from binders.rabbit.topology import (
    BindDecl,
    Decl,
    QueueDecl,
    consumer_topology,
    dead_letter_queue,
    destination_topology,
    group_queue_topology,
)

__all__ = ["RABBIT_CAPABILITIES", "RabbitBinder"]

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


def _queue_own_decls(decls: list[Decl], queue: str) -> list[Decl]:
    """The declaration of ``queue`` and its bindings, without exchanges or DLQs."""
    return [
        d
        for d in decls
        if (isinstance(d, QueueDecl) and d.name == queue)
        or (isinstance(d, BindDecl) and d.queue == queue)
    ]


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
                initial=s["reconnect_initial"],
                multiplier=s["reconnect_multiplier"],
                maximum=s["reconnect_max"],
            ),
            publish_timeout=s["publish_timeout"],
        )
        self._links.append(link)
        return link

    async def start(self) -> None:
        """Open the publishing connection.

        Raises :class:`~binder.errors.AccessRefused` when RabbitMQ refuses the login
        (wrong user name or password), has no such virtual host or gives the user no
        access to it, and :class:`~binders.rabbit.errors.LinkError` when it cannot be
        reached; each error is one sentence naming the broker, never a password.
        """
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

    def connections(self) -> dict[str, bool]:
        """The publishing and (once a consumer bound) consuming connections: up?"""
        links = [self._publisher, self._consumer_link] if self._started else []
        return {link.label: bool(link.connected) for link in links if link is not None}

    def reconnects(self) -> int:
        """Connections lost and made again, over every connection of the binder."""
        return sum(link.reconnects for link in self._links)

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
        """Declare the destination's exchange and, with a group, its queue and DLQ.

        ``options`` is the binding's complete ``rabbit:`` section (consumer or producer:
        both have the topology options).
        """
        self._require_started()
        if not options["declare"]:
            return
        decls = list(destination_topology(destination, options))
        if group is not None:
            decls += group_queue_topology(destination, group, options).decls
        await self._publisher.declare(decls)

    async def bind_producer(self, spec: ProducerSpec) -> RabbitProducerBinding:
        """Declare the exchange and the queues of ``spec.required_groups`` (so messages
        wait for their consumers); return the producer."""
        self._require_started()
        opts = spec.options
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
        producer = RabbitProducerBinding(spec, opts, link=self._publisher, loop=self._loop)
        self._producers.append(producer)
        return producer

    async def bind_consumer(self, spec: ConsumerSpec, sink: DeliverySink) -> RabbitConsumerBinding:
        """Declare and bind the queue, then start consuming it into ``sink``."""
        self._require_started()
        if spec.group is not None:
            require(self.capabilities, "consumer_groups", "rabbit", f"binding {spec.binding}")
        if spec.instance_count > 1:
            require(self.capabilities, "partitioning", "rabbit", f"binding {spec.binding}")
        opts = spec.options
        partition = spec.instance_index if spec.instance_count > 1 else None
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
        binding = RabbitConsumerBinding(
            spec,
            sink,
            opts,
            top.queue,
            top.decls,
            link=link,
            publisher=self._publisher,
            loop=self._loop,
            on_closed=self._forget,
        )
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
