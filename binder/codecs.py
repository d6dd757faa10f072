"""Content types <-> Python values.

Decoding is driven by the handler's annotation: ``bytes`` gets the raw payload, ``str``
the text, ``dict``/``list``/``Any`` the parsed JSON, a dataclass or pydantic model an
instance built from the JSON object.  Encoding is driven by the binding's content type:
``application/json`` (and ``+json`` types) serialise dataclasses, pydantic models and
plain values; ``text/*`` writes ``str(value)``; ``bytes`` pass through unchanged.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import json
import typing
import uuid
from collections.abc import Callable
from typing import Any

from binder.errors import DecodeError

__all__ = ["Decoder", "Encoder", "decoder_for", "encode", "encoder_for", "is_json", "is_text"]

Decoder = Callable[[bytes, str | None], Any]
Encoder = Callable[[Any], bytes]
JSON = "application/json"


def is_json(content_type: str | None) -> bool:
    """True for ``application/json`` and ``application/*+json`` (parameters ignored)."""
    if not content_type:
        return True
    base = content_type.split(";", 1)[0].strip().lower()
    return base == JSON or base.endswith("+json")


def is_text(content_type: str | None) -> bool:
    """True for ``text/*`` content types."""
    if not content_type:
        return False
    return content_type.split(";", 1)[0].strip().lower().startswith("text/")


def _charset(content_type: str | None) -> str:
    """The ``charset`` parameter (names are case-insensitive, RFC 2045), else UTF-8."""
    for parameter in (content_type or "").split(";")[1:]:
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset" and value.strip():
            return value.strip().strip('"')
    return "utf-8"


def _to_jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    dump = getattr(value, "model_dump", None)  # pydantic v2 without importing it
    if callable(dump):
        return dump(mode="json")
    # What a dataclass's fields often hold, written as pydantic's JSON mode writes them.
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, uuid.UUID | decimal.Decimal):
        return str(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, set | frozenset):
        return list(value)
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


_JSON_ENCODER = json.JSONEncoder(default=_to_jsonable, separators=(",", ":"))
_JSON_DECODER = json.JSONDecoder()
_BINARY = bytes | bytearray | memoryview


def encoder_for(content_type: str | None) -> Encoder:
    """Return the function serialising values for ``content_type`` (bytes pass through)."""
    if is_text(content_type):
        charset = _charset(content_type)

        def text(value: Any) -> bytes:
            return bytes(value) if isinstance(value, _BINARY) else str(value).encode(charset)

        return text
    if is_json(content_type):
        encode_json = _JSON_ENCODER.encode

        def as_json(value: Any) -> bytes:
            return bytes(value) if isinstance(value, _BINARY) else encode_json(value).encode()

        return as_json

    def other(value: Any) -> bytes:
        if isinstance(value, _BINARY):
            return bytes(value)
        if isinstance(value, str):
            return value.encode()
        raise TypeError(
            f"cannot encode {type(value).__name__} as {content_type}; return bytes for this type"
        )

    return other


def encode(value: Any, content_type: str | None) -> bytes:
    """Serialise ``value`` for ``content_type``; bytes are sent as they are."""
    return encoder_for(content_type)(value)


def _text(payload: bytes, content_type: str | None) -> str:
    try:
        return payload.decode(_charset(content_type))
    except (ValueError, LookupError) as exc:  # ValueError: also "charset=a\0b", idna's
        raise DecodeError(f"payload is not valid text: {exc}") from exc


def _json(payload: bytes, content_type: str | None) -> Any:
    try:
        try:
            return _JSON_DECODER.decode(payload.decode())
        except UnicodeDecodeError:
            return json.loads(payload)  # UTF-16/32 JSON, detected from its first bytes
    except (ValueError, RecursionError) as exc:  # RecursionError: nested too deeply
        raise DecodeError(f"payload is not valid JSON ({content_type or JSON}): {exc}") from exc


def _any(payload: bytes, content_type: str | None) -> Any:
    if is_json(content_type):
        return _json(payload, content_type)
    if is_text(content_type):
        return _text(payload, content_type)
    return payload


def _str(payload: bytes, content_type: str | None) -> str:
    """Text; under a JSON content type a JSON string literal is unquoted."""
    text = _text(payload, content_type)
    if is_json(content_type) and text[:1] == '"':
        try:
            value = _JSON_DECODER.decode(text)
        except ValueError:
            return text
        if isinstance(value, str):
            return value
    return text


def _raw(payload: bytes, content_type: str | None) -> bytes:
    return payload


def _typed(kind: type, name: str) -> Decoder:
    def decode(payload: bytes, content_type: str | None) -> Any:
        value = _json(payload, content_type)
        if not isinstance(value, kind):
            raise DecodeError(f"expected a JSON {name}, got {type(value).__name__}")
        return value

    return decode


def _dataclass(cls: type) -> Decoder:
    names = {f.name for f in dataclasses.fields(cls) if f.init}  # others: like unknown keys

    def decode(payload: bytes, content_type: str | None) -> Any:
        data = _json(payload, content_type)
        if not isinstance(data, dict):
            raise DecodeError(
                f"expected a JSON object for {cls.__name__}, got {type(data).__name__}"
            )
        try:
            return cls(**{k: v for k, v in data.items() if k in names})
        except TypeError as exc:
            raise DecodeError(f"cannot build {cls.__name__}: {exc}") from exc

    return decode


def _pydantic(cls: Any) -> Decoder:
    def decode(payload: bytes, content_type: str | None) -> Any:
        try:
            return cls.model_validate_json(payload)
        except ValueError as exc:  # pydantic.ValidationError subclasses ValueError
            raise DecodeError(f"cannot build {cls.__name__}: {exc}") from exc

    return decode


def decoder_for(annotation: Any) -> Decoder:
    """Return the decoder for a handler's payload annotation."""
    if annotation in (bytes, bytearray):
        return _raw
    if annotation is str:
        return _str
    origin = typing.get_origin(annotation) or annotation
    if origin is dict:
        return _typed(dict, "object")
    if origin is list:
        return _typed(list, "array")
    if isinstance(annotation, type) and dataclasses.is_dataclass(annotation):
        return _dataclass(annotation)
    if isinstance(annotation, type) and hasattr(annotation, "model_validate_json"):
        return _pydantic(annotation)
    return _any
