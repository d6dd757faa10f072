"""Payload encoding and decoding: for each supported annotation, a value encoded for a
content type decodes back to an equal value; any bytes under any content type either
decode or raise :class:`DecodeError`, never another exception."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pydantic
import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from binder.codecs import decoder_for, encode, is_json
from binder.errors import DecodeError

JSON_TYPES = [
    None,
    "application/json",
    "application/json; charset=utf-8",
    "application/cloudevents+json",
    "APPLICATION/JSON",
]

# JSON values as Python's json module reads them back (no NaN: NaN != NaN; floats and
# ints within what JSON text can hold without the int-digits limit).
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False),
    st.text(),  # lone surrogates included: JSON escapes them
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=20,
)


@dataclasses.dataclass
class Line:
    sku: str
    quantity: int
    attributes: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Order:
    id: int
    customer: str
    total: float
    lines: list[Any]
    meta: dict[str, Any]
    note: str | None = None
    rush: bool = False
    seen: int = dataclasses.field(default=0, init=False, compare=False)


class Item(pydantic.BaseModel):
    sku: str
    quantity: int


class Invoice(pydantic.BaseModel):
    id: int
    customer: str
    total: float
    items: list[Item]
    tags: dict[str, str]
    note: str | None = None


orders = st.builds(
    Order,
    id=st.integers(min_value=-(2**63), max_value=2**63),
    customer=st.text(),
    total=st.floats(allow_nan=False),
    lines=st.lists(json_values, max_size=3),
    meta=st.dictionaries(st.text(max_size=8), json_values, max_size=3),
    note=st.one_of(st.none(), st.text()),
    rush=st.booleans(),
)


@st.composite
def orders_seen(draw: st.DrawFn) -> Order:
    """An order whose init=False field was set after construction."""
    order = draw(orders)
    order.seen = draw(st.integers(0, 9))
    return order


invoices = st.builds(
    Invoice,
    id=st.integers(min_value=-(2**63), max_value=2**63),
    customer=st.text(),
    total=st.floats(allow_nan=False, allow_infinity=False),
    items=st.lists(st.builds(Item, sku=st.text(), quantity=st.integers(-(2**40), 2**40))),
    tags=st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=3),
    note=st.one_of(st.none(), st.text()),
)


def _same(a: Any, b: Any) -> bool:
    """Equality that also tells -0.0 and 0.0 apart where JSON keeps the sign."""
    if isinstance(a, float) and isinstance(b, float):
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    return bool(a == b)


# --------------------------------------------------------------------------- round trips


@settings(max_examples=80)
@given(
    value=st.dictionaries(st.text(max_size=8), json_values, max_size=5),
    ct=st.sampled_from(JSON_TYPES),
)
def test_dict_round_trip(value: dict[str, Any], ct: str | None) -> None:
    assert decoder_for(dict[str, Any])(encode(value, ct), ct) == value
    assert decoder_for(dict)(encode(value, ct), ct) == value


@settings(max_examples=80)
@given(value=st.lists(json_values, max_size=5), ct=st.sampled_from(JSON_TYPES))
def test_list_round_trip(value: list[Any], ct: str | None) -> None:
    assert decoder_for(list[Any])(encode(value, ct), ct) == value


@settings(max_examples=150)
@given(value=json_values, ct=st.sampled_from(JSON_TYPES))
def test_any_json_value_round_trip(value: Any, ct: str | None) -> None:
    """Without an annotation, a JSON content type decodes to the JSON value."""
    assert _same(decoder_for(None)(encode(value, ct), ct), value)


@settings(max_examples=200)
@given(
    value=st.text(),
    ct=st.sampled_from(
        [*JSON_TYPES, "text/plain", "text/csv; charset=utf-8", "application/octet-stream"]
    ),
)
@example(value='"quoted"', ct="application/json")
@example(value='"', ct="application/json")
def test_str_round_trip(value: str, ct: str | None) -> None:
    """Text under JSON travels as a JSON string (any str); under text/* and other
    types as UTF-8, which cannot hold a lone surrogate (UnicodeEncodeError)."""
    if not is_json(ct) and any(0xD800 <= ord(c) <= 0xDFFF for c in value):
        with pytest.raises(UnicodeEncodeError):
            encode(value, ct)
        return
    assert decoder_for(str)(encode(value, ct), ct) == value


@settings(max_examples=100)
@given(
    value=st.text(st.characters(max_codepoint=0xFF)),
    charset=st.sampled_from(["latin-1", "ISO-8859-1", "cp1252", "utf-16", "UTF-8"]),
)
def test_text_in_its_charset_round_trip(value: str, charset: str) -> None:
    ct = f"text/plain; charset={charset}"
    try:
        payload = encode(value, ct)
    except UnicodeEncodeError:
        assume(False)  # cp1252 lacks some latin-1 control characters
    assert decoder_for(str)(payload, ct) == value


@settings(max_examples=100)
@given(
    value=st.binary(),
    ct=st.one_of(
        st.none(), st.sampled_from(["text/plain", "application/octet-stream", "x/y"]), st.text()
    ),
)
def test_bytes_pass_through(value: bytes, ct: str | None) -> None:
    for kind in (bytes, bytearray, memoryview):
        assert decoder_for(bytes)(encode(kind(value), ct), ct) == value


@settings(max_examples=150)
@given(order=st.one_of(orders, orders_seen()), ct=st.sampled_from(JSON_TYPES))
def test_dataclass_round_trip(order: Order, ct: str | None) -> None:
    """A dataclass with JSON-valued fields decodes to an equal instance; a field
    outside ``__init__`` is ignored like an unknown key (it is not compared)."""
    decoded = decoder_for(Order)(encode(order, ct), ct)
    assert decoded == order
    assert decoded.seen == 0


@settings(max_examples=100, deadline=None)
@given(invoice=invoices, ct=st.sampled_from(JSON_TYPES))
def test_pydantic_round_trip(invoice: Invoice, ct: str | None) -> None:
    assert decoder_for(Invoice)(encode(invoice, ct), ct) == invoice


# --------------------------------------------------------------------------- any bytes

_ANNOTATIONS: list[Any] = [None, bytes, str, dict, dict[str, int], list, list[str], Order, Invoice]
content_types = st.one_of(
    st.none(),
    st.sampled_from(
        [
            "application/json",
            "application/vnd.x+json; charset=latin-1",
            "text/plain",
            "text/plain; charset=utf-16",
            "text/plain; charset=idna",
            "text/plain; charset=nosuch",
            "text/plain; charset=base64",
            "text/plain; charset=a\x00b",
            'text/plain; charset="utf-8"',
            "application/octet-stream",
            "",
        ]
    ),
    st.builds(lambda c: f"text/plain; charset={c}", st.text(max_size=12)),
    st.text(max_size=20),
)
payloads = st.one_of(
    st.binary(max_size=64),
    st.sampled_from(
        [b"[" * 100_000, b'{"a":' * 50_000, b"1" * 5000, b'"\\ud800"', b"\xff\xfe{\x00}\x00"]
    ),
    json_values.map(lambda v: encode(v, None)),
)


@settings(max_examples=300, deadline=None)
@given(annotation=st.sampled_from(_ANNOTATIONS), payload=payloads, ct=content_types)
@example(annotation=dict, payload=b"[" * 100_000, ct="application/json")
@example(annotation=None, payload=b"x", ct="text/plain; charset=a\x00b")
@example(annotation=str, payload=b"x", ct="text/plain; charset=a\x00b")
def test_any_bytes_decode_or_raise_decode_error(
    annotation: Any, payload: bytes, ct: str | None
) -> None:
    decode = decoder_for(annotation)
    try:
        value = decode(payload, ct)
    except DecodeError:
        return
    if annotation in (bytes,):
        assert value == payload
    elif annotation in (dict, dict[str, int]):
        assert isinstance(value, dict)
    elif annotation in (list, list[str]):
        assert isinstance(value, list)
    elif annotation is str:
        assert isinstance(value, str)
    elif annotation in (Order, Invoice):
        assert isinstance(value, annotation)
