"""Dead-letter records in Spring Cloud Stream's format.

Spring Cloud Stream's Kafka binder (through Spring Kafka's
``DeadLetterPublishingRecoverer``) writes the origin of a dead letter as
``x-original-topic`` (UTF-8), ``x-original-partition`` (4-byte big-endian int),
``x-original-offset`` and ``x-original-timestamp`` (8-byte big-endian longs),
``x-original-timestamp-type`` (``CreateTime``/``LogAppendTime``),
``kafka_dlt-original-consumer-group`` and the failure as ``x-exception-fqcn``,
``x-exception-message`` and ``x-exception-stacktrace``.  eventbinder writes the same, so
a tool that reprocesses a shared dead-letter topic sees one format, and adds the core's
broker-neutral headers (:meth:`binder.spi.Failure.headers`).

On receipt, :func:`decode_header` turns those binary integers (and Spring Kafka's
``kafka_dlt-*`` ones) into decimal strings, which is what older eventbinder versions
wrote, so ``Message.headers`` stays text and ``Message.dead_letter`` reads either.
"""

from __future__ import annotations

import struct

from binder.spi import Failure

__all__ = ["decode_header", "decode_text", "spring_headers"]

_INT = struct.Struct(">i")
_LONG = struct.Struct(">q")
# Header name -> byte width of the big-endian integer Spring writes there.
_BINARY_WIDTH = {
    "x-original-partition": 4,
    "x-original-offset": 8,
    "x-original-timestamp": 8,
    "kafka_dlt-original-partition": 4,
    "kafka_dlt-original-offset": 8,
    "kafka_dlt-original-timestamp": 8,
}
_TIMESTAMP_TYPES = {0: "CreateTime", 1: "LogAppendTime"}
_DIGITS = frozenset(b"-0123456789")


def spring_headers(
    *,
    topic: str,
    partition: int,
    offset: int,
    timestamp_ms: int | None,
    timestamp_type: int | None,
    group: str | None,
    failure: Failure,
) -> dict[str, str | bytes]:
    """The dead-letter headers Spring Cloud Stream writes, for one consumed record.

    ``offset`` is -1 when the message did not come from a record (then the offset
    header is left out); ``timestamp_type`` is aiokafka's (0 create, 1 log append).
    """
    headers: dict[str, str | bytes] = {
        "x-original-topic": topic,
        "x-original-partition": _INT.pack(partition),
        "x-exception-fqcn": failure.exception_type,
        "x-exception-message": failure.exception_message,
        "x-exception-stacktrace": failure.stacktrace,
    }
    if offset >= 0:
        headers["x-original-offset"] = _LONG.pack(offset)
    if timestamp_ms is not None and timestamp_ms >= 0:
        headers["x-original-timestamp"] = _LONG.pack(timestamp_ms)
        headers["x-original-timestamp-type"] = _TIMESTAMP_TYPES.get(
            timestamp_type or 0, "CreateTime"
        )
    if group:
        headers["kafka_dlt-original-consumer-group"] = group
    return headers


def decode_header(name: str, value: bytes | None) -> str:
    """A record header's value as text; Spring's binary integers as decimal strings.

    Decimal text (what eventbinder wrote before) is kept: a 4- or 8-byte big-endian
    integer made only of the bytes of ASCII digits would be an offset beyond 3 * 10**18
    or a partition beyond 800 million, so the two never collide.
    """
    if value is None:
        return ""
    width = _BINARY_WIDTH.get(name)
    if width is not None and len(value) == width and not _DIGITS.issuperset(value):
        return str((_INT if width == 4 else _LONG).unpack(value)[0])
    return decode_text(value)


def decode_text(value: bytes) -> str:
    """UTF-8 text as :func:`binders.kafka.mapping.to_record` writes it: lone surrogates
    (written as py-amqp writes them) come back, other invalid bytes become U+FFFD."""
    try:
        return value.decode("utf-8", "surrogatepass")
    except UnicodeDecodeError:
        return value.decode("utf-8", "replace")
