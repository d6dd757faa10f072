"""Plugin middleware: ``Handler -> Handler`` wrappers around each attempt at a message.

The core's own concerns (retries, dead letters, settlement) live in the delivery
engine (:mod:`binder.dispatch`); plugins add theirs here through the
``binder_consumer_middleware`` hook.
"""

from __future__ import annotations

from collections.abc import Sequence

from binder.middleware.base import Middleware
from binder.spi import Handler

__all__ = ["Middleware", "chain"]


def chain(handler: Handler, middleware: Sequence[Middleware]) -> Handler:
    """Wrap ``handler`` so that ``middleware[0]`` is the outermost layer."""
    for wrap in reversed(middleware):
        handler = wrap(handler)
    return handler
