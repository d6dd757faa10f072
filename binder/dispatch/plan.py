"""What the engine does with the deliveries of one consumer binding, and what it counts."""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass, field

from binder.dispatch.calls import HandlerCall, RawCall
from binder.dispatch.retry import RetryPolicy
from binder.middleware import Middleware
from binder.spi import DEFAULT_PREFETCH
from binder.tracing import Tracing

__all__ = ["DURATION_BUCKETS", "BindingStats", "DispatchPlan"]


#: Upper bounds (seconds) of the handler duration histogram: Prometheus' defaults.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass(slots=True)
class BindingStats:
    """Counters of one consumer binding, kept by its dispatcher (on the event loop)."""

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
    durations: list[int] = field(default_factory=lambda: [0] * (len(DURATION_BUCKETS) + 1))
    """Handled deliveries per duration bucket (the last: above every bound); the time in
    the handler, its attempts added up, backoffs left out."""
    duration_sum: float = 0.0
    """Seconds spent in the handler, over every delivery counted in :attr:`durations`."""

    def observe(self, seconds: float) -> None:
        """Count one delivery whose handler took ``seconds`` in all."""
        self.durations[bisect_left(DURATION_BUCKETS, seconds)] += 1
        self.duration_sum += seconds


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
