"""The binder SPI: what a broker plugin implements.

A binder has two verbs, as in Spring Cloud Stream: bind a consumer and bind a producer.
Provisioning (creating exchanges, queues, topics) is a separate verb so it can run
ahead of the endpoints.  Everything is asyncio; a binder over a blocking client
library bridges it itself.

A binder only moves bytes.  Dispatch belongs to the core's delivery engine
(:mod:`binder.dispatch`): ordering per lane, the ``concurrency`` bound, retries,
dead-lettering and pipelined settlement are written once, there, for every binder.

Contract for consumer bindings, the same on every broker:

* ``bind_consumer(spec, sink)`` starts fetching and hands every fetched message to
  ``sink.deliver`` as a :class:`Delivery` (a subclass of the binder's that knows how
  to settle it).  ``delivery.lane`` is its ordering key: the partition, or the key on
  brokers that order by key, or ``None`` for "no order needed".  The engine handles
  deliveries of one lane one at a time, in order, and settles them in order.
* fetched-but-unsettled deliveries stay bounded: ``spec.prefetch`` is the engine's
  window and the binder's broker-side credit (``basic.qos``, receive maximum, records
  per fetch); a binder that pulls asks ``sink.room`` and awaits
  ``sink.wait_for_room()``.
* the engine calls exactly one of ``ack``, ``nack`` or ``release`` on each delivery,
  once, on the event loop: ``ack`` when the handler returned and its outputs were
  confirmed (or it was dead-lettered), ``nack`` when it could neither be handled nor
  dead-lettered (deliver it again where the broker can), ``release`` when it was never
  handled (the binding is stopping, or its lane was revoked).
* ``dead_letter(delivery, failure)`` stores a copy of the message with the failure
  headers in ``spec.dead_letter``; the engine acks the original only afterwards.
* ``close()`` runs after the engine drained the binding (every delivery settled):
  stop fetching, make the settlements durable (commit), disconnect; idempotent.
* ``bind_consumer`` returns only once the binding receives every message published
  after it returns (queue bound, partitions assigned, subscription acknowledged).

Metadata without a native place on a broker travels in the headers named in
:mod:`binder.message` (``contentType``, ``messageId``, ``messageKey``).

A capability declared false must make ``bind_consumer``/``bind_producer`` raise
:class:`binder.errors.UnsupportedFeature` when a spec needs it (use :func:`require`).
"""

from __future__ import annotations

import traceback
from collections.abc import Awaitable, Callable, Collection, Hashable, Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any, Literal, Protocol, runtime_checkable

from binder.errors import UnsupportedFeature
from binder.message import Message

__all__ = [
    "DEFAULT_PREFETCH",
    "Binder",
    "BinderType",
    "Capabilities",
    "ConsumerBinding",
    "ConsumerSpec",
    "Delivery",
    "DeliverySink",
    "Direction",
    "Failure",
    "Handler",
    "PausableBinding",
    "ProducerBinding",
    "ProducerSpec",
    "ReportsConnections",
    "ReportsLag",
    "require",
]

Handler = Callable[[Message], Awaitable[None]]
Direction = Literal["consumer", "producer"]
_EMPTY: Mapping[str, Any] = MappingProxyType({})
_STACKTRACE_LIMIT = 4000

