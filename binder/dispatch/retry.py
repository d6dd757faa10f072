"""The retry policy of a consumer binding: how many attempts, how long between them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from binder.backoff import Backoff
from binder.bindings import binding_default
from binder.errors import BinderError, DecodeError, PermanentError

__all__ = ["OutputFailed", "RetryPolicy", "is_permanent"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """``max_attempts`` calls of the handler per delivery, in this process.

    The defaults are the binding defaults of :data:`binder.bindings.BINDING_SCHEMA`.

    Between attempts it waits ``backoff_initial * backoff_multiplier ** (n - 1)``
    seconds after the n-th failure, at most ``backoff_max``, each wait shortened by up
    to ``jitter`` (a fraction) at random.  A message the broker redelivers (after a
    crash, or a shutdown during a backoff) starts a fresh set of attempts; its
    ``delivery_attempt`` keeps counting from the broker's number.  The same policy
    governs re-publishing a function's output when the broker refused it.
    """

    max_attempts: int = binding_default("max_attempts")
    backoff_initial: float = binding_default("backoff_initial")
    backoff_multiplier: float = binding_default("backoff_multiplier")
    backoff_max: float = binding_default("backoff_max")
    jitter: float = 0.2
    _backoff: Backoff = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        backoff = Backoff(
            self.backoff_initial, self.backoff_multiplier, self.backoff_max, self.jitter
        )
        object.__setattr__(self, "_backoff", backoff)

    def delay(self, failed_attempt: int, rng: Callable[[], float] | None = None) -> float:
        """Seconds to wait after the ``failed_attempt``-th attempt failed."""
        if rng is None:
            return self._backoff.delay(failed_attempt)
        return self._backoff.delay(failed_attempt, rng)


def is_permanent(exc: BaseException) -> bool:
    """Failures no retry can fix: undecodable payloads and :class:`PermanentError`."""
    return isinstance(exc, DecodeError | PermanentError)


class OutputFailed(BinderError):
    """The broker did not accept a function's output; ``__cause__`` says why."""
