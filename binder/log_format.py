"""Structured (JSON) logs: one JSON object per line, with the app, and for records
logged while a message is handled (by the handler or by eventbinder), the binding, the
message id and the trace id.

``binder run --log-format json`` installs :class:`JsonFormatter`; an application that
configures logging itself can do the same::

    handler.setFormatter(JsonFormatter(app="billing"))

Once a :class:`JsonFormatter` exists, the delivery engine sets :data:`message_context`
around each delivery's attempts, on the event loop or in the worker thread that runs
the handler.
"""

from __future__ import annotations

import json
import logging
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, ClassVar

__all__ = ["JsonFormatter", "MessageContext", "message_context", "name_json_logs", "trace_id"]

#: (binding, message id, W3C traceparent header or None) of the delivery being handled.
MessageContext = tuple[str, str | None, str | None]
message_context: ContextVar[MessageContext | None] = ContextVar(
    "eventbinder_message_context", default=None
)


def trace_id(traceparent: str | None) -> str | None:
    """The trace id of a W3C ``traceparent`` header (``00-<trace id>-<span id>-<flags>``),
    or None when there is none or it is malformed."""
    if not traceparent:
        return None
    parts = traceparent.strip().split("-")
    if len(parts) < 4 or len(parts[1]) != 32 or parts[1] == "0" * 32:
        return None
    try:
        int(parts[1], 16)
    except ValueError:
        return None
    return parts[1]


class JsonFormatter(logging.Formatter):
    """Formats a record as one line of JSON: ``time`` (ISO 8601, UTC), ``level``,
    ``logger``, ``message``, ``app``, and when a message is being handled ``binding``,
    ``message_id`` and ``trace_id``; ``exception`` holds a traceback, if any."""

    #: Set once any JsonFormatter exists: until then the engine keeps no message
    #: context (nothing would read it).
    active: ClassVar[bool] = False

    def __init__(self, app: str | None = None) -> None:
        super().__init__()
        self.app = app
        JsonFormatter.active = True

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if self.app is not None:
            entry["app"] = self.app
        context = message_context.get()
        if context is not None:
            binding, message_id, traceparent = context
            entry["binding"] = binding
            entry["message_id"] = message_id
            found = trace_id(traceparent)
            if found is not None:
                entry["trace_id"] = found
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False, default=str)


def name_json_logs(app: str) -> None:
    r"""Set ``app`` on the root logger's :class:`JsonFormatter`\ s (``binder run`` knows the
    app's name only once it loaded it)."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler.formatter, JsonFormatter):
            handler.formatter.app = app
