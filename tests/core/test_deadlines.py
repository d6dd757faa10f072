"""Deadlines: futures not done in time are handed to on_expired, in order, by one
timer; no broker needed."""

from __future__ import annotations

import asyncio

from binder.deadlines import Deadlines
from binder.testing import wait_until


async def test_only_unacknowledged_publishes_expire_in_order() -> None:
    loop = asyncio.get_running_loop()
    expired: list[int] = []

    def on_expired(mid: int, future: asyncio.Future[None]) -> None:
        expired.append(mid)
        future.set_exception(TimeoutError(mid))

    deadlines = Deadlines(loop, 0.2, on_expired)
    futures = {mid: loop.create_future() for mid in range(1, 6)}
    for mid, future in futures.items():
        deadlines.add(mid, future)
    futures[2].set_result(None)
    futures[4].set_result(None)
    await wait_until(lambda: len(expired) == 3, 5, "three expired")
    assert expired == [1, 3, 5]
    assert futures[2].result() is None and futures[4].result() is None
    assert len(deadlines) == 0


async def test_acknowledged_publishes_leave_the_queue_as_new_ones_come() -> None:
    loop = asyncio.get_running_loop()
    deadlines = Deadlines(loop, 60, lambda mid, future: None)
    for mid in range(10_000):
        future: asyncio.Future[None] = loop.create_future()
        deadlines.add(mid, future)
        future.set_result(None)  # acknowledged before the next publish
    # The queue holds what is in flight (here the last one), not every publish.
    assert len(deadlines) == 1
    deadlines.clear()