#: Fetched-but-unsettled deliveries per consumer binding unless configured otherwise.
DEFAULT_PREFETCH = 256


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a broker can do, declared by its binder; data, not harness settings."""

    consumer_groups: bool = True
    """A group's members compete: each message goes to one member."""
    anonymous_subscribers: bool = True
    """Consumers without a group each get a copy (publish-subscribe)."""
    ordering: bool = True
    """Messages with the same partition key are delivered in publish order."""
    durable: bool = False
    """A group's messages wait while no member is connected and survive broker restarts."""
    replay: bool = False
    """A consumer can start again from the earliest retained message."""
    native_headers: bool = True
    """Headers and content type travel natively with the message."""
    partitioning: bool = True
    """``partition_count`` on producers and instance-indexed consumers are supported."""
    redelivery_on_nack: bool = True
    """A message whose handler raised is delivered again."""

    def names(self) -> dict[str, bool]:
        """Return the capabilities as a name -> flag mapping."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def require(capabilities: Capabilities, name: str, binder: str, what: str) -> None:
    """Raise :class:`UnsupportedFeature` when ``capabilities.<name>`` is false."""
    if not getattr(capabilities, name):
        raise UnsupportedFeature(f"the {binder} binder does not support {name}: {what}")


class Delivery:
    """One fetched message on its way through the core's delivery engine.

    A binder subclasses it (adding ``__slots__`` for what settlement needs: a delivery
    tag, an offset, a packet id), creates one per fetched message and hands it to
    :meth:`DeliverySink.deliver`.  ``lane`` orders deliveries: those with the same lane
    are handled one at a time and settled in the order they were delivered; ``None``
    means the message needs no order with respect to any other.

    The engine calls exactly one of :meth:`ack`, :meth:`nack` or :meth:`release`, once,
    on the event loop.  They must not block: queue the broker call and return.  The
    attributes starting with ``_`` belong to the engine.
    """

    __slots__ = ("_failures", "_lane", "_output", "_state", "_verdict", "lane", "message")

    def __init__(self, message: Message, lane: Hashable | None = None) -> None:
        self.message = message
        self.lane = lane
        self._lane: Any = None
        self._state = 0
        self._verdict = 0
        self._output: Message | None = None
        self._failures = 0

    def ack(self) -> None:
        """Handled, its outputs confirmed (or dead-lettered): settle it for good."""
        raise NotImplementedError

    def nack(self) -> None:
        """Neither handled nor dead-lettered: deliver it again if the broker can."""
        raise NotImplementedError

    def release(self) -> None:
        """Never handled (the binding is stopping, or the lane was revoked): give it back.

        The default is :meth:`nack`; a broker that redelivers on its own when the
        consumer goes away (Kafka, an MQTT session) may do nothing.
        """
        self.nack()


@runtime_checkable
class DeliverySink(Protocol):
    """Where a consumer binding hands its deliveries: the core's delivery engine."""

    def deliver(self, delivery: Delivery) -> None:
        """Take ``delivery``; never blocks.  After the binding stopped it is released."""
        ...

    @property
    def room(self) -> int:
        """How many more deliveries fit in the window now (0 once stopping)."""
        ...

    async def wait_for_room(self, at_least: int = 1) -> None:
        """Return once ``room >= at_least``; waits for good once the binding stops."""
        ...

    def discard(self, lanes: Collection[Hashable]) -> None:
        """Release the deliveries of ``lanes`` not started yet (the binder will fetch
        them again, e.g. after seeking back); the others finish and settle as usual."""
        ...

    async def revoke(self, lanes: Collection[Hashable]) -> None:
        """Release the not-started deliveries of ``lanes`` and wait until every
        started one is settled (a Kafka rebalance: commit, then give the partitions up)."""
        ...


@dataclass(frozen=True, slots=True)
class ConsumerSpec:
    """Everything a binder needs to bind one consumer."""

    binding: str
    destination: str
    group: str | None = None
    concurrency: int = 1
    """Handler calls at once (the engine enforces it; a binder may use it for hints)."""
    prefetch: int = DEFAULT_PREFETCH
    """Fetched-but-unsettled deliveries at most: the broker-side credit to ask for."""
    instance_index: int = 0
    """This instance's index among ``instance_count`` (always less than it)."""
    instance_count: int = 1
    """Instances sharing the group; more than 1 makes the consumer partitioned: it
    takes only its share of the partitions (needs the ``partitioning`` capability)."""
    dead_letter: str | None = None
    """Where dead letters go (resolved by the core, see
    :meth:`Binder.dead_letter_destination`); ``None``: dead-lettering is off."""
    options: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    """The binder-specific section of the binding: what the binder type's
    ``validate_binding_options(section, "consumer")`` returned for the merged layers,
    so complete (every option, defaults filled in) when the runtime binds."""


@dataclass(frozen=True, slots=True)
class ProducerSpec:
    """Everything a binder needs to bind one producer."""

    binding: str
    destination: str
    partition_count: int = 1
    required_groups: tuple[str, ...] = ()
    """Groups to provision at bind time so messages wait for consumers not yet started:
    the binding's ``required_groups`` option (Spring's ``requiredGroups``). The app's
    own consumer groups are provisioned anyway, before any producer binds."""
    options: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    """As :attr:`ConsumerSpec.options`, validated for ``"producer"``."""


@dataclass(frozen=True, slots=True)
class Failure:
    """Why a message is being dead-lettered."""

    exception_type: str
    exception_message: str
    stacktrace: str
    attempts: int
    destination: str
    group: str | None

    @classmethod
    def from_exception(
        cls, exc: BaseException, *, attempts: int, destination: str, group: str | None
    ) -> Failure:
        """Describe ``exc`` with a stacktrace truncated to a few kilobytes."""
        trace = "".join(traceback.format_exception(exc))
        if len(trace) > _STACKTRACE_LIMIT:
            trace = "..." + trace[-_STACKTRACE_LIMIT:]
        return cls(
            exception_type=f"{type(exc).__module__}.{type(exc).__qualname__}",
            exception_message=str(exc),
            stacktrace=trace,
            attempts=attempts,
            destination=destination,
            group=group,
        )

    def headers(self) -> dict[str, str]:
        """The broker-neutral dead-letter headers; binders add their own."""
        return {
            "x-exception-type": self.exception_type,
            "x-exception-message": self.exception_message,
            "x-exception-stacktrace": self.stacktrace,
            "x-original-destination": self.destination,
            "x-original-group": self.group or "",
            "x-delivery-attempts": str(self.attempts),
        }


