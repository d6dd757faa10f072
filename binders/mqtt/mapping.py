"""Message <-> MQTT PUBLISH: payload, MQTT 5 content type and user properties."""

from __future__ import annotations

import json
import re
import time
from typing import Any

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from binder.message import KEY_HEADER, MESSAGE_ID_HEADER, Message, new_message_id

__all__ = ["ESCAPED_HEADER", "TIMESTAMP_HEADER", "from_mqtt", "to_properties"]

#: User property carrying ``Message.timestamp`` (seconds since the epoch, as text).
TIMESTAMP_HEADER = "messageTimestamp"
#: User property listing headers whose values travel JSON-encoded (see ``_escape``).
ESCAPED_HEADER = "x-escaped-headers"
_RESERVED = frozenset({MESSAGE_ID_HEADER, KEY_HEADER, TIMESTAMP_HEADER, ESCAPED_HEADER})
# MQTT strings must not hold control characters or non-characters (Mosquitto closes the
# connection with "Malformed UTF-8": U+FDD0..U+FDEF and U+xFFFE/U+xFFFF of every plane),
# nor lone surrogates (not UTF-8 at all); paho's own decoder also refuses U+FEFF.  A
# stack trace's newlines are the usual case.
_NONCHARACTERS = "".join(
    chr(plane + low) for plane in range(0, 0x110000, 0x10000) for low in (0xFFFE, 0xFFFF)
)
_UNSAFE = re.compile(f"[\x00-\x1f\x7f-\x9f\ud800-\udfff\ufdd0-\ufdef\ufeff{_NONCHARACTERS}]")


def _escape(value: str) -> str:
    return json.dumps(value, ensure_ascii=True)


def _unescape(value: str) -> str:
    try:
        decoded = json.loads(value)
    except (ValueError, RecursionError):  # not what _escape wrote
        return value
    return decoded if isinstance(decoded, str) else value


class PackedProperties(Properties):
    """PUBLISH properties encoded once, by a direct encoder.

    paho's :class:`Properties` validates every attribute by scanning its name table,
    which costs more than the rest of a publish; paho only ever calls ``pack()`` on the
    properties it sends (and ``str()`` when debug logging), so those are provided.
    """

    _packed: bytes
    ContentType: str | None
    UserProperty: list[tuple[str, str]]

    def __init__(self, content_type: str | None, user: list[tuple[str, str]]) -> None:
        parts = [b"\x03", _utf8(content_type)] if content_type else []
        for name, value in user:
            parts += (b"\x26", _utf8(name), _utf8(value))
        body = b"".join(parts)
        object.__setattr__(self, "packetType", PacketTypes.PUBLISH)
        object.__setattr__(self, "ContentType", content_type)
        object.__setattr__(self, "UserProperty", user)
        object.__setattr__(self, "_packed", _varint(len(body)) + body)

    def pack(self) -> bytes:
        """The encoded property block (length prefix included)."""
        return self._packed

    def __str__(self) -> str:
        return f"[ContentType: {self.ContentType!r}, UserProperty: {len(self.UserProperty)}]"

    __repr__ = __str__


def _utf8(text: str) -> bytes:
    data = text.encode("utf-8")
    if len(data) > 65535:
        raise ValueError(f"MQTT strings are limited to 65535 bytes, got {len(data)}")
    return len(data).to_bytes(2, "big") + data


def _varint(value: int) -> bytes:
    if value < 128:
        return bytes((value,))
    out = bytearray()
    while True:
        value, digit = divmod(value, 128)
        if value:
            out.append(digit | 0x80)
        else:
            out.append(digit)
            return bytes(out)


def to_properties(message: Message, mqtt5: bool) -> Properties | None:
    """MQTT 5 PUBLISH properties for ``message``; None under MQTT 3.1.1 (no properties)."""
    if not mqtt5:
        return None
    user: list[tuple[str, str]] = []
    escaped: list[str] = []
    for name, value in message.headers.items():
        if name in _RESERVED:
            continue
        name, value = _UNSAFE.sub("?", str(name)), str(value)
        if _UNSAFE.search(value):
            name = name.replace(",", "?")  # the escaped list is comma-separated
            escaped.append(name)
            value = _escape(value)
        user.append((name, value))
    message_id, key = message.message_id, message.key
    if _UNSAFE.search(message_id):
        escaped.append(MESSAGE_ID_HEADER)
        message_id = _escape(message_id)
    if key is not None and _UNSAFE.search(key):
        escaped.append(KEY_HEADER)
        key = _escape(key)
    if escaped:
        user.append((ESCAPED_HEADER, ",".join(escaped)))
    user.append((MESSAGE_ID_HEADER, message_id))
    user.append((TIMESTAMP_HEADER, repr(message.timestamp)))
    if key is not None:
        user.append((KEY_HEADER, key))
    content_type = message.content_type and _UNSAFE.sub("?", message.content_type)
    return PackedProperties(content_type, user)


def from_mqtt(msg: Any) -> Message:
    """Build a :class:`Message` from a paho ``MQTTMessage``.

    ``destination`` is the concrete topic (useful with wildcard subscriptions); a
    redelivered QoS 1 message (DUP flag) gets ``delivery_attempt`` 2, as MQTT does not
    count deliveries.
    """
    headers: dict[str, str] = {}
    content_type: str | None = None
    props = getattr(msg, "properties", None)
    if props is not None:
        content_type = getattr(props, "ContentType", None)
        for name, value in getattr(props, "UserProperty", ()) or ():
            headers[name] = value
    escaped = headers.pop(ESCAPED_HEADER, None)
    for name in escaped.split(",") if escaped is not None else ():
        if name in headers:
            headers[name] = _unescape(headers[name])
    message_id = headers.pop(MESSAGE_ID_HEADER, None) or new_message_id()
    key = headers.pop(KEY_HEADER, None)
    stamp = headers.pop(TIMESTAMP_HEADER, None)
    try:
        timestamp = float(stamp) if stamp is not None else time.time()
    except ValueError:
        timestamp = time.time()
    return Message(
        payload=bytes(msg.payload),
        headers=headers,
        key=key,
        content_type=content_type,
        message_id=message_id,
        timestamp=timestamp,
        delivery_attempt=2 if msg.dup else 1,
        destination=msg.topic,
    )
