"""The middleware type: a function from handler to handler."""

from __future__ import annotations

from collections.abc import Callable

from binder.spi import Handler

__all__ = ["Middleware"]

Middleware = Callable[[Handler], Handler]
