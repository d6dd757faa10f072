"""Bounded waits for shutdown work: give up after a timeout, log what failed, redacted."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any

from binder.redaction import redact_url

__all__ = ["bounded", "settle"]

# The runtime's records keep the one logger name they always had.
log = logging.getLogger("binder.runtime")


async def bounded(what: str, work: Awaitable[Any], timeout: float) -> None:
    """Await ``work`` for at most ``timeout`` seconds, then give up on it.

    ``work`` returns a list of results with exceptions among them (as ``gather`` with
    ``return_exceptions``); each exception, and a timeout, is logged naming ``what``.
    """
    try:
        results = await asyncio.wait_for(work, timeout)
    except TimeoutError:
        log.error("%s took longer than %.0fs; giving up on it", what, timeout)
        return
    for result in results or ():
        if isinstance(result, BaseException):
            log.error("%s: %s: %s", what, type(result).__name__, redact_url(str(result)))


async def settle(*work: Awaitable[Any]) -> list[Any]:
    """Await all of ``work``; their results and exceptions alike, in order."""
    return list(await asyncio.gather(*work, return_exceptions=True))
