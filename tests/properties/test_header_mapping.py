"""Header mapping without a broker: a message goes through each binder's outgoing
mapping, the client library's own encoder and decoder of the wire format, and the
incoming mapping, and comes back with equal headers, key, content type, message id and
payload, except where the docs say otherwise:

* names a binder reserves for its own metadata (Kafka ``contentType``/``messageId``,
  RabbitMQ ``messageKey``/``x-timestamp`` and a ``contentType`` read when the property
  is missing, MQTT ``messageId``/``messageKey``/``messageTimestamp``);
* Kafka's dead-letter headers ``x-original-partition``/``-offset``/``-timestamp``,
  whose 4- or 8-byte values are read as Spring's binary integers (digits stay text);
* what a broker cannot carry: RabbitMQ names, content types and message ids are AMQP
  short strings of at most 255 bytes (py-amqp refuses to encode more, which the link
  reports as a failed publish); MQTT strings are at most 65535 bytes (``ValueError``);
  MQTT header names and content types with characters MQTT strings may not hold
  arrive with ``?`` in their place (values, keys and message ids are escaped and come
  back); Kafka header names are encoded strictly by aiokafka (a lone surrogate in a
  name is a ``UnicodeEncodeError``).
"""

from __future__ import annotations

import struct
from collections.abc import Mapping

import pytest
from aiokafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder
from aiokafka.structs import ConsumerRecord
from amqp import Message as AmqpMessage
from amqp import spec
from hypothesis import example, given, settings
from hypothesis import strategies as st
from paho.mqtt.client import MQTTMessage
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from binder.message import Message
from binder.spi import Failure
from binders.kafka.dead_letters import decode_header, spring_headers
from binders.kafka.mapping import from_record, to_record
from binders.mqtt.fastprops import FastPublishProperties
from binders.mqtt.mapping import from_mqtt, to_properties
from binders.rabbit.mapping import from_amqp, to_amqp

# --------------------------------------------------------------------------- messages

_SPECIAL = [
    "contentType",
    "messageId",
    "messageKey",
    "messageTimestamp",
    "x-timestamp",
    "x-escaped-headers",
    "spring_json_header_types",
    "x-original-partition",
    "x-original-offset",
    "x-original-timestamp",
    "kafka_dlt-original-offset",
    "",
    "a,b",
]
# Any str, lone surrogates included, with the characters that matter more often.
_chars = st.one_of(
    st.characters(),
    st.sampled_from(["\n", "\x00", ",", '"', "\\", "\ufeff", "\ufdd0", "\U0001ffff", "\ud800"]),
)
text = st.text(_chars, max_size=10)
long_text = st.builds(
    lambda s, n: s * n, st.text(_chars, min_size=1, max_size=3), st.integers(1, 40_000)
)
names = st.one_of(text, st.sampled_from(_SPECIAL), st.text(max_size=3).map(lambda s: s * 100))
header_values = st.one_of(text, st.text("0123456789-", min_size=4, max_size=8), long_text)
content_types = st.one_of(
    st.none(),
    st.sampled_from(["application/json", "text/plain; charset=utf-8", '"application/json"', ""]),
    text,
)


@st.composite
def messages(draw: st.DrawFn) -> Message:
    return Message(
        payload=draw(st.binary(max_size=64)),
        headers=draw(st.dictionaries(names, header_values, max_size=6)),
        key=draw(st.one_of(st.none(), text)),
        content_type=draw(content_types),
        message_id=draw(st.one_of(st.just(Message(b"").message_id), st.text(_chars, min_size=1))),
        timestamp=draw(st.floats(min_value=1.0, max_value=4e9)),
    )


def _utf8(value: str) -> bytes:
    return value.encode("utf-8", "surrogatepass")


def _has_surrogate(value: str) -> bool:
    return any(0xD800 <= ord(c) <= 0xDFFF for c in value)


# --------------------------------------------------------------------------- Kafka

_KAFKA_RESERVED = {"contentType", "messageId", "spring_json_header_types"}
_BINARY = {
    "x-original-partition": 4,
    "x-original-offset": 8,
    "x-original-timestamp": 8,
    "kafka_dlt-original-partition": 4,
    "kafka_dlt-original-offset": 8,
    "kafka_dlt-original-timestamp": 8,
}


def _kafka_wire(message: Message, extra: Mapping[str, str | bytes] | None = None) -> Message:
    """to_record, aiokafka's record batch encoder and decoder, from_record."""
    record = to_record(message, extra)
    builder = DefaultRecordBatchBuilder(2, 0, False, -1, -1, -1, 1 << 30)
    builder.append(0, record.timestamp_ms, record.key, record.value, record.headers)
    (read,) = list(DefaultRecordBatch(bytes(builder.build())))
    consumed = ConsumerRecord(
        "orders", 3, 42, read.timestamp, 0, read.key, read.value, None, 0, 0, read.headers
    )
    return from_record(consumed)


