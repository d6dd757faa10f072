"""The fast PUBLISH property decoder gives exactly what paho's own decoder gives."""

from __future__ import annotations

import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import MQTTException, Properties

from binders.mqtt.fastprops import FastPublishProperties, install
from binders.mqtt.mapping import PackedProperties


def _packed(**values: object) -> bytes:
    props = Properties(PacketTypes.PUBLISH)
    for name, value in values.items():
        setattr(props, name, value)
    return props.pack()


CASES = [
    _packed(),
    _packed(ContentType="application/json"),
    _packed(UserProperty=[("a", "b"), ("a", "c"), ("h\u00e9", "\u2603" * 400)]),
    _packed(ContentType="text/plain", UserProperty=[("messageId", "x" * 32)]),
    _packed(ContentType="t", MessageExpiryInterval=30, ResponseTopic="r/t"),
    _packed(CorrelationData=b"\x00\x01", PayloadFormatIndicator=1),
    PackedProperties("application/json", [("k", "v"), ("", "")]).pack(),
]


def _attrs(props: Properties) -> dict[str, object]:
    names = [n.replace(" ", "") for n in props.names]
    return {n: getattr(props, n) for n in names if hasattr(props, n)}


@pytest.mark.parametrize("data", CASES)
def test_same_result_as_paho(data: bytes) -> None:
    trailing = data + b"payload bytes"
    slow, slow_len = Properties(PacketTypes.PUBLISH).unpack(trailing)
    fast, fast_len = FastPublishProperties(PacketTypes.PUBLISH).unpack(trailing)
    assert (fast_len, _attrs(fast)) == (slow_len, _attrs(slow))
    assert str(fast) == str(slow)


def test_malformed_blocks_fail_like_paho() -> None:
    duplicate = b"\x06" + b"\x03\x00\x01a" + b"\x03\x00\x00"  # content type twice
    with pytest.raises(MQTTException):
        Properties(PacketTypes.PUBLISH).unpack(duplicate)
    with pytest.raises(MQTTException):
        FastPublishProperties(PacketTypes.PUBLISH).unpack(duplicate)


def test_installed_into_paho() -> None:
    from paho.mqtt import _packet

    assert install() is True
    assert _packet.Properties is FastPublishProperties
