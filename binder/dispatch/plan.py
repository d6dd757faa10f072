"""What the engine does with the deliveries of one consumer binding, and what it counts."""

from __future__ import annotations

from dataclasses import dataclass, field

from binder.dispatch.calls import HandlerCall, RawCall
from binder.dispatch.retry import RetryPolicy
from binder.middleware import Middleware
from binder.spi import DEFAULT_PREFETCH
from binder.tracing import Tracing

__all__ = ["BindingStats", "DispatchPlan"]


@dataclass(slots=True)
class BindingStats:
    """Counters of one consumer binding, kept by its dispatcher."""

    received: int = 0
    """Deliveries taken from the binder."""
    handled: int = 0
    """Deliveries settled for good: handled successfully or dead-lettered."""
    dead_lettered: int = 0
    """Deliveries stored in the dead letters (or dropped, with dead letters off)."""
    failed: int = 0
    """Deliveries handed back to the binder unhandled (nack): the broker delivers them
    again where it can."""
    attempts_failed: int = 0
    """Handler attempts that raised (or whose payload could not be decoded)."""
    retried: int = 0
    """Failed attempts that were tried again (in place, after the backoff)."""
    published: int = 0
    """Outputs of the handler the broker confirmed."""
    publish_failures: int = 0
    """Publishes of an output that failed (each is tried again under the retry policy)."""


@dataclass(frozen=True, slots=True)
class DispatchPlan:
    """What the engine does with each delivery of one consumer binding."""

    binding: str
    destination: str
    group: str | None
    call: HandlerCall | RawCall
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    concurrency: int = 1
    window: int = DEFAULT_PREFETCH
    threaded: bool = True
    """Run a plain ``def`` handler in worker threads (else on the event loop)."""
    middleware: tuple[Middleware, ...] = ()
    """Plugin middleware around each attempt, outermost first."""
    dead_letter: str | None = None
    """The dead-letter destination; ``None``: a message that failed for good is logged
    at ERROR and dropped."""
    tracing: Tracing | None = None
    """Spans for each delivery (``runtime.tracing``); None: not traced."""
    system: str = ""
    """``messaging.system`` of the binding's broker (for the spans)."""
    nack_failures: bool = False
    """Hand a failed delivery straight back to the binder (no dead letter): binder
    tests and tools use it with a :class:`RawCall`."""
