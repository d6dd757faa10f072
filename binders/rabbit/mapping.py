"""Mapping between :class:`binder.message.Message` and AMQP messages.

* payload -> body; ``content_type`` -> the AMQP ``content_type`` property (a Spring
  ``contentType`` header is honoured when the property is missing);
* ``message_id`` -> the ``message_id`` property; ``timestamp`` -> the ``timestamp``
  property (whole seconds, for other clients) plus the exact float in header
  ``x-timestamp``;
* ``key`` -> header ``messageKey``; ``headers`` -> AMQP headers (values other than
  strings, e.g. ints set by a plain kombu producer, arrive as their ``str``).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from binder.message import (
    CONTENT_TYPE_HEADER,
    KEY_HEADER,
    MESSAGE_ID_HEADER,
    Message,
    new_message_id,
)

__all__ = ["TIMESTAMP_HEADER", "from_amqp", "header_text", "to_amqp"]

TIMESTAMP_HEADER = "x-timestamp"


def to_amqp(message: Message, *, persistent: bool) -> Any:
    """Build the ``amqp.Message`` for ``message``."""
    from amqp import Message as AmqpMessage

    headers: dict[str, Any] = dict(message.headers)
    if message.key is not None:
        headers[KEY_HEADER] = message.key
    headers[TIMESTAMP_HEADER] = float(message.timestamp)
    props: dict[str, Any] = {
        "application_headers": headers,
        "delivery_mode": 2 if persistent else 1,
        "message_id": message.message_id,
        "timestamp": int(message.timestamp),
    }
    if message.content_type:
        props["content_type"] = message.content_type
    return AmqpMessage(message.payload, **props)


def header_text(value: Any) -> str:
    """An AMQP header value as the str the core expects."""
    if isinstance(value, str):
        return value
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _timestamp(value: Any) -> float | None:
    if isinstance(value, datetime):
        moment: datetime = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return moment.timestamp()
    if isinstance(value, int | float):
        return float(value)
    return None


def from_amqp(raw: Any, destination: str) -> Message:
    """Build a :class:`Message` from a received ``amqp.Message``."""
    props = raw.properties
    body = raw.body
    if isinstance(body, str):  # py-amqp decodes bodies that carry a content_encoding
        body = body.encode(props.get("content_encoding") or "utf-8")
    headers: dict[str, str] = {}
    key: str | None = None
    timestamp: float | None = None
    for name, value in (props.get("application_headers") or {}).items():
        if name == KEY_HEADER:
            key = header_text(value)
        elif name == TIMESTAMP_HEADER:
            timestamp = _timestamp(value)
        else:
            headers[name] = header_text(value)
    content_type = props.get("content_type") or headers.pop(CONTENT_TYPE_HEADER, None)
    message_id = props.get("message_id") or headers.pop(MESSAGE_ID_HEADER, None)
    if timestamp is None:
        timestamp = _timestamp(props.get("timestamp")) or time.time()
    return Message(
        payload=bytes(body),
        headers=headers,
        key=key,
        content_type=content_type,
        message_id=message_id or new_message_id(),
        timestamp=timestamp,
        destination=destination,
    )
