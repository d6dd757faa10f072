"""The same handler tests as ``test_app.py``, against each real broker.

``run_app`` runs the app on the binders its configuration names: here each broker's
quickstart file, with fresh destinations and groups per test so that runs never see
each other's messages.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from binder.testing import run_app
from examples.quickstart.app import app

HERE = Path(__file__).parent
BROKERS = [
    pytest.param(name, marks=pytest.mark.broker(name)) for name in ("rabbit", "kafka", "mqtt")
]
TIMEOUT = 20.0


def config_for(broker: str, tag: str) -> dict[str, Any]:
    """The broker's quickstart file, bindings renamed with ``tag``, retries fast."""
    config: dict[str, Any] = yaml.safe_load((HERE / f"{broker}.yaml").read_text())
    for settings in config["bindings"].values():
        settings["destination"] = f"{settings['destination']}-{tag}"
        if "group" in settings:
            settings["group"] = f"{settings['group']}-{tag}"
    config["bindings"]["default"] = {"max_attempts": 2, "backoff_initial": 0.0}
    return config


@pytest.fixture
def tag() -> Iterator[str]:
    """A fresh suffix; RabbitMQ's durable queues and exchanges with it go afterwards."""
    tag = uuid.uuid4().hex[:10]
    yield tag
    with contextlib.suppress(Exception):
        delete_rabbit_leftovers(tag)


def delete_rabbit_leftovers(tag: str) -> None:
    import amqp

    connection = amqp.Connection("127.0.0.1:5672", userid="guest", password="guest")
    connection.connect()
    try:
        channel = connection.channel()
        for name in ("orders", "invoices"):
            for queue in (f"{name}-{tag}.pricing-{tag}", f"{name}-{tag}.mailer-{tag}"):
                channel.queue_delete(queue)
                channel.queue_delete(f"{queue}.dlq")
            channel.exchange_delete(f"{name}-{tag}")
    finally:
        connection.close()


@pytest.mark.parametrize("broker", BROKERS)
async def test_an_order_becomes_an_invoice(broker: str, tag: str) -> None:
    async with run_app(app, config_for(broker, tag), suppliers=False) as harness:
        order = await harness.send(
            f"orders-{tag}",
            {"id": 1, "item": "coffee", "quantity": 2},
            headers={"correlationId": "c-1"},
        )
        invoice = await harness.receive(f"invoices-{tag}", timeout=TIMEOUT)
        assert invoice.json() == {"order_id": 1, "item": "coffee", "quantity": 2, "total": 7.0}
        assert invoice.correlation_id == "c-1"
        assert order.message_id


@pytest.mark.parametrize("broker", BROKERS)
async def test_an_unknown_item_is_retried_then_dead_lettered(broker: str, tag: str) -> None:
    async with run_app(app, config_for(broker, tag), suppliers=False) as harness:
        await harness.send(f"orders-{tag}", {"id": 3, "item": "caviar", "quantity": 1})
        await harness.send(f"orders-{tag}", {"id": 4, "item": "juice", "quantity": 3})
        invoice = await harness.receive(f"invoices-{tag}", timeout=TIMEOUT)
        assert invoice.json()["order_id"] == 4, "the stream goes on past the failure"
        await harness.wait_for(
            lambda: harness.dead_letters(f"orders-{tag}", group=f"pricing-{tag}"),
            TIMEOUT,
            "the dead letter",
        )
        [dead] = harness.dead_letters(f"orders-{tag}", group=f"pricing-{tag}")
        assert dead.json()["item"] == "caviar"
        assert dead.headers["x-exception-type"] == "builtins.KeyError"
        assert dead.headers["x-delivery-attempts"] == "2"
