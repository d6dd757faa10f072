"""The binder SPI: what a broker plugin implements.

A binder has two verbs, as in Spring Cloud Stream: bind a consumer (destination,
group, handler, options) and bind a producer (destination, options).  Provisioning
(creating exchanges, queues, topics) is a separate verb so it can run ahead of the
endpoints.  Everything is asyncio; a binder over a blocking client library bridges it
itself.

Contract for consumer bindings, the same on every broker:

* the binder calls ``handler(message)`` at most ``spec.concurrency`` times at once and
  keeps the number of fetched-but-unfinished messages bounded (``spec.prefetch``);
* when the handler returns, the message is acknowledged; when it raises, the message
  is negatively acknowledged and, where ``capabilities.redelivery_on_nack`` holds,
  redelivered with ``delivery_attempt`` increased;
* messages with the same partition (or, without partitions, the same key where the
  broker orders by key) are handed to the handler one at a time, in order, when
  ``capabilities.ordering`` holds;
* ``dead_letter`` publishes a copy of the message with the failure headers to the
  binder's dead-letter destination for this binding; the core calls it and then lets
  the handler return, so the original is acknowledged only after the dead letter is
  safely stored;
* ``close`` stops taking messages, waits for in-flight handlers, and is idempotent;
* ``bind_consumer`` returns only once the binding receives every message published
  after it returns (queue bound, partitions assigned, subscription acknowledged).

Metadata without a native place on a broker travels in the headers named in
:mod:`binder.message` (``contentType``, ``messageId``, ``messageKey``).

A capability declared false must make ``bind_consumer``/``bind_producer`` raise
:class:`binder.errors.UnsupportedFeature` when a spec needs it (use :func:`require`).
"""

from __future__ import annotations

import traceback
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any, Literal, Protocol, runtime_checkable

from binder.errors import UnsupportedFeature
from binder.message import Message

__all__ = [
    "Binder",
    "BinderType",
    "Capabilities",
    "ConsumerBinding",
    "ConsumerSpec",
    "Direction",
    "Failure",
    "Handler",
    "ProducerBinding",
    "ProducerSpec",
    "require",
]

Handler = Callable[[Message], Awaitable[None]]
Direction = Literal["consumer", "producer"]
_EMPTY: Mapping[str, Any] = MappingProxyType({})
_STACKTRACE_LIMIT = 4000


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


@dataclass(frozen=True, slots=True)
class ConsumerSpec:
    """Everything a binder needs to bind one consumer."""

    binding: str
    destination: str
    group: str | None = None
    concurrency: int = 1
    prefetch: int | None = None
    partitioned: bool = False
    instance_index: int = 0
    instance_count: int = 1
    dead_letter: str | bool = True
    """True: the binder's conventional dead-letter destination; a str: that name."""
    options: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    """The binder-specific section of the binding, already validated by the binder."""

    @property
    def max_in_flight(self) -> int:
        """Messages fetched but not yet finished, at most."""
        return self.prefetch if self.prefetch is not None else self.concurrency


@dataclass(frozen=True, slots=True)
class ProducerSpec:
    """Everything a binder needs to bind one producer."""

    binding: str
    destination: str
    partition_count: int = 1
    required_groups: tuple[str, ...] = ()
    """Groups to provision at bind time so messages wait for consumers not yet started."""
    options: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)


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
    """A bound consumer: it is already taking messages."""

    spec: ConsumerSpec

    async def dead_letter(self, message: Message, failure: Failure) -> None:
        """Store ``message`` with ``failure`` in this binding's dead-letter destination."""
        ...

    async def close(self) -> None:
        """Stop taking messages, wait for in-flight handlers; idempotent."""
        ...


@runtime_checkable
class ProducerBinding(Protocol):
    """A bound producer."""

    spec: ProducerSpec

    async def publish(self, message: Message) -> None:
        """Publish; return only once the broker has accepted the message."""
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

    async def provision(
        self, destination: str, group: str | None, options: Mapping[str, Any]
    ) -> None:
        """Create the destination and, with a group, the group's durable storage."""
        ...

    async def bind_consumer(self, spec: ConsumerSpec, handler: Handler) -> ConsumerBinding:
        """Start delivering messages for ``spec`` to ``handler``."""
        ...

    async def bind_producer(self, spec: ProducerSpec) -> ProducerBinding:
        """Return a producer for ``spec``."""
        ...


class BinderType(Protocol):
    """A kind of binder, as a plugin registers it (``type:`` in the config).

    ``create`` must import the client library lazily, so that installing a binder
    whose client is missing only fails when a binding actually uses it.
    """

    name: str
    description: str

    def validate_settings(self, settings: Mapping[str, Any]) -> dict[str, Any]:
        """Check the binder's own settings (``binders.<name>``); return them normalised.

        Raise :class:`binder.errors.ConfigError` with ``key`` relative to the section.
        """
        ...

    def validate_binding_options(
        self, options: Mapping[str, Any], direction: Direction
    ) -> dict[str, Any]:
        """Check a binding's ``<type>:`` section; return it normalised."""
        ...

    def secret_keys(self) -> frozenset[str]:
        """Names of settings whose values must never be shown."""
        ...

    def create(self, name: str, settings: Mapping[str, Any]) -> Binder:
        """Build an (unstarted) binder from validated settings."""
        ...
