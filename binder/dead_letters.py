"""What a dead letter says about where it came from and why it failed.

Dead letters carry their story in headers, named differently by whoever wrote them:
eventbinder's core (``x-exception-type``, ``x-original-destination``), Spring Cloud
Stream's Kafka binder (``x-exception-fqcn``, ``x-original-topic``, binary
``x-original-partition``/``-offset``/``-timestamp``, which the Kafka binder turns into
decimal strings on receipt), Spring Kafka's ``DeadLetterPublishingRecoverer``
(``kafka_dlt-*``) and Spring AMQP's ``RepublishMessageRecoverer``
(``x-original-exchange``, ``x-original-routingKey``).  :func:`dead_letter_of` reads all
of them into one :class:`DeadLetter`, so a handler of a dead-letter destination sees
the same fields whichever side wrote the record.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["DeadLetter", "dead_letter_of"]

# Header names per field, first found wins.
_DESTINATION = (
    "x-original-destination",
    "x-original-topic",
    "kafka_dlt-original-topic",
    "x-original-exchange",
)
_GROUP = ("x-original-group", "kafka_dlt-original-consumer-group", "x-original-consumer-group")
_PARTITION = ("x-original-partition", "kafka_dlt-original-partition")
_OFFSET = ("x-original-offset", "kafka_dlt-original-offset")
_TIMESTAMP = ("x-original-timestamp", "kafka_dlt-original-timestamp")
_EXCEPTION_TYPE = ("x-exception-type", "x-exception-fqcn", "kafka_dlt-exception-fqcn")
_EXCEPTION_MESSAGE = ("x-exception-message", "kafka_dlt-exception-message")
_STACKTRACE = ("x-exception-stacktrace", "kafka_dlt-exception-stacktrace")
_MARKERS = _EXCEPTION_TYPE + _EXCEPTION_MESSAGE + _STACKTRACE + ("x-original-topic",)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Where a dead-lettered message came from and why it failed.

    Fields a writer did not record are None (``group`` is None for an anonymous
    subscriber's dead letter too).  ``timestamp`` is the original record's time in
    POSIX seconds; ``routing_key`` is set for RabbitMQ.
    """

    destination: str | None
    group: str | None
    partition: int | None
    offset: int | None
    timestamp: float | None
    routing_key: str | None
    exception_type: str | None
    exception_message: str | None
    stacktrace: str | None
    attempts: int | None


def _first(headers: Mapping[str, str], names: tuple[str, ...]) -> str | None:
    for name in names:
        value = headers.get(name)
        if value:
            return value
    return None


def _integer(headers: Mapping[str, str], names: tuple[str, ...]) -> int | None:
    value = _first(headers, names)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def dead_letter_of(headers: Mapping[str, str]) -> DeadLetter | None:
    """Read the dead-letter headers in ``headers``; None when there are none."""
    if not any(name in headers for name in _MARKERS):
        return None
    millis = _integer(headers, _TIMESTAMP)
    try:
        seconds = millis / 1000.0 if millis is not None else None
    except OverflowError:  # digits beyond any float: no time
        seconds = None
    return DeadLetter(
        destination=_first(headers, _DESTINATION),
        group=_first(headers, _GROUP),
        partition=_integer(headers, _PARTITION),
        offset=_integer(headers, _OFFSET),
        timestamp=seconds,
        routing_key=_first(headers, ("x-original-routingKey",)),
        exception_type=_first(headers, _EXCEPTION_TYPE),
        exception_message=_first(headers, _EXCEPTION_MESSAGE),
        stacktrace=_first(headers, _STACKTRACE),
        attempts=_integer(headers, ("x-delivery-attempts",)),
    )