def _kafka_expected_header(name: str, value: str) -> str:
    """Digits stay text; other values of the binary width are read as integers."""
    width = _BINARY.get(name)
    data = _utf8(value)
    if width is None or len(data) != width or set(data) <= set(b"-0123456789"):
        return value
    return str(int.from_bytes(data, "big", signed=True))


@settings(max_examples=200, deadline=None)
@given(message=messages())
@example(message=Message(b"", {"x-exception-message": "bad \ud800"}, key="\udcff"))
@example(message=Message(b"", {"x-original-partition": "0042", "x-original-offset": "abcdefgh"}))
def test_kafka_round_trip(message: Message) -> None:
    if any(_has_surrogate(name) for name in message.headers):
        with pytest.raises(UnicodeEncodeError):
            _kafka_wire(message)
        return
    received = _kafka_wire(message)
    expected = {
        name: _kafka_expected_header(name, value)
        for name, value in message.headers.items()
        if name not in _KAFKA_RESERVED
    }
    assert received.headers == expected
    assert received.key == message.key
    content_type = message.content_type
    if (
        content_type is not None
        and len(content_type) > 1
        and content_type[0] == '"' == content_type[-1]
    ):
        content_type = content_type[1:-1]  # a Spring JSON-quoted header string
    assert received.content_type == content_type
    assert received.message_id == message.message_id
    assert received.payload == message.payload
    assert received.timestamp == int(message.timestamp * 1000) / 1000
    assert (received.destination, received.partition) == ("orders", 3)


@settings(max_examples=100, deadline=None)
@given(
    message=messages(),
    partition=st.integers(0, 2**31 - 1),
    offset=st.integers(0, 2**63 - 1),
    timestamp=st.one_of(st.none(), st.integers(0, 2**53)),
    group=st.one_of(st.none(), text.filter(lambda s: not _has_surrogate(s))),
    exception_message=text,
)
def test_kafka_dead_letter_headers_read_back(
    message: Message,
    partition: int,
    offset: int,
    timestamp: int | None,
    group: str | None,
    exception_message: str,
) -> None:
    """A dead letter written with Spring's headers and the core's reads back, through
    the wire, as the same :class:`DeadLetter` (any exception message, even one holding
    a lone surrogate, can be stored)."""
    plain = Message(message.payload, {}, message.key, message.content_type)
    failure = Failure("builtins.ValueError", exception_message, "trace", 2, "orders", group)
    extra: dict[str, str | bytes] = dict(failure.headers())
    extra.update(
        spring_headers(
            topic="orders",
            partition=partition,
            offset=offset,
            timestamp_ms=timestamp,
            timestamp_type=0,
            group=group,
            failure=failure,
        )
    )
    letter = _kafka_wire(plain, extra).dead_letter
    assert letter is not None
    assert (letter.destination, letter.group) == ("orders", group or None)
    assert (letter.partition, letter.offset) == (partition, offset)
    assert letter.timestamp == (timestamp / 1000.0 if timestamp is not None else None)
    assert letter.exception_type == "builtins.ValueError"
    assert letter.exception_message == (exception_message or None)
    assert letter.attempts == 2


@settings(max_examples=200)
@given(name=st.sampled_from(sorted(_BINARY)), data=st.binary(max_size=9))
def test_kafka_binary_dead_letter_integers(name: str, data: bytes) -> None:
    """Spring's big-endian integers read as decimal text; digits as written stay text."""
    width = _BINARY[name]
    decoded = decode_header(name, data)
    if len(data) == width and not set(data) <= set(b"-0123456789"):
        assert decoded == str(struct.unpack(">i" if width == 4 else ">q", data)[0])
    else:
        try:
            assert decoded == data.decode("utf-8", "surrogatepass")
        except UnicodeDecodeError:  # not UTF-8, not written by eventbinder
            assert decoded == data.decode("utf-8", "replace")


# --------------------------------------------------------------------------- RabbitMQ


def _amqp_wire(message: Message) -> Message:
    """to_amqp, py-amqp's property encoder and decoder, from_amqp."""
    sent = to_amqp(message, persistent=True)
    received = AmqpMessage()
    received._load_properties(spec.Basic.CLASS_ID, sent._serialize_properties(), 0)
    received.body = sent.body
    return from_amqp(received, "orders")


def _too_long_for_amqp(message: Message) -> bool:
    short = [*message.headers, message.message_id, "messageKey", "x-timestamp"]
    if message.content_type:
        short.append(message.content_type)
    return any(len(_utf8(s)) > 255 for s in short)


