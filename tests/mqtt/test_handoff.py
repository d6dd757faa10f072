"""The network-thread -> event-loop hand-off keeps order and stays bounded."""

from __future__ import annotations

import asyncio
import threading

from binders.mqtt.handoff import Handoff

from .conftest import wait_for


async def test_items_arrive_in_order_and_the_thread_blocks_at_capacity() -> None:
    loop = asyncio.get_running_loop()
    received: list[int] = []
    handoff: Handoff[int] = Handoff(loop, 5, received.append)
    put = 0

    def network_thread() -> None:
        nonlocal put
        for n in range(50):
            assert handoff.put(n)
            put += 1

    thread = threading.Thread(target=network_thread)
    thread.start()
    await wait_for(lambda: len(received) == 5, what="the first five items")
    # No slot is released, so the thread must stay blocked at the capacity.
    for _ in range(10):
        await asyncio.sleep(0.01)
        assert put == 5 and len(received) == 5
    for _ in range(45):
        handoff.release()
    await wait_for(lambda: len(received) == 50, what="all items")
    thread.join(5)
    assert received == list(range(50))


async def test_close_unblocks_a_waiting_thread() -> None:
    loop = asyncio.get_running_loop()
    handoff: Handoff[int] = Handoff(loop, 1, lambda _n: None)
    results: list[bool] = []
    thread = threading.Thread(target=lambda: results.extend([handoff.put(1), handoff.put(2)]))
    thread.start()
    await wait_for(lambda: len(results) == 0 and thread.is_alive(), what="a blocked put")
    handoff.close()
    await wait_for(lambda: not thread.is_alive(), what="the thread to return")
    assert results == [True, False]
