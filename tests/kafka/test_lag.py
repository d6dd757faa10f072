"""Consumer lag (``eventbinder_consumer_lag``): how many records of a partition are not
handled yet, including while nothing has been handled at all (a stuck handler)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from binder.app import App
from binder.testing import wait_until

from .helpers import unique

pytestmark = pytest.mark.broker("kafka")


async def test_lag_counts_a_backlog_before_anything_is_handled_and_drains_to_zero() -> None:
    topic, release, seen = unique("lag"), asyncio.Event(), []
    app = App("lag")

    @app.consumer(topic, group=unique("g"))
    async def work(job: dict[str, Any]) -> None:
        await release.wait()  # stuck until the test says so
        seen.append(job["n"])

    config = {"binders": {"kafka": {"type": "kafka"}}, "default_binder": "kafka"}
    async with app.run(config=config, environ={}) as runtime:
        binding: Any = runtime.consumers["work-in-0"].binding
        for n in range(10):
            await app.send(topic, {"n": n})
        await wait_until(lambda: binding.lag() == {0: 10}, 20, "a lag of 10, nothing handled")
        release.set()
        await wait_until(lambda: len(seen) == 10, 20, "the backlog handled")
        await wait_until(lambda: binding.lag() == {0: 0}, 20, "no lag left")
