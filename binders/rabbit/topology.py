"""Names and declarations of exchanges, queues and bindings (Spring Cloud Stream layout).

Pure functions of (destination, group, options): the same binding always declares the
same arguments, so a producer provisioning a group queue and the group's consumers never
disagree (RabbitMQ refuses a re-declaration with different arguments).  ``options`` is
a complete ``rabbit:`` section, as ``validate_binding_options`` returns it.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "DLX",
    "BindDecl",
    "Decl",
    "ExchangeDecl",
    "QueueDecl",
    "Topology",
    "anonymous_queue_name",
    "consumer_topology",
    "dead_letter_queue",
    "dead_letter_target",
    "destination_topology",
    "group_queue_topology",
    "partition_routing_key",
]

DLX = "DLX"
"""The direct exchange every dead letter goes through."""


@dataclass(frozen=True, slots=True)
class ExchangeDecl:
    """exchange.declare"""

    name: str
    type: str
    durable: bool = True


@dataclass(frozen=True, slots=True)
class QueueDecl:
    """queue.declare"""

    name: str
    durable: bool = True
    exclusive: bool = False
    auto_delete: bool = False
    arguments: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True, slots=True)
class BindDecl:
    """queue.bind"""

    queue: str
    exchange: str
    routing_key: str = ""
    arguments: tuple[tuple[str, Any], ...] = ()


Decl = ExchangeDecl | QueueDecl | BindDecl


@dataclass(slots=True)
class Topology:
    """What to declare, in order, and the queue a consumer reads."""

    decls: list[Decl] = field(default_factory=list)
    queue: str = ""

    def add(self, *decls: Decl) -> None:
        """Append declarations, skipping duplicates."""
        for decl in decls:
            if decl not in self.decls:
                self.decls.append(decl)


def partition_routing_key(destination: str, partition: int) -> str:
    """The routing key of partition ``partition``: ``<destination>-<n>``."""
    return f"{destination}-{partition}"


def anonymous_queue_name(destination: str) -> str:
    """A fresh ``<destination>.anonymous.<id>``."""
    return f"{destination}.anonymous.{uuid.uuid4().hex}"


def _items(mapping: Mapping[str, Any] | None) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted((mapping or {}).items()))


def _dlq_routing_key(destination: str, group: str | None) -> str:
    return f"{destination}.{group or 'anonymous'}"


def dead_letter_queue(destination: str, group: str | None) -> str:
    """The conventional DLQ of a consumer: ``<destination>.<group or 'anonymous'>.dlq``."""
    return f"{_dlq_routing_key(destination, group)}.dlq"


def dead_letter_target(
    destination: str, group: str | None, dead_letter: str | None = None
) -> tuple[str, str]:
    """(DLQ name, DLX routing key) of a consumer dead-lettering to ``dead_letter``.

    The conventional queue (``None``, or the name :func:`dead_letter_queue` gives) keeps
    Spring's layout: ``<dest>.<group>.dlq`` bound to ``DLX`` with ``<dest>.<group>``,
    the routing key the group queue's own ``x-dead-letter-routing-key`` uses.  Any
    other name is a queue of that name bound to ``DLX`` with the name as key.
    """
    key = _dlq_routing_key(destination, group)
    conventional = f"{key}.dlq"
    if dead_letter is None or dead_letter == conventional:
        return conventional, key
    return dead_letter, dead_letter


def dead_letter_topology(
    queue: str, routing_key: str, options: Mapping[str, Any] | None = None
) -> list[Decl]:
    """The DLX exchange and a durable DLQ bound to it with ``routing_key``.

    The DLQ has the group queue's type (``options["queue_type"]``): a quorum group
    queue gets a quorum DLQ, so losing the node a classic DLQ lives on cannot stop its
    consumers (Spring's equivalent: ``dlqQuorum.enabled: true``).
    """
    quorum = options is not None and options["queue_type"] == "quorum"
    return [
        ExchangeDecl(DLX, "direct"),
        QueueDecl(queue, arguments=(("x-queue-type", "quorum"),) if quorum else ()),
        BindDecl(queue, DLX, routing_key),
    ]


def destination_topology(destination: str, options: Mapping[str, Any]) -> list[Decl]:
    """The destination's exchange (nothing with ``default_exchange``)."""
    if options["default_exchange"]:
        return []
    return [ExchangeDecl(destination, options["exchange_type"], options["durable"])]


def _binding_keys(destination: str, options: Mapping[str, Any]) -> list[str]:
    keys = options["binding_routing_key"]
    if keys:
        return list(keys)
    exchange_type = options["exchange_type"]
    if exchange_type == "topic":
        return ["#"]
    if exchange_type == "direct":
        return [destination]
    return [""]


def _queue_arguments(
    options: Mapping[str, Any], dlq_key: str | None, quorum_allowed: bool
) -> dict[str, Any]:
    args: dict[str, Any] = {}
    if quorum_allowed and options["queue_type"] == "quorum":
        args["x-queue-type"] = "quorum"
    if options["ttl"] is not None:
        args["x-message-ttl"] = options["ttl"]
    if options["max_length"] is not None:
        args["x-max-length"] = options["max_length"]
    if dlq_key is not None:
        args["x-dead-letter-exchange"] = DLX
        args["x-dead-letter-routing-key"] = dlq_key
    return args


def _bindings(
    queue: str, destination: str, options: Mapping[str, Any], partition: int | None
) -> list[Decl]:
    if partition is not None:
        keys = [partition_routing_key(destination, partition)]
    else:
        keys = _binding_keys(destination, options)
    arguments = _items(options["binding_arguments"])
    return [BindDecl(queue, destination, key, arguments) for key in keys]


def group_queue_topology(
    destination: str,
    group: str,
    options: Mapping[str, Any],
    *,
    partition: int | None = None,
) -> Topology:
    """Exchange, durable group queue ``<dest>.<group>[-<partition>]``, bindings, DLQ.

    With ``auto_bind_dlq`` the queue dead-letters (broker-side rejects, expiry,
    overflow) to ``DLX`` with routing key ``<dest>.<group>``, bound to
    ``<dest>.<group>.dlq`` -- independent of a consumer's own ``dead_letter`` name, so
    every declaration of the queue carries the same arguments.
    """
    top = Topology()
    if options["default_exchange"]:
        top.queue = destination
        top.add(
            QueueDecl(
                destination,
                durable=options["durable"],
                arguments=_items(_queue_arguments(options, None, True)),
            )
        )
        return top
    queue = f"{destination}.{group}" if partition is None else f"{destination}.{group}-{partition}"
    dlq_key: str | None = None
    if options["auto_bind_dlq"]:
        dlq_name, dlq_key = dead_letter_target(destination, group)
        top.add(*dead_letter_topology(dlq_name, dlq_key, options))
    top.queue = queue
    top.add(*destination_topology(destination, options))
    top.add(
        QueueDecl(
            queue,
            durable=options["durable"],
            arguments=_items(_queue_arguments(options, dlq_key, True)),
        )
    )
    top.add(*_bindings(queue, destination, options, partition))
    return top


def consumer_topology(
    destination: str,
    group: str | None,
    options: Mapping[str, Any],
    *,
    partition: int | None = None,
    dead_letter: str | None = None,
) -> Topology:
    """What a consumer declares; anonymous consumers get an exclusive auto-delete queue.

    With a group and a ``dead_letter`` queue name (``None``: dead letters off) the
    consumer's DLQ is declared too, so its dead letters never go to an unbound routing
    key -- also with ``auto_bind_dlq: false``, which only leaves the group queue's
    ``x-dead-letter-*`` arguments out (as Spring's ``autoBindDlq: false`` does).
    """
    if group is not None or options["default_exchange"]:
        top = group_queue_topology(destination, group or "", options, partition=partition)
    else:
        top = _anonymous_topology(destination, options, partition)
    # An anonymous consumer's DLQ is declared on its first dead letter instead: anonymous
    # consumers come and go, and a durable queue each would pile up on the broker.
    if group is not None and dead_letter is not None:
        top.add(
            *dead_letter_topology(*dead_letter_target(destination, group, dead_letter), options)
        )
    return top


def _anonymous_topology(
    destination: str, options: Mapping[str, Any], partition: int | None
) -> Topology:
    top = Topology()
    queue = anonymous_queue_name(destination)
    top.queue = queue
    top.add(*destination_topology(destination, options))
    args = _queue_arguments(options, None, False)
    top.add(
        QueueDecl(queue, durable=False, exclusive=True, auto_delete=True, arguments=_items(args))
    )
    top.add(*_bindings(queue, destination, options, partition))
    return top
