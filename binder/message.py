"""The message envelope every binder delivers and every producer publishes."""

from __future__ import annotations

import itertools
import json
import os
import time
import uuid
from dataclasses import dataclass, field, replace
from typing import Any

from binder.dead_letters import DeadLetter, dead_letter_of

__all__ = [
    "CONTENT_TYPE_HEADER",
    "CORRELATION_ID",
    "KEY_HEADER",
    "MESSAGE_ID_HEADER",
    "TRACE_HEADERS",
    "Message",
    "new_message_id",
]

#: Header carrying the id that ties a chain of messages together.
CORRELATION_ID = "correlationId"
#: W3C trace-context headers copied from a function's input to its output.
TRACE_HEADERS = ("traceparent", "tracestate")
#: Header names for metadata a broker has no native place for (Spring-compatible names).
CONTENT_TYPE_HEADER = "contentType"
MESSAGE_ID_HEADER = "messageId"
KEY_HEADER = "messageKey"


_id_prefix = uuid.uuid4().hex[:20]
_id_counter = itertools.count(1)


def _reseed_ids() -> None:
    global _id_prefix, _id_counter
    _id_prefix = uuid.uuid4().hex[:20]
    _id_counter = itertools.count(1)


os.register_at_fork(after_in_child=_reseed_ids)


def new_message_id() -> str:
    """Return a fresh, globally unique message id.

    A random 80-bit per-process prefix plus a counter: unique like a UUID, at a tenth of
    the cost of ``uuid4()`` per message (the prefix is re-drawn in forked children).
    """
    return f"{_id_prefix}{next(_id_counter):012x}"


@dataclass(slots=True)
class Message:
    """A message as it travels: payload bytes plus metadata.

    ``payload`` is always bytes on the wire; :meth:`json` and :meth:`text` decode it.
    ``key`` is the partition key (Kafka record key, RabbitMQ header, MQTT user
    property).  ``destination`` is where the message was received from (for MQTT
    wildcards, the concrete topic).  ``delivery_attempt`` counts deliveries of this
    message to this handler, starting at 1, including in-process retries.
    ``partition`` is set by binders that have partitions and by the core's
    partitioning of producer bindings with ``partition_count``.
    """

    payload: bytes
    headers: dict[str, str] = field(default_factory=dict)
    key: str | None = None
    content_type: str | None = None
    message_id: str = field(default_factory=new_message_id)
    timestamp: float = field(default_factory=time.time)
    delivery_attempt: int = 1
    destination: str | None = None
    partition: int | None = None

    def json(self) -> Any:
        """Decode the payload as JSON."""
        return json.loads(self.payload)

    def text(self, encoding: str = "utf-8") -> str:
        """Decode the payload as text."""
        return self.payload.decode(encoding)

    @property
    def correlation_id(self) -> str | None:
        """The correlation id header, if any."""
        return self.headers.get(CORRELATION_ID)

    @property
    def dead_letter(self) -> DeadLetter | None:
        """Where this dead letter came from and why it failed; None for other messages.

        Reads the headers eventbinder and Spring (Cloud Stream, Kafka, AMQP) write.
        """
        return dead_letter_of(self.headers)

    def copy(self, **changes: Any) -> Message:
        """Return a copy with ``changes`` applied; headers are copied, not shared."""
        changes.setdefault("headers", dict(self.headers))
        return replace(self, **changes)
