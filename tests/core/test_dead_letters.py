"""Message.dead_letter reads the dead-letter headers of eventbinder and of Spring."""

from __future__ import annotations

from binder import DeadLetter, Message


def test_a_message_without_dead_letter_headers_has_none() -> None:
    assert Message(b"x", {"tenant": "acme", "x-original-partition": "1"}).dead_letter is None


def test_eventbinder_headers() -> None:
    message = Message(
        b"x",
        {
            "x-exception-type": "builtins.ValueError",
            "x-exception-message": "no",
            "x-exception-stacktrace": "Traceback...",
            "x-original-destination": "orders",
            "x-original-group": "",
            "x-delivery-attempts": "3",
        },
    )
    assert message.dead_letter == DeadLetter(
        destination="orders",
        group=None,
        partition=None,
        offset=None,
        timestamp=None,
        routing_key=None,
        exception_type="builtins.ValueError",
        exception_message="no",
        stacktrace="Traceback...",
        attempts=3,
    )


def test_spring_cloud_stream_kafka_headers_as_the_kafka_binder_decodes_them() -> None:
    message = Message(
        b"x",
        {
            "x-original-topic": "orders",
            "x-original-partition": "2",
            "x-original-offset": "41",
            "x-original-timestamp": "1700000000123",
            "x-original-timestamp-type": "CreateTime",
            "kafka_dlt-original-consumer-group": "billing",
            "x-exception-fqcn": "java.lang.IllegalStateException",
            "x-exception-message": "spring says no",
            "x-exception-stacktrace": "java.lang.IllegalStateException: spring says no",
        },
    )
    origin = message.dead_letter
    assert origin is not None
    assert (origin.destination, origin.group, origin.partition, origin.offset) == (
        "orders",
        "billing",
        2,
        41,
    )
    assert origin.timestamp == 1700000000.123
    assert origin.exception_type == "java.lang.IllegalStateException"
    assert origin.attempts is None


def test_spring_kafka_recoverer_headers() -> None:
    origin = Message(
        b"x",
        {
            "kafka_dlt-original-topic": "orders",
            "kafka_dlt-original-partition": "0",
            "kafka_dlt-original-offset": "7",
            "kafka_dlt-exception-fqcn": "java.lang.RuntimeException",
            "kafka_dlt-exception-message": "boom",
        },
    ).dead_letter
    assert origin is not None
    assert (origin.destination, origin.partition, origin.offset) == ("orders", 0, 7)
    assert (origin.exception_type, origin.exception_message) == (
        "java.lang.RuntimeException",
        "boom",
    )


def test_spring_amqp_republished_headers() -> None:
    origin = Message(
        b"x",
        {
            "x-exception-message": "boom",
            "x-exception-stacktrace": "java.lang.RuntimeException: boom",
            "x-original-exchange": "orders",
            "x-original-routingKey": "orders.new",
        },
    ).dead_letter
    assert origin is not None
    assert (origin.destination, origin.routing_key) == ("orders", "orders.new")
    assert origin.partition is None and origin.exception_type is None


def test_garbage_numbers_are_left_out_not_raised() -> None:
    origin = Message(b"x", {"x-exception-message": "m", "x-original-offset": "n/a"}).dead_letter
    assert origin is not None and origin.offset is None
