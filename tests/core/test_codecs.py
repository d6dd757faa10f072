"""binder.codecs: content types <-> Python values."""

import dataclasses
import json
from typing import Any

import pydantic
import pytest

from binder.codecs import decoder_for, encode, is_json, is_text
from binder.errors import DecodeError


@dataclasses.dataclass
class Order:
    id: int
    item: str


class Invoice(pydantic.BaseModel):
    order_id: int
    total: float


# -- content type predicates ---------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "",
        "application/json",
        "APPLICATION/JSON",
        "application/json; charset=utf-8",
        "application/cloudevents+json",
    ],
)
def test_json_content_types(content_type: str | None) -> None:
    assert is_json(content_type)
    assert not is_text(content_type)


@pytest.mark.parametrize("content_type", ["text/plain", "Text/CSV; charset=latin-1"])
def test_text_content_types(content_type: str) -> None:
    assert is_text(content_type)
    assert not is_json(content_type)


def test_other_content_types_are_neither_json_nor_text() -> None:
    assert not is_json("application/octet-stream")
    assert not is_text("application/octet-stream")


# -- encode ----------------------------------------------------------------------------


def test_encode_json_is_compact_and_parses_back() -> None:
    data = encode({"a": [1, 2], "b": "é"}, "application/json")
    assert data == b'{"a":[1,2],"b":"\\u00e9"}'
    assert json.loads(data) == {"a": [1, 2], "b": "é"}


def test_encode_without_content_type_is_json() -> None:
    assert encode([1, "x"], None) == b'[1,"x"]'


def test_encode_dataclass_and_pydantic_as_json() -> None:
    assert json.loads(encode(Order(1, "pen"), "application/json")) == {"id": 1, "item": "pen"}
    assert json.loads(encode(Invoice(order_id=7, total=2.5), "application/json")) == {
        "order_id": 7,
        "total": 2.5,
    }


def test_encode_nested_models_inside_plain_values() -> None:
    value = {"orders": [Order(1, "a")], "invoice": Invoice(order_id=1, total=1.0)}
    assert json.loads(encode(value, "application/vnd.x+json")) == {
        "orders": [{"id": 1, "item": "a"}],
        "invoice": {"order_id": 1, "total": 1.0},
    }


def test_encode_unserialisable_value_as_json_raises_type_error() -> None:
    with pytest.raises(TypeError, match="object"):
        encode({"x": object()}, "application/json")


def test_encode_bytes_pass_through_whatever_the_content_type() -> None:
    for content_type in ("application/json", "text/plain", "application/octet-stream", None):
        assert encode(b"\x00\xff", content_type) == b"\x00\xff"
    assert encode(bytearray(b"ab"), "application/json") == b"ab"
    assert encode(memoryview(b"cd"), "text/plain") == b"cd"


def test_encode_text_uses_the_charset_parameter() -> None:
    assert encode("é", "text/plain") == "é".encode()
    assert encode("é", "text/plain; charset=latin-1") == b"\xe9"
    assert encode(42, "text/plain") == b"42"


def test_encode_str_for_other_content_types_is_utf8() -> None:
    assert encode("é", "application/xml") == "é".encode()


def test_encode_non_str_for_other_content_types_is_refused() -> None:
    with pytest.raises(TypeError, match="return bytes"):
        encode({"a": 1}, "application/octet-stream")


# -- decode ----------------------------------------------------------------------------


def test_bytes_annotation_gets_the_raw_payload() -> None:
    assert decoder_for(bytes)(b"\x00{not json", "application/json") == b"\x00{not json"


def test_str_annotation_decodes_with_the_charset() -> None:
    assert decoder_for(str)("é".encode(), "text/plain") == "é"
    assert decoder_for(str)(b"\xe9", "text/plain; charset=latin-1") == "é"
    assert decoder_for(str)(b"\xe9", "text/plain; charset=ISO-8859-1") == "é"


def test_str_annotation_on_invalid_text_raises_decode_error() -> None:
    with pytest.raises(DecodeError, match="not valid text"):
        decoder_for(str)(b"\xff\xfe\xfa", "text/plain")


def test_unknown_charset_raises_decode_error() -> None:
    with pytest.raises(DecodeError):
        decoder_for(str)(b"abc", "text/plain; charset=no-such-charset")


def test_charset_parameter_name_is_case_insensitive_and_may_be_quoted() -> None:
    assert decoder_for(str)(b"\xe9", "text/plain; Charset=latin-1") == "é"
    assert decoder_for(str)(b"\xe9", 'text/plain; charset="latin-1"') == "é"
    assert encode("é", "text/plain;CHARSET=latin-1") == b"\xe9"


def test_dict_and_list_annotations() -> None:
    assert decoder_for(dict)(b'{"a":1}', "application/json") == {"a": 1}
    assert decoder_for(list)(b"[1,2]", None) == [1, 2]
    assert decoder_for(dict[str, int])(b'{"a":1}', None) == {"a": 1}
    assert decoder_for(list[int])(b"[3]", None) == [3]


