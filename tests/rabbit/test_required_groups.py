"""``required_groups`` on a producer binding: the group queues exist before consumers do.

``ProducerSpec.required_groups`` holds only the groups the configuration names; the
app's own consumer groups are provisioned separately (``provision()``).  So an app, or
``binder send``, that only publishes keeps its messages for a group only when the
binding lists that group.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from binder import App
from binder.testing import run_app
from binders.rabbit.binder import RabbitBinder
from tests.rabbit.support import URL, delete_later, fresh, wait_until_ready

pytestmark = pytest.mark.broker("rabbit")


def _config(bindings: dict[str, Any]) -> dict[str, Any]:
    return {"binders": {"rabbit": {"type": "rabbit", "url": URL}}, "bindings": bindings}


def _forget_afterwards(destination: str, group: str) -> None:
    delete_later(
        queues=(f"{destination}.{group}", f"{destination}.{group}.dlq"), exchanges=(destination,)
    )


async def _receive(destination: str, group: str, then_send: Any | None = None) -> list[Any]:
    """Start a consumer of ``group``; with ``then_send``, publish that once it runs.
    Return what it handled, once it handled one message."""
    received: list[Any] = []
    billing = App("billing")

    @billing.consumer(destination, group=group)
    def bill(order: dict[str, Any]) -> None:
        received.append(order)

    async with run_app(billing, _config({}), record=False) as harness:
        if then_send is not None:
            await harness.runtime.send(destination, then_send)
        await harness.wait_handled(1, timeout=10)
    return received


async def test_a_required_group_keeps_what_is_published_before_its_consumer_starts() -> None:
    destination, group = fresh("required"), fresh("g")
    _forget_afterwards(destination, group)
    shop = App("shop")
    # An app that only publishes: without required_groups nothing would keep its message.
    config = _config({destination: {"required_groups": [group]}})
    async with run_app(shop, config, record=False) as harness:
        await harness.runtime.send(destination, {"n": 1})

    assert await _receive(destination, group) == [{"n": 1}]


async def _binder_send(tmp_path: Path, config: dict[str, Any], destination: str) -> None:
    """``binder send --config FILE DESTINATION '{"n": 1}'``, as a user runs it."""
    path = tmp_path / "binder.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTBINDER_")}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "binder.cli",
        "send",
        "--config",
        str(path),
        destination,
        '{"n": 1}',
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(process.communicate(), 60.0)
    assert process.returncode == 0, err.decode()


async def test_binder_send_declares_the_required_groups_of_a_fresh_destination(
    binder: RabbitBinder, tmp_path: Path
) -> None:
    """``binder send`` to a destination nobody declared yet, with ``required_groups``
    in the config file: the group's queue is declared and holds the message, and a
    consumer of the group started afterwards receives it."""
    destination, group = fresh("send"), fresh("g")
    _forget_afterwards(destination, group)
    await _binder_send(tmp_path, _config({destination: {"required_groups": [group]}}), destination)
    await wait_until_ready(binder, f"{destination}.{group}", 1)
    assert await _receive(destination, group) == [{"n": 1}]


async def test_binder_send_without_required_groups_keeps_nothing_for_later_consumers(
    tmp_path: Path,
) -> None:
    """The same send without ``required_groups``: no queue exists yet, so RabbitMQ
    drops the message; the group's consumer only gets what is sent once it runs."""
    destination, group = fresh("send"), fresh("g")
    _forget_afterwards(destination, group)
    await _binder_send(tmp_path, _config({}), destination)
    # Queues deliver in order: had the first message been kept, it would come first.
    assert await _receive(destination, group, then_send={"n": 2}) == [{"n": 2}]
