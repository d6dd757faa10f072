"""``Message.dead_letter`` on any headers: never raises; None without any of the headers
that mark a dead letter; otherwise each field read from the first header naming it
(eventbinder's, Spring Cloud Stream's, Spring Kafka's, Spring AMQP's)."""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from binder.message import Message
from binder.spi import Failure

MARKERS = {
    "x-exception-type",
    "x-exception-fqcn",
    "kafka_dlt-exception-fqcn",
    "x-exception-message",
    "kafka_dlt-exception-message",
    "x-exception-stacktrace",
    "kafka_dlt-exception-stacktrace",
    "x-original-topic",
}
OTHERS = [
    "x-original-destination",
    "kafka_dlt-original-topic",
    "x-original-exchange",
    "x-original-group",
    "kafka_dlt-original-consumer-group",
    "x-original-consumer-group",
    "x-original-partition",
    "kafka_dlt-original-partition",
    "x-original-offset",
    "kafka_dlt-original-offset",
    "x-original-timestamp",
    "kafka_dlt-original-timestamp",
    "x-original-routingKey",
    "x-delivery-attempts",
    "contentType",
]
names = st.one_of(st.sampled_from(sorted(MARKERS) + OTHERS), st.text(max_size=10))
numbers = st.one_of(
    st.integers().map(str),
    st.sampled_from(["", " 7 ", "1_000", "0x10", "٣", "1e3", "-0", "9" * 5000, "1" + "0" * 400]),
)
values = st.one_of(st.text(), numbers)
header_maps = st.dictionaries(names, values, max_size=8)


def _integer(text: str | None) -> int | None:
    """How the docs read a number: Python's int() of the text, else None."""
    try:
        return int(text) if text else None
    except ValueError:
        return None


@settings(max_examples=400)
@given(headers=header_maps)
@example(headers={"x-original-topic": "t", "x-original-timestamp": "1" + "0" * 400})
@example(headers={"x-exception-type": "E", "x-original-offset": "9" * 5000})
def test_dead_letter_never_raises(headers: dict[str, str]) -> None:
    letter = Message(b"", headers).dead_letter
    if not MARKERS & headers.keys():
        assert letter is None
        return
    assert letter is not None
    partition = headers.get("x-original-partition") or headers.get("kafka_dlt-original-partition")
    assert letter.partition == _integer(partition)
    attempts = headers.get("x-delivery-attempts")
    assert letter.attempts == _integer(attempts)
    millis = _integer(
        headers.get("x-original-timestamp") or headers.get("kafka_dlt-original-timestamp")
    )
    if letter.timestamp is not None:
        assert millis is not None and abs(letter.timestamp - millis / 1000) <= abs(millis) * 1e-15
    else:
        assert millis is None or abs(millis) > 2**1000  # beyond a float: not a time


@settings(max_examples=150)
@given(
    exception_type=st.text(min_size=1),
    message=st.text(),
    trace=st.text(),
    attempts=st.integers(1, 10**6),
    destination=st.text(min_size=1),
    group=st.one_of(st.none(), st.text(min_size=1)),
    extra=header_maps,
)
def test_core_failure_headers_read_back(
    exception_type: str,
    message: str,
    trace: str,
    attempts: int,
    destination: str,
    group: str | None,
    extra: dict[str, str],
) -> None:
    """What the core writes (over any other headers) reads back as written."""
    failure = Failure(exception_type, message, trace, attempts, destination, group)
    letter = Message(b"", {**extra, **failure.headers()}).dead_letter
    assert letter is not None
    assert letter.exception_type == exception_type
    assert letter.exception_message == (message or extra.get("kafka_dlt-exception-message") or None)
    assert letter.stacktrace == (trace or extra.get("kafka_dlt-exception-stacktrace") or None)
    assert letter.attempts == attempts
    assert letter.destination == destination
    expected_group = (
        group
        or extra.get("kafka_dlt-original-consumer-group")
        or extra.get("x-original-consumer-group")
    )
    assert letter.group == (expected_group or None)
