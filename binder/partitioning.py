"""Stable partition selection, identical in every process and on every binder."""

from __future__ import annotations

import zlib

__all__ = ["partition_for"]


def partition_for(key: str | bytes, partition_count: int) -> int:
    """Map ``key`` to a partition in ``range(partition_count)``.

    Uses CRC-32 rather than ``hash()``, which is salted per process and would send the
    same key to different partitions from different instances.
    """
    data = key.encode() if isinstance(key, str) else key
    return zlib.crc32(data) % partition_count