@pytest.mark.parametrize(
    ("annotation", "payload", "expected"),
    [
        (dict, b"[1]", "expected a JSON object, got list"),
        (list, b'{"a":1}', "expected a JSON array, got dict"),
        (dict[str, Any], b'"s"', "expected a JSON object, got str"),
        (list[int], b"1", "expected a JSON array, got int"),
    ],
)
def test_dict_vs_list_mismatch_raises_decode_error(
    annotation: Any, payload: bytes, expected: str
) -> None:
    with pytest.raises(DecodeError, match=expected):
        decoder_for(annotation)(payload, "application/json")


@pytest.mark.parametrize("annotation", [dict, list, Any, Order, Invoice])
def test_invalid_json_raises_decode_error(annotation: Any) -> None:
    with pytest.raises(DecodeError):
        decoder_for(annotation)(b"{not json", "application/json")


def test_dataclass_annotation_builds_the_instance_ignoring_unknown_keys() -> None:
    order = decoder_for(Order)(b'{"id":1,"item":"pen","extra":true}', None)
    assert order == Order(1, "pen")


def test_dataclass_missing_field_raises_decode_error() -> None:
    with pytest.raises(DecodeError, match="cannot build Order"):
        decoder_for(Order)(b'{"id":1}', None)


def test_dataclass_from_non_object_raises_decode_error() -> None:
    with pytest.raises(DecodeError, match="JSON object for Order, got list"):
        decoder_for(Order)(b"[1]", None)


def test_pydantic_annotation_validates_and_coerces() -> None:
    invoice = decoder_for(Invoice)(b'{"order_id":"3","total":1}', "application/json")
    assert invoice == Invoice(order_id=3, total=1.0)


def test_pydantic_validation_failure_raises_decode_error() -> None:
    with pytest.raises(DecodeError, match="cannot build Invoice"):
        decoder_for(Invoice)(b'{"order_id":"x","total":1}', None)


def test_unannotated_payload_follows_the_content_type() -> None:
    decode = decoder_for(Any)
    assert decode(b'{"a":1}', "application/json") == {"a": 1}
    assert decode(b'{"a":1}', None) == {"a": 1}
    assert decode(b"\xe9", "text/plain; charset=latin-1") == "é"
    assert decode(b"\x00\x01", "application/octet-stream") == b"\x00\x01"


def test_round_trip_through_encode_and_decode() -> None:
    for value, annotation in (
        (Order(2, "cup"), Order),
        (Invoice(order_id=1, total=9.5), Invoice),
        ({"k": [1]}, dict),
        ([{"a": None}], list),
    ):
        assert decoder_for(annotation)(encode(value, "application/json"), None) == value


@pytest.mark.parametrize("content_type", ["application/json", None])
def test_str_round_trips_under_a_json_content_type(content_type: str | None) -> None:
    # encode() writes a JSON string literal; decoding for ``str`` unquotes it again, so a
    # str -> str function chain does not add a layer of quotes per hop
    assert encode("hé", content_type) == b'"h\\u00e9"'
    assert decoder_for(str)(encode("hé", content_type), content_type) == "hé"


def test_str_under_json_leaves_other_text_as_it_is() -> None:
    decode = decoder_for(str)
    assert decode(b"plain words", "application/json") == "plain words"
    assert decode(b'{"a": 1}', "application/json") == '{"a": 1}'
    assert decode(b'"unterminated', "application/json") == '"unterminated'
    assert decode(b'"quoted"', "text/plain") == '"quoted"', "text/* is never unquoted"


def test_a_dataclass_s_dates_ids_decimals_and_enums_encode_as_pydantic_writes_them() -> None:
    import datetime
    import decimal
    import enum
    import uuid
    from dataclasses import dataclass

    class Size(enum.Enum):
        SMALL = "s"

    @dataclass
    class Order:
        placed_at: datetime.datetime
        day: datetime.date
        id: uuid.UUID
        price: decimal.Decimal
        size: Size
        tags: frozenset[str]

    order = Order(
        datetime.datetime(2026, 11, 30, 8, 0, tzinfo=datetime.UTC),
        datetime.date(2026, 11, 30),
        uuid.UUID(int=1),
        decimal.Decimal("3.50"),
        Size.SMALL,
        frozenset({"gift"}),
    )
    assert json.loads(encode(order, "application/json")) == {
        "placed_at": "2026-11-30T08:00:00+00:00",
        "day": "2026-11-30",
        "id": "00000000-0000-0000-0000-000000000001",
        "price": "3.50",
        "size": "s",
        "tags": ["gift"],
    }
    with pytest.raises(TypeError, match="cannot encode object as JSON"):
        encode({"x": object()}, "application/json")
