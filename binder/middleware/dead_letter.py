"""Dead-lettering: the last word on a message whose handler failed for good."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from binder.errors import DecodeError
from binder.message import Message
from binder.middleware.base import Middleware
from binder.middleware.retry import Exhausted, ShutdownInterrupt
from binder.spi import ConsumerBinding, Failure, Handler

__all__ = ["dead_letter"]

log = logging.getLogger("binder.dead_letter")


def dead_letter(
    binding: Callable[[], Awaitable[ConsumerBinding]],
    *,
    enabled: bool,
    destination: str,
    group: str | None,
    name: str,
) -> Middleware:
    """Send failed messages to the binder's dead-letter destination, then let them go.

    ``binding`` returns the consumer binding (it exists only once the binder bound the
    handler this middleware wraps).  With ``enabled`` false a failed message is logged
    at ERROR level and dropped.  A :class:`ShutdownInterrupt` is re-raised so the binder
    redelivers the message; a failing dead-letter publish is re-raised too, so the
    message is not acknowledged and is not lost.
    """

    def wrap(handler: Handler) -> Handler:
        async def handle(message: Message) -> None:
            try:
                await handler(message)
                return
            except (ShutdownInterrupt, asyncio.CancelledError):
                raise
            except Exhausted as exc:
                error, attempts = exc.cause, exc.attempts
            except Exception as exc:
                error, attempts = exc, message.delivery_attempt
            failure = Failure.from_exception(
                error, attempts=attempts, destination=destination, group=group
            )
            reason = "undecodable payload" if isinstance(error, DecodeError) else "handler failed"
            if enabled:
                await (await binding()).dead_letter(message, failure)
            log.log(
                logging.WARNING if enabled else logging.ERROR,
                "%s: %s after %d attempt(s); message %s %s: %s: %s",
                name,
                reason,
                attempts,
                message.message_id,
                "dead-lettered" if enabled else "dropped (dead_letter is off)",
                failure.exception_type,
                failure.exception_message,
            )

        return handle

    return wrap
