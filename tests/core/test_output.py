"""binder.output: handler results -> messages; header propagation policy; partitioning."""

import dataclasses
import json
from typing import Any

import pytest

from binder import App
from binder.bindings import BindingSettings
from binder.message import Message
from binder.output import OutputPort, propagate_headers
from binder.partitioning import java_string_hash, partition_for
from binder.spi import ProducerSpec
from binder.testing import run_app

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


class FakeProducer:
    def __init__(self) -> None:
        self.spec = ProducerSpec(binding="f-out-0", destination="out")
        self.published: list[Message] = []
        self.closed = 0

    async def publish(self, message: Message) -> None:
        self.published.append(message)

    async def close(self) -> None:
        self.closed += 1


def port(**settings: Any) -> tuple[OutputPort, FakeProducer]:
    producer = FakeProducer()
    binding = BindingSettings(
        name="f-out-0", direction="producer", destination="out", binder="memory", **settings
    )
    return OutputPort(binding, producer), producer


def source(**headers: str) -> Message:
    return Message(b"{}", dict(headers), key="in-key")


# -- propagation policy ------------------------------------------------------------


def test_correlation_id_is_copied_from_the_input() -> None:
    headers: dict[str, str] = {}
    propagate_headers(source(correlationId="c-1"), headers)
    assert headers == {"correlationId": "c-1"}


def test_correlation_id_defaults_to_the_input_message_id() -> None:
    incoming = source()
    headers: dict[str, str] = {}
    propagate_headers(incoming, headers)
    assert headers == {"correlationId": incoming.message_id}


def test_trace_context_is_copied_and_nothing_else() -> None:
    incoming = source(
        correlationId="c",
        traceparent=TRACEPARENT,
        tracestate="a=1",
        tenant="t",
        contentType="text/plain",
        messageId="m",
        baggage="b=2",
    )
    headers: dict[str, str] = {}
    propagate_headers(incoming, headers)
    assert headers == {"correlationId": "c", "traceparent": TRACEPARENT, "tracestate": "a=1"}


def test_headers_the_output_already_has_are_kept() -> None:
    headers = {"correlationId": "mine", "traceparent": "own", "x": "y"}
    propagate_headers(source(correlationId="c", traceparent=TRACEPARENT, tracestate="s"), headers)
    assert headers == {"correlationId": "mine", "traceparent": "own", "tracestate": "s", "x": "y"}


# -- to_message ------------------------------------------------------------------------


def test_plain_value_is_encoded_with_the_binding_content_type() -> None:
    output, _ = port(content_type="text/plain")
    message = output.to_message(12, headers={"h": "v"}, key="k")
    assert (message.payload, message.content_type) == (b"12", "text/plain")
    assert message.headers == {"h": "v"}
    assert message.key == "k"
    assert message.partition is None


def test_plain_value_from_a_handler_gets_only_the_propagated_headers() -> None:
    output, _ = port()
    incoming = source(traceparent=TRACEPARENT, tenant="t")
    message = output.to_message({"a": 1}, source=incoming)
    assert json.loads(message.payload) == {"a": 1}
    assert message.content_type == "application/json"
    assert message.headers == {"correlationId": incoming.message_id, "traceparent": TRACEPARENT}
    assert message.key is None, "the input's key is not propagated"
    assert message.message_id != incoming.message_id


def test_returned_message_keeps_its_headers_key_and_content_type() -> None:
    output, _ = port()
    returned = Message(
        b"raw",
        {"tenant": "t", "correlationId": "own"},
        key="k2",
        content_type="application/octet-stream",
    )
    message = output.to_message(returned, source=source(correlationId="c", tracestate="s"))
    assert message.payload == b"raw"
    assert message.key == "k2"
    assert message.content_type == "application/octet-stream"
    assert message.headers == {"tenant": "t", "correlationId": "own", "tracestate": "s"}
    assert message.message_id == returned.message_id
    assert returned.headers == {"tenant": "t", "correlationId": "own"}, "not mutated"


def test_returned_message_without_content_type_gets_the_binding_one() -> None:
    output, _ = port(content_type="text/plain")
    assert output.to_message(Message(b"x")).content_type == "text/plain"


def test_partition_key_header_becomes_the_key() -> None:
    output, _ = port(partition_key="tenant")
    message = output.to_message({"a": 1}, headers={"tenant": "acme"})
    assert message.key == "acme"
    assert message.partition is None, "one partition: nothing to choose"


def test_explicit_key_wins_over_the_partition_key_header() -> None:
    output, _ = port(partition_key="tenant")
    assert output.to_message({}, headers={"tenant": "acme"}, key="k").key == "k"
    assert output.to_message(Message(b"{}", {"tenant": "acme"}, key="m")).key == "m"


