"""Partitioning: ``partition_for(key, n)`` is in ``range(n)`` for any key and ``n >= 1``,
and is Spring Cloud Stream's default selector, ``abs(key.hashCode()) % n`` with Java's
``String.hashCode`` (``Integer.MIN_VALUE`` taken as 0)."""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from binder.partitioning import java_string_hash, partition_for


def utf16_code_units(text: str) -> list[int]:
    """The UTF-16 code units of ``text``, as a Java String holds them: a code point
    above U+FFFF is a surrogate pair, a lone surrogate is one unit of its own."""
    units = []
    for char in text:
        point = ord(char)
        if point > 0xFFFF:
            point -= 0x10000
            units += [0xD800 + (point >> 10), 0xDC00 + (point & 0x3FF)]
        else:
            units.append(point)
    return units


def reference_hash(text: str) -> int:
    """``s[0]*31^(n-1) + s[1]*31^(n-2) + ... + s[n-1]`` in Java's int arithmetic."""
    total = 0
    units = utf16_code_units(text)
    for position, unit in enumerate(units):
        total += unit * 31 ** (len(units) - 1 - position)
    total %= 2**32
    return total - 2**32 if total >= 2**31 else total


def reference_partition(text: str, count: int) -> int:
    hash_code = reference_hash(text)
    return (0 if hash_code == -(2**31) else abs(hash_code)) % count


counts = st.one_of(st.integers(1, 64), st.integers(1, 2**31 - 1), st.integers(1, 2**70))


@settings(max_examples=300)
@given(key=st.text(), count=counts)
@example(key="", count=1)
@example(key="polygenelubricants", count=7)  # hashCode() == Integer.MIN_VALUE
@example(key="\U0001f600\ud800", count=3)
def test_partition_is_spring_default_selector(key: str, count: int) -> None:
    partition = partition_for(key, count)
    assert 0 <= partition < count
    assert java_string_hash(key) == reference_hash(key)
    assert partition == reference_partition(key, count)


@settings(max_examples=150)
@given(key=st.binary(), count=counts)
def test_bytes_keys_are_read_as_utf8(key: bytes, count: int) -> None:
    partition = partition_for(key, count)
    assert 0 <= partition < count
    # Invalid bytes count as the lone surrogates U+DC80..U+DCFF (surrogateescape).
    assert partition == reference_partition(key.decode("utf-8", "surrogateescape"), count)


def test_known_java_hash_codes() -> None:
    # Values printed by Java's "...".hashCode().
    assert java_string_hash("") == 0
    assert java_string_hash("a") == 97
    assert java_string_hash("hello") == 99162322
    assert java_string_hash("polygenelubricants") == -(2**31)
