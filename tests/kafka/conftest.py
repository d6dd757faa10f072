"""Fixtures for the Kafka binder tests (real Kafka on 127.0.0.1:9092)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from .helpers import make_binder, unique


@pytest.fixture
async def binder() -> AsyncIterator[Any]:
    """A started Kafka binder, closed after the test."""
    instance = make_binder()
    await instance.start()
    try:
        yield instance
    finally:
        await instance.close()


@pytest.fixture
def topic() -> str:
    """A fresh topic name."""
    return unique("t")
