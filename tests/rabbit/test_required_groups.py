"""``required_groups`` on a producer binding: the group queues exist before consumers do."""

from __future__ import annotations

import pytest

from binder import App
from binder.testing import run_app
from tests.rabbit.support import URL, delete_later, fresh

pytestmark = pytest.mark.broker("rabbit")


def _config(bindings: dict) -> dict:
    return {"binders": {"rabbit": {"type": "rabbit", "url": URL}}, "bindings": bindings}


async def test_a_required_group_keeps_what_is_published_before_its_consumer_starts() -> None:
    destination, group = fresh("required"), fresh("g")
    delete_later(
        queues=(f"{destination}.{group}", f"{destination}.{group}.dlq"), exchanges=(destination,)
    )
    shop = App("shop")
    # An app that only publishes: without required_groups nothing would keep its message.
    config = _config({destination: {"required_groups": [group]}})
    async with run_app(shop, config, record=False) as harness:
        await harness.runtime.send(destination, {"n": 1})

    received: list[dict] = []
    billing = App("billing")

    @billing.consumer(destination, group=group)
    def bill(order: dict) -> None:
        received.append(order)

    async with run_app(billing, _config({}), record=False) as harness:
        await harness.wait_handled(1, timeout=10)
    assert received == [{"n": 1}]
