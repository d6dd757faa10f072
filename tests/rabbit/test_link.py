"""The I/O thread's confirm bookkeeping, driven directly (no broker needed)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator

import pytest

from binders.rabbit.link import Link, Publish, PublishFailed

_links: list[Link] = []


@pytest.fixture(autouse=True)
def _close_pipes() -> Iterator[None]:
    yield
    for link in _links:
        os.close(link._wake_r)
        os.close(link._wake_w)
    _links.clear()


def _link_with_unconfirmed(loop: asyncio.AbstractEventLoop, count: int) -> tuple[Link, list]:
    link = Link("unit", lambda: None, loop)
    _links.append(link)
    futures = []
    for tag in range(1, count + 1):
        future = loop.create_future()
        pub = Publish("x", "k", object(), future, tag=tag)
        link._unconfirmed[tag] = pub
        link._confirm_order.append(pub)
        futures.append(future)
    return link, futures


async def test_single_acks_settle_and_do_not_accumulate() -> None:
    loop = asyncio.get_running_loop()
    link, futures = _link_with_unconfirmed(loop, 5)
    for tag in (2, 1, 3, 5, 4):  # out of order, never `multiple`
        link._on_confirm(tag, False)
    assert set(link._done) == set(futures)
    assert not link._unconfirmed
    assert not link._confirm_order


async def test_multiple_ack_settles_everything_up_to_the_tag() -> None:
    loop = asyncio.get_running_loop()
    link, futures = _link_with_unconfirmed(loop, 6)
    link._on_confirm(4, True)
    assert [f for f in link._done] == futures[:4]
    assert sorted(link._unconfirmed) == [5, 6]


async def test_nack_fails_the_publish() -> None:
    loop = asyncio.get_running_loop()
    link, futures = _link_with_unconfirmed(loop, 3)
    link._on_reject(2, True)
    assert [f for f, _ in link._failed] == futures[:2]
    assert all(isinstance(exc, PublishFailed) for _, exc in link._failed)
    assert list(link._unconfirmed) == [3]
