"""A faster decoder for the MQTT 5 properties of received PUBLISH packets.

paho-mqtt decodes properties generically: for every property it scans its table of
names several times and validates through ``__setattr__``.  For a message with a
content type and four user properties that costs about 50 us, more than everything
else this binder does per message, and it runs on the event loop thread.

:func:`install` makes paho's PUBLISH decoder (``paho.mqtt._packet``) build
:class:`FastPublishProperties`, a :class:`~paho.mqtt.properties.Properties` subclass
whose ``unpack`` reads the two properties eventbinder sends (content type and user
properties) directly and hands anything else (other identifiers, malformed data,
other packet types) to paho's own ``unpack``, so results are identical
(``tests/mqtt/test_fastprops.py`` compares both).  It is installed process-wide,
only when paho has the expected shape; ``EVENTBINDER_MQTT_FAST_PROPERTIES=0`` turns
it off.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

__all__ = ["FastPublishProperties", "install"]

log = logging.getLogger(__name__)

_CONTENT_TYPE = 3
_USER_PROPERTY = 38
_set = object.__setattr__


_TABLES = Properties(PacketTypes.PUBLISH)


class FastPublishProperties(Properties):
    """Properties whose ``unpack`` is fast for content type and user properties.

    paho's ``__init__`` builds its (constant) lookup tables for every instance; here
    they are shared class attributes, read-only like in paho.
    """

    types = _TABLES.types
    names = _TABLES.names
    properties = _TABLES.properties

    def __init__(self, packetType: int) -> None:
        _set(self, "packetType", packetType)

    def unpack(self, buffer: Any) -> tuple[Properties, int]:
        """Decode like :meth:`Properties.unpack`; return ``(self, bytes used)``."""
        if self.packetType != PacketTypes.PUBLISH:
            return super().unpack(buffer)  # type: ignore[no-any-return]
        try:
            return self._fast_unpack(bytes(buffer))
        except (IndexError, ValueError, _Fallback):
            return super().unpack(buffer)  # type: ignore[no-any-return]

    def _fast_unpack(self, data: bytes) -> tuple[Properties, int]:
        length, shift, pos = 0, 0, 0
        while True:  # variable byte integer: the property length
            byte = data[pos]
            pos += 1
            length |= (byte & 0x7F) << shift
            if not byte & 0x80:
                break
            shift += 7
            if shift > 21:
                raise _Fallback
        end = pos + length
        if end > len(data):
            raise _Fallback
        content_type: str | None = None
        user: list[tuple[str, str]] = []
        while pos < end:
            ident = data[pos]
            pos += 1
            if ident == _USER_PROPERTY:
                name, pos = _utf8(data, pos, end)
                value, pos = _utf8(data, pos, end)
                user.append((name, value))
            elif ident == _CONTENT_TYPE and content_type is None:
                content_type, pos = _utf8(data, pos, end)
            else:
                raise _Fallback
        if content_type is not None:
            _set(self, "ContentType", content_type)
        if user:
            _set(self, "UserProperty", user)
        return self, end


class _Fallback(Exception):
    """Let paho's own decoder handle this property block."""


def _utf8(data: bytes, pos: int, end: int) -> tuple[str, int]:
    size = int.from_bytes(data[pos : pos + 2], "big")
    stop = pos + 2 + size
    if pos + 2 > end or stop > end:
        raise _Fallback
    return data[pos + 2 : stop].decode("utf-8"), stop


def install() -> bool:
    """Make paho build :class:`FastPublishProperties` for PUBLISH; True if installed."""
    if os.environ.get("EVENTBINDER_MQTT_FAST_PROPERTIES", "1") in {"0", "false", "no"}:
        return False
    try:
        from paho.mqtt import _packet
    except ImportError:
        return False
    current = getattr(_packet, "Properties", None)
    if current is FastPublishProperties:
        return True
    if current is not Properties:
        log.debug("paho.mqtt._packet has no Properties to speed up; keeping paho's decoder")
        return False
    _packet.Properties = FastPublishProperties  # type: ignore[attr-defined]
    return True
