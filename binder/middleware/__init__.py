"""Consumer middleware: each is a ``Handler -> Handler`` wrapper in a module of its own.

The runtime composes them, outermost first: :func:`observe` (counting and logging),
:func:`dead_letter` (the last word on a failure), :func:`retry` (in-process attempts
with backoff), then plugin middleware, then the handler invocation.
"""

from __future__ import annotations

from collections.abc import Sequence

from binder.middleware.base import Middleware
from binder.middleware.dead_letter import dead_letter
from binder.middleware.observe import observe
from binder.middleware.retry import RetryPolicy, ShutdownInterrupt, retry
from binder.spi import Handler

__all__ = [
    "Middleware",
    "RetryPolicy",
    "ShutdownInterrupt",
    "chain",
    "dead_letter",
    "observe",
    "retry",
]


def chain(handler: Handler, middleware: Sequence[Middleware]) -> Handler:
    """Wrap ``handler`` so that ``middleware[0]`` is the outermost layer."""
    for wrap in reversed(middleware):
        handler = wrap(handler)
    return handler
