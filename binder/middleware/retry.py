"""Retry with exponential backoff, in process, before a message is given up on."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from binder.errors import BinderError, DecodeError, PermanentError
from binder.message import Message
from binder.middleware.base import Middleware
from binder.spi import Handler

__all__ = ["Exhausted", "RetryPolicy", "ShutdownInterrupt", "retry"]

log = logging.getLogger("binder.retry")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """``max_attempts`` calls of the handler per delivery, in this process.

    Between attempts it waits ``backoff_initial * backoff_multiplier ** n`` seconds, at
    most ``backoff_max``.  A message the broker redelivers (after a crash or a shutdown
    during backoff) gets a fresh set of attempts; its ``delivery_attempt`` keeps
    counting from the broker's number.
    """

    max_attempts: int = 3
    backoff_initial: float = 1.0
    backoff_multiplier: float = 2.0
    backoff_max: float = 10.0

    def delay(self, failed_attempt: int) -> float:
        """Seconds to wait after the ``failed_attempt``-th attempt failed."""
        delay = self.backoff_initial * self.backoff_multiplier ** (failed_attempt - 1)
        return min(delay, self.backoff_max)


class ShutdownInterrupt(BinderError):
    """The app is stopping during a backoff: leave the message unacknowledged."""


class Exhausted(BinderError):
    """Every attempt failed; ``__cause__`` is the last error."""

    def __init__(self, attempts: int, cause: BaseException) -> None:
        super().__init__(f"gave up after {attempts} attempt(s): {cause!r}")
        self.attempts = attempts
        self.cause = cause


def _permanent(exc: BaseException) -> bool:
    return isinstance(exc, DecodeError | PermanentError)


def retry(policy: RetryPolicy, stopping: asyncio.Event, binding: str) -> Middleware:
    """Retry a failing handler; raise :class:`Exhausted` when attempts run out.

    Decode errors and :class:`PermanentError` are not retried.  When ``stopping`` is set
    during a backoff, :class:`ShutdownInterrupt` is raised so the binder redelivers the
    message later instead of it being dead-lettered by a shutdown.
    """

    def wrap(handler: Handler) -> Handler:
        async def handle(message: Message) -> None:
            attempt = message.delivery_attempt
            first = attempt
            while True:
                try:
                    await handler(message)
                    return
                except Exception as exc:
                    tries = attempt - first + 1
                    if _permanent(exc) or tries >= policy.max_attempts:
                        raise Exhausted(tries, exc) from exc
                    delay = policy.delay(tries)
                    log.warning(
                        "%s: attempt %d failed (%s: %s); retrying in %.2fs",
                        binding,
                        attempt,
                        type(exc).__name__,
                        exc,
                        delay,
                    )
                    if stopping.is_set():
                        raise ShutdownInterrupt(binding) from exc
                    try:
                        await asyncio.wait_for(stopping.wait(), delay)
                    except TimeoutError:
                        pass
                    else:
                        raise ShutdownInterrupt(binding) from exc
                    attempt += 1
                    message = message.copy(delivery_attempt=attempt)

        return handle

    return wrap
