"""Conversion between :class:`~binder.message.Message` and Kafka records.

The record key is the message key; the record timestamp carries the message timestamp
(millisecond precision); headers travel as record headers, with the content type and
message id in the ``contentType`` and ``messageId`` headers (Spring Cloud Stream names).

Text headers go out as raw UTF-8, and the content type and custom text headers are
listed as ``java.lang.String`` in Spring Kafka's ``spring_json_header_types`` header:
without that list a Spring Cloud Stream app reads them as ``byte[]`` and refuses the
record ("Unknown type for contentType header value").  (``messageId`` is left out of
the list: Spring needs no type for it, and every byte counts per record.)  On receipt
the list is dropped from ``Message.headers``.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from binder.message import CONTENT_TYPE_HEADER, MESSAGE_ID_HEADER, Message
from binders.kafka.dead_letters import decode_header, decode_text

__all__ = ["OutgoingRecord", "from_record", "to_record"]

#: Spring Kafka's header naming the Java type of each header it should decode.
SPRING_TYPES_HEADER = "spring_json_header_types"
_RESERVED = (CONTENT_TYPE_HEADER, MESSAGE_ID_HEADER, SPRING_TYPES_HEADER)
# Text is encoded as UTF-8 with lone surrogates (not Unicode, but a str may hold them: a
# JSON "\ud800" escape) written as py-amqp writes them, rather than failing: a dead
# letter whose exception message held one could never be stored.  decode_text reads
# them back.
_ERRORS = "surrogatepass"


@functools.lru_cache(maxsize=512)
def _spring_types(names: tuple[str, ...]) -> bytes:
    """``spring_json_header_types`` declaring headers ``names`` as Java Strings."""
    return json.dumps(dict.fromkeys(names, "java.lang.String"), separators=(",", ":")).encode()


@dataclass(slots=True)
class OutgoingRecord:
    """The arguments of one ``AIOKafkaProducer.send`` call."""

    value: bytes
    key: bytes | None
    headers: list[tuple[str, bytes]]
    timestamp_ms: int | None
    partition: int | None


def to_record(
    message: Message,
    extra_headers: Mapping[str, str | bytes] | None = None,
    *,
    spring_header_types: bool = True,
) -> OutgoingRecord:
    """Build the record for ``message`` (``extra_headers`` override message headers;
    bytes values go out as they are), with ``spring_json_header_types`` unless
    ``spring_header_types`` is false."""
    encoded: list[tuple[str, bytes]] = []
    if message.headers or extra_headers:
        headers: dict[str, str | bytes] = {
            k: v for k, v in message.headers.items() if k not in _RESERVED
        }
        if extra_headers:
            headers.update(extra_headers)
        encoded = [
            (name, value if isinstance(value, bytes) else str(value).encode("utf-8", _ERRORS))
            for name, value in headers.items()
        ]
        texts = [name for name, value in headers.items() if not isinstance(value, bytes)]
    else:
        texts = []
    if message.content_type is not None:
        encoded.append((CONTENT_TYPE_HEADER, message.content_type.encode("utf-8", _ERRORS)))
        texts.append(CONTENT_TYPE_HEADER)
    encoded.append((MESSAGE_ID_HEADER, message.message_id.encode("utf-8", _ERRORS)))
    if texts and spring_header_types:
        encoded.append((SPRING_TYPES_HEADER, _spring_types(tuple(texts))))
    return OutgoingRecord(
        value=message.payload,
        key=message.key.encode("utf-8", _ERRORS) if message.key is not None else None,
        headers=encoded,
        timestamp_ms=int(message.timestamp * 1000) if message.timestamp else None,
        partition=message.partition,
    )


def from_record(record: Any, delivery_attempt: int = 1) -> Message:
    """Build the message for an aiokafka ``ConsumerRecord`` with raw bytes key/value."""
    headers = {name: decode_header(name, value) for name, value in record.headers or ()}
    headers.pop(SPRING_TYPES_HEADER, None)
    content_type = headers.pop(CONTENT_TYPE_HEADER, None)
    if content_type and content_type[0] == '"' == content_type[-1] and len(content_type) > 1:
        # Spring Kafka's JSON header mapper writes header strings JSON-quoted.
        content_type = content_type[1:-1]
    message_id = headers.pop(MESSAGE_ID_HEADER, None) or (
        f"{record.topic}-{record.partition}-{record.offset}"
    )
    key = record.key
    value = record.value
    timestamp = record.timestamp
    return Message(
        value if value is not None else b"",
        headers,
        decode_text(key) if key is not None else None,
        content_type,
        message_id,
        timestamp / 1000.0 if timestamp is not None else 0.0,
        delivery_attempt,
        record.topic,
        record.partition,
    )
