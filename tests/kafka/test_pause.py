"""Pausing a Kafka consumer binding keeps it in its group however long the pause lasts:
its partitions are paused and it goes on polling (a consumer that stops polling for
``max_poll_interval_ms`` is put out of its group)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from binder.app import App
from binder.testing import wait_until
from binders.kafka.consumer import KafkaConsumerBinding

from .helpers import unique

pytestmark = pytest.mark.broker("kafka")

MAX_POLL_INTERVAL = 2.0


async def test_a_pause_longer_than_max_poll_interval_keeps_the_group(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    revoked: list[Any] = []
    on_revoked = KafkaConsumerBinding._on_revoked

    async def record_revoked(self: KafkaConsumerBinding, partitions: set[Any]) -> None:
        revoked.append(partitions)
        await on_revoked(self, partitions)

    monkeypatch.setattr(KafkaConsumerBinding, "_on_revoked", record_revoked)
    polls: list[float] = []
    poll_paused = KafkaConsumerBinding._poll_paused

    async def record_poll(self: KafkaConsumerBinding) -> bool:
        polls.append(asyncio.get_running_loop().time())
        return await poll_paused(self)

    monkeypatch.setattr(KafkaConsumerBinding, "_poll_paused", record_poll)
    topic, seen = unique("pause"), []
    app = App("pause")

    @app.consumer(topic, group=unique("g"), prefetch=5)  # the window fills while paused
    async def work(job: dict[str, Any]) -> None:
        seen.append(job["n"])

    config = {
        "binders": {"kafka": {"type": "kafka", "max_poll_interval_ms": 2000}},
        "default_binder": "kafka",
    }
    async with app.run(config=config, environ={}) as runtime:
        await app.send(topic, {"n": 0})
        await wait_until(lambda: seen == [0], 20, "the first message handled")
        paused_at = asyncio.get_running_loop().time()
        assert await runtime.control("work-in-0", "pause") == "paused"
        for n in range(1, 21):
            await app.send(topic, {"n": n})
        await wait_until(
            lambda: polls and polls[-1] - paused_at > MAX_POLL_INTERVAL * 2.5,
            MAX_POLL_INTERVAL * 5,
            "the paused consumer still polling after 2.5 max_poll_interval_ms",
        )
        assert seen == [0], "nothing is handled while paused"
        assert await runtime.control("work-in-0", "resume") == "running"
        await wait_until(lambda: len(seen) == 21, 20, "every message handled after resume")
    assert sorted(seen) == list(range(21))
    assert revoked[:-1] == [], f"the group rebalanced during the pause: {revoked}"