@runtime_checkable
class ConsumerBinding(Protocol):
    """A bound consumer: it is already fetching and delivering to its sink."""

    spec: ConsumerSpec

    async def dead_letter(self, delivery: Delivery, failure: Failure) -> None:
        """Store ``delivery``'s message with ``failure`` in ``spec.dead_letter``.

        Return once it is stored; raise if it could not be (the engine then nacks).
        """
        ...

    async def close(self) -> None:
        """Stop fetching, make settlements durable, disconnect; idempotent.

        Called once the engine has settled (or given up on) every delivery.
        """
        ...


@runtime_checkable
class ProducerBinding(Protocol):
    """A bound producer."""

    spec: ProducerSpec

    def publish(self, message: Message) -> Awaitable[None]:
        """Queue ``message`` and return an awaitable resolved once the broker confirmed it.

        Must not suspend before the message is queued: messages go out in the order
        of ``publish`` calls, and many may be in flight at once.  The awaitable raises
        when the broker refused the message or it could not be sent.
        """
        ...

    async def close(self) -> None:
        """Flush pending publishes and release resources; idempotent."""
        ...


@runtime_checkable
class Binder(Protocol):
    """One configured connection to a broker."""

    name: str
    capabilities: Capabilities

    async def start(self) -> None:
        """Connect; raise if the broker cannot be reached (the runtime retries)."""
        ...

    async def close(self) -> None:
        """Close bindings and connections; idempotent."""
        ...

    def dead_letter_destination(self, destination: str, group: str | None) -> str:
        """The conventional dead-letter destination of a consumer of ``destination``."""
        ...

    async def provision(
        self, destination: str, group: str | None, options: Mapping[str, Any]
    ) -> None:
        """Create the destination and, with a group, the group's durable storage."""
        ...

    async def bind_consumer(self, spec: ConsumerSpec, sink: DeliverySink) -> ConsumerBinding:
        """Start handing the deliveries of ``spec`` to ``sink``."""
        ...

    async def bind_producer(self, spec: ProducerSpec) -> ProducerBinding:
        """Return a producer for ``spec``."""
        ...


@runtime_checkable
class PausableBinding(Protocol):
    """Optional for a :class:`ConsumerBinding`: stop fetching while paused, without
    leaving the group. The engine pauses every binding (it starts no handler, and the
    window fills); a binder whose client must keep polling to stay in its group (Kafka)
    implements this to pause at the source instead."""

    def pause(self) -> None:
        """Fetch nothing more until :meth:`resume`; stay a member of the group."""
        ...

    def resume(self) -> None:
        """Fetch again."""
        ...


@runtime_checkable
class ReportsConnections(Protocol):
    """Optional for a :class:`Binder`: the state of its broker connections, for the
    management endpoint's readiness (``GET /health/ready``) and metrics. A binder
    without it counts as connected once started."""

    def connections(self) -> Mapping[str, bool]:
        """Each connection (a label naming it, never a secret) and whether it is up."""
        ...

    def reconnects(self) -> int:
        """How often a connection was lost and made again since the binder started."""
        ...


@runtime_checkable
class ReportsLag(Protocol):
    """Optional for a :class:`ConsumerBinding` of a broker with offsets (Kafka): how far
    behind it is, for the ``eventbinder_consumer_lag`` metric."""

    def lag(self) -> Mapping[int, int]:
        """Per assigned partition: records in the partition not yet handled (the high
        watermark last seen minus the position handled up to)."""
        ...


class BinderType(Protocol):
    """A kind of binder, as a plugin registers it (``type:`` in the config).

    ``create`` must import the client library lazily, so that installing a binder
    whose client is missing only fails when a binding actually uses it.
    """

    name: str
    description: str

    def validate_settings(self, settings: Mapping[str, Any]) -> dict[str, Any]:
        """Check the binder's own settings (``binders.<name>`` without ``type``, which
        the core handles); return them complete: every setting, defaults filled in.

        Raise :class:`binder.errors.ConfigError` with ``key`` relative to the section.
        """
        ...

    def validate_binding_options(
        self, options: Mapping[str, Any], direction: Direction
    ) -> dict[str, Any]:
        """Check a binding's ``<type>:`` section; return it complete (every option of
        ``direction``, defaults filled in), as :func:`binder.schema.validate_section`
        does.  Binders receive this result as ``spec.options``."""
        ...

    def secret_keys(self) -> frozenset[str]:
        """Names of settings whose values must never be shown.

        ``binder.schema.secret_keys(SETTINGS, ...)`` derives them from the schemas'
        ``Option(..., secret=True)``.
        """
        ...

    def create(self, name: str, settings: Mapping[str, Any]) -> Binder:
        """Build an (unstarted) binder from validated settings."""
        ...