def test_partition_key_header_on_a_returned_message() -> None:
    output, _ = port(partition_key="tenant", partition_count=8)
    message = output.to_message(Message(b"{}", {"tenant": "acme"}))
    assert message.key == "acme"
    assert message.partition == partition_for("acme", 8)


def test_missing_partition_key_header_leaves_the_key_unset() -> None:
    output, _ = port(partition_key="tenant", partition_count=4)
    message = output.to_message({}, headers={"other": "x"})
    assert (message.key, message.partition) == (None, None)


@pytest.mark.parametrize("count", [2, 3, 7, 16])
def test_partition_count_picks_a_stable_partition(count: int) -> None:
    output, _ = port(partition_key="key", partition_count=count)
    keys = [f"customer-{i}" for i in range(50)]
    first = [output.to_message({}, key=k).partition for k in keys]
    again = [output.to_message({}, key=k).partition for k in keys]
    assert first == again == [partition_for(k, count) for k in keys]
    assert all(0 <= p < count for p in first)  # type: ignore[operator]
    assert len(set(first)) > 1, "keys are spread over partitions"


def test_partition_for_is_spring_cloud_streams_default_selector() -> None:
    """abs(key.hashCode()) % count, with Java's String.hashCode (fixed values: hash()
    is salted per process, hashCode is not)."""
    assert java_string_hash("hello") == 99162322
    assert java_string_hash("") == 0
    # values printed by Java 17's String.hashCode()
    assert java_string_hash("héllo") == 103094734  # UTF-16 code units, not UTF-8 bytes
    assert java_string_hash("\U0001f600") == 1772899  # a surrogate pair
    assert java_string_hash("customer-42") == -1772111155  # overflows to negative
    assert partition_for("hello", 10) == 2
    assert partition_for(b"hello", 10) == 2
    assert partition_for("customer-42", 7) == 1772111155 % 7
    # Integer.MIN_VALUE has no absolute value in Java; Spring takes it as 0
    assert java_string_hash("polygenelubricants") == -(2**31)
    assert partition_for("polygenelubricants", 3) == 0
    assert partition_for("customer-42", 1) == 0


def test_partition_set_by_the_handler_is_kept() -> None:
    output, _ = port(partition_count=4)
    assert output.to_message(Message(b"{}", key="k", partition=3)).partition == 3


async def test_publish_sends_the_built_message_and_close_closes_the_producer() -> None:
    output, producer = port()
    message = await output.publish({"n": 1}, source=source(correlationId="c"))
    assert producer.published == [message]
    assert message.headers == {"correlationId": "c"}
    await output.close()
    assert producer.closed == 1


# -- through the runtime ---------------------------------------------------------------


@dataclasses.dataclass
class Priced:
    total: int


async def test_function_output_carries_correlation_and_trace_context_only() -> None:
    app = App("svc")

    @app.function("orders", "invoices")
    def price(order: dict) -> Priced:
        return Priced(order["n"] * 2)

    async with run_app(app) as harness:
        sent = await harness.send(
            "orders", {"n": 2}, headers={"traceparent": TRACEPARENT, "tenant": "t"}, key="k"
        )
        out = await harness.receive("invoices")
        assert out.json() == {"total": 4}
        assert out.headers == {"correlationId": sent.message_id, "traceparent": TRACEPARENT}
        assert out.key is None


async def test_function_returning_a_message_sets_headers_and_key() -> None:
    app = App("svc")

    @app.function("orders", "invoices", partition_count=4)
    def route(order: dict, msg: Message) -> Message:
        return Message(b'{"ok":true}', {"tenant": msg.headers["tenant"]}, key=order["customer"])

    async with run_app(app) as harness:
        await harness.send(
            "orders", {"customer": "c9"}, headers={"tenant": "t", "correlationId": "corr"}
        )
        out = await harness.receive("invoices")
        assert out.headers == {"tenant": "t", "correlationId": "corr"}
        assert out.key == "c9"
        assert out.partition == partition_for("c9", 4)
        assert out.content_type == "application/json"


async def test_function_returning_none_publishes_nothing() -> None:
    app = App("svc")

    @app.function("orders", "invoices")
    def maybe(order: dict) -> dict | None:
        return order if order["keep"] else None

    async with run_app(app) as harness:
        await harness.send("orders", {"keep": False})
        await harness.send("orders", {"keep": True})
        await harness.wait_handled(2)
        assert [m.json() for m in harness.published("invoices")] == [{"keep": True}]


@pytest.mark.parametrize(("count", "expected"), [(1, None), (2, partition_for("k", 2))])
def test_passing_the_input_message_through_does_not_keep_its_partition(
    count: int, expected: int | None
) -> None:
    output, _ = port(partition_key="key", partition_count=count)
    incoming = Message(b"{}", key="k", partition=5, destination="orders", delivery_attempt=2)
    message = output.to_message(incoming, source=incoming)
    assert message.partition == expected
