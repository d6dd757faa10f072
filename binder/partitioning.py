"""Stable partition selection, identical in every process, on every binder, and in
Spring Cloud Stream apps."""

from __future__ import annotations

__all__ = ["java_string_hash", "partition_for"]

_INT_MIN = -(2**31)


def java_string_hash(text: str) -> int:
    """Java's ``String.hashCode()``: ``s[0]*31^(n-1) + ... + s[n-1]`` over UTF-16 code
    units, as a signed 32-bit integer."""
    data = text.encode("utf-16-be", "surrogatepass")
    h = 0
    for i in range(0, len(data), 2):
        h = (31 * h + (data[i] << 8 | data[i + 1])) & 0xFFFFFFFF
    return h - 2**32 if h & 0x80000000 else h


def partition_for(key: str | bytes, partition_count: int) -> int:
    """Map ``key`` to a partition in ``range(partition_count)``.

    The partition Spring Cloud Stream's default partition selector picks for the same
    key (``abs(key.hashCode()) % partitionCount``, with ``Integer.MIN_VALUE`` taken as
    0), so eventbinder and Spring producers of one partitioned destination put a key
    on the same partition.  Unlike Python's ``hash()``, it is the same in every
    process.  Bytes keys are read as UTF-8.
    """
    text = key.decode("utf-8", "surrogateescape") if isinstance(key, bytes) else key
    h = java_string_hash(text)
    return (0 if h == _INT_MIN else abs(h)) % partition_count
