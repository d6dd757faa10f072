"""Fixtures for the RabbitMQ binder tests (helpers live in ``tests.rabbit.support``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio

from binders.rabbit.binder import RabbitBinder
from tests.rabbit.support import (
    RabbitUser,
    add_user,
    close_consumers,
    delete_tracked,
    delete_user,
    make_binder,
)


@pytest.fixture(autouse=True)
def _delete_test_topology() -> Iterator[None]:
    """Durable test queues would pile up on the broker (and slow its boot): delete them."""
    yield
    delete_tracked()


@pytest_asyncio.fixture
async def binder() -> AsyncIterator[RabbitBinder]:
    """A fresh, started RabbitMQ binder, closed after the test (its consumers first)."""
    instance = await make_binder()
    try:
        yield instance
    finally:
        await close_consumers()
        await instance.close()


@pytest.fixture
def rabbit_user() -> Iterator[RabbitUser]:
    """A throwaway RabbitMQ user without permissions (grant them with ``allow``),
    created with rabbitmqctl and deleted after the test, its connections closed."""
    user = add_user()
    try:
        yield user
    finally:
        delete_user(user)