@settings(max_examples=200, deadline=None)
@given(message=messages())
@example(message=Message(b"", {"messageKey": "k", "contentType": "text/plain"}))
@example(message=Message(b"", {"x" * 256: "v"}))
def test_rabbit_round_trip(message: Message) -> None:
    if _too_long_for_amqp(message):
        with pytest.raises(struct.error):
            _amqp_wire(message)
        return
    received = _amqp_wire(message)
    headers = {k: v for k, v in message.headers.items() if k != "x-timestamp"}
    key = message.key
    if key is None:
        key = headers.pop("messageKey", None)  # a messageKey header is the key
    else:
        headers.pop("messageKey", None)
    content_type = message.content_type or None
    if content_type is None:
        content_type = headers.pop("contentType", None)  # Spring's header, when no property
    assert received.headers == headers
    assert received.key == key
    assert received.content_type == content_type
    assert received.message_id == message.message_id
    assert received.payload == message.payload
    assert received.timestamp == message.timestamp
    assert received.destination == "orders"


# --------------------------------------------------------------------------- MQTT

_MQTT_RESERVED = {"messageId", "messageKey", "messageTimestamp", "x-escaped-headers"}


def _forbidden_in_mqtt(char: str) -> bool:
    """What an MQTT string may not hold, from Mosquitto's mosquitto_validate_utf8
    (control characters, surrogates, non-characters) and paho's readUTF (U+FEFF)."""
    point = ord(char)
    return (
        point <= 0x1F
        or 0x7F <= point <= 0x9F
        or 0xD800 <= point <= 0xDFFF
        or 0xFDD0 <= point <= 0xFDEF
        or point & 0xFFFE == 0xFFFE
        or point == 0xFEFF
    )


def _mqtt_safe(value: str) -> bool:
    return not any(map(_forbidden_in_mqtt, value))


def _question_marks(value: str) -> str:
    return "".join("?" if _forbidden_in_mqtt(c) else c for c in value)


def _mqtt_string_ok(value: str) -> bool:
    """What Mosquitto accepts in an MQTT string (and paho decodes)."""
    return _mqtt_safe(value) and len(_utf8(value)) <= 65535


def _mqtt_wire(message: Message, decoder: type[Properties]) -> Message:
    """to_properties, the PUBLISH property block, paho's (or eventbinder's fast)
    decoder, from_mqtt; every string on the wire is one Mosquitto accepts."""
    props = to_properties(message, True)
    assert props is not None
    packed = props.pack()
    user = getattr(props, "UserProperty", [])
    for name, value in user:
        assert _mqtt_string_ok(name) and _mqtt_string_ok(value), (name, value)
    if props.ContentType is not None:
        assert _mqtt_string_ok(props.ContentType)
    decoded = decoder(PacketTypes.PUBLISH)
    decoded.unpack(packed)
    msg = MQTTMessage(1, b"orders")
    msg.payload = message.payload
    msg.properties = decoded
    return from_mqtt(msg)


def _mqtt_too_long(message: Message) -> bool:
    """Some string may exceed 65535 bytes once escaped (at most 12 bytes a character)."""
    strings = [*message.headers, *message.headers.values(), message.message_id]
    strings += [s for s in (message.key, message.content_type) if s]
    return any(len(_utf8(s)) * 12 > 65535 for s in strings)


@settings(max_examples=200, deadline=None)
@given(message=messages(), fast=st.booleans())
@example(message=Message(b"", {"": "line\nbreak"}), fast=False)
@example(message=Message(b"", {"a": "\ufdd0", "b": "\U0001fffe", "c": "\ufeff"}), fast=False)
@example(message=Message(b"", {}, key="a\nb", message_id="id\x00"), fast=False)
@example(message=Message(b"", {}, content_type="text/plain\n"), fast=True)
def test_mqtt5_round_trip(message: Message, fast: bool) -> None:
    decoder = FastPublishProperties if fast else Properties
    try:
        received = _mqtt_wire(message, decoder)
    except ValueError as exc:
        assert "65535" in str(exc)
        assert _mqtt_too_long(message)
        return
    expected: dict[str, str] = {}
    for name, value in message.headers.items():
        if name in _MQTT_RESERVED:
            continue
        sent = _question_marks(name)
        if not _mqtt_safe(value):
            sent = sent.replace(",", "?")
        expected[sent] = value
    if len(expected) == len({k for k in message.headers if k not in _MQTT_RESERVED}):
        assert received.headers == expected  # else two names became one: nothing to compare
    assert received.key == message.key
    content_type = message.content_type or None
    assert received.content_type == (content_type and _question_marks(content_type))
    assert received.message_id == message.message_id
    assert received.payload == message.payload
    assert received.timestamp == message.timestamp
    assert received.destination == "orders"


def test_mqtt311_carries_no_properties() -> None:
    assert to_properties(Message(b"x", {"a": "b"}, key="k"), False) is None
