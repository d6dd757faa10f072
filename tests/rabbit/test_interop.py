"""Interoperability with plain kombu clients (not through eventbinder), both ways."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any

import kombu
import pytest

from binder.app import App
from binder.errors import BinderError
from binder.message import Message
from binder.spi import ProducerSpec
from binder.testing import run_app, wait_until
from tests.rabbit.support import URL, delete_later, fresh, producer_options

pytestmark = pytest.mark.broker("rabbit")


@dataclass
class Order:
    id: int
    item: str


def _kombu_publish(destination: str, body: Any, headers: dict[str, Any]) -> None:
    with kombu.Connection(URL) as conn:
        producer = conn.Producer(serializer="json")
        producer.publish(
            body,
            exchange=kombu.Exchange(destination, "topic", durable=True),
            routing_key="orders.new",
            headers=headers,
            declare=[kombu.Exchange(destination, "topic", durable=True)],
            delivery_mode=2,
        )


async def test_plain_kombu_json_message_is_consumed_and_decoded() -> None:
    destination, group = fresh("kombu-in"), "billing"
    delete_later(
        exchanges=(destination,), queues=(f"{destination}.{group}", f"{destination}.{group}.dlq")
    )
    app = App("interop")
    received: list[tuple[Order, Message]] = []

    @app.consumer(destination, group=group)
    def bill(order: Order, message: Message) -> None:
        received.append((order, message))

    config = {"binders": {"rabbit": {"type": "rabbit", "url": URL}}, "default_binder": "rabbit"}
    async with run_app(app, config):
        await asyncio.to_thread(
            _kombu_publish, destination, {"id": 7, "item": "bagel"}, {"tenant": "acme", "n": 3}
        )
        await wait_until(lambda: received, 10.0, "the kombu message")
    order, message = received[0]
    assert order == Order(id=7, item="bagel")
    assert message.content_type == "application/json"
    assert message.headers["tenant"] == "acme"
    assert message.headers["n"] == "3"
    assert message.key is None


def _kombu_get(queue_name: str, timeout: float) -> kombu.Message:
    """The next message on the existing queue ``queue_name`` (a plain kombu consumer,
    blocking until it arrives); an :class:`AssertionError` after ``timeout``."""
    got: list[kombu.Message] = []
    deadline = time.monotonic() + timeout
    with kombu.Connection(URL) as conn:
        queue = kombu.Queue(queue_name, no_declare=True)
        callbacks = [lambda body, message: got.append(message)]
        with conn.Consumer(queue, callbacks=callbacks, accept=["json"], no_ack=True):
            while not got:  # a message may take several frames, one per drain
                remaining = deadline - time.monotonic()
                try:
                    if remaining <= 0:
                        raise TimeoutError
                    conn.drain_events(timeout=remaining)
                except TimeoutError:
                    raise AssertionError(f"no message on {queue_name} within {timeout}s") from None
    return got[0]


def _kombu_declare(queue_name: str, destination: str) -> None:
    with kombu.Connection(URL) as conn:
        exchange = kombu.Exchange(destination, "topic", durable=True)
        kombu.Queue(queue_name, exchange, routing_key="#", auto_delete=True)(
            conn.default_channel
        ).declare()


async def test_plain_kombu_consumer_reads_an_eventbinder_message(binder) -> None:  # type: ignore[no-untyped-def]
    destination = fresh("kombu-out")
    queue_name = f"{destination}.plain"
    delete_later(exchanges=(destination,), queues=(queue_name,))
    producer = await binder.bind_producer(
        ProducerSpec("out", destination, options=producer_options())
    )
    await asyncio.to_thread(_kombu_declare, queue_name, destination)
    sent = Message(
        json.dumps({"id": 1, "text": "héllo"}).encode(),
        headers={"tenant": "acme"},
        key="order-1",
        content_type="application/json",
    )
    await producer.publish(sent)
    got = await asyncio.to_thread(_kombu_get, queue_name, 10.0)
    assert got.decode() == {"id": 1, "text": "héllo"}
    assert got.content_type == "application/json"
    assert got.headers["tenant"] == "acme"
    assert got.headers["messageKey"] == "order-1"
    assert got.properties["message_id"] == sent.message_id
    assert got.properties["delivery_mode"] == 2
    assert got.delivery_info["routing_key"] == destination


def _declare_without_dead_letters(destination: str, queue_name: str) -> None:
    """The group queue as a Spring Cloud Stream consumer declares it by default
    (``autoBindDlq: false``): durable, bound with ``#``, no ``x-dead-letter-*``."""
    with kombu.Connection(URL) as conn:
        exchange = kombu.Exchange(destination, "topic", durable=True)
        kombu.Queue(queue_name, exchange, routing_key="#", durable=True, auto_delete=False)(
            conn.default_channel
        ).declare()


async def test_a_group_queue_declared_without_dead_letter_exchange(binder) -> None:  # type: ignore[no-untyped-def]
    """The default fails naming the option; auto_bind_dlq: false shares the queue and
    still dead-letters to the conventional DLQ."""
    destination, group = fresh("nodlx"), "billing"
    queue_name = f"{destination}.{group}"
    delete_later(exchanges=(destination,), queues=(queue_name, f"{queue_name}.dlq"))
    await asyncio.to_thread(_declare_without_dead_letters, destination, queue_name)

    app = App("interop")

    @app.consumer(destination, group=group, max_attempts=1)
    def bill(order: dict[str, Any]) -> None:
        raise ValueError(f"cannot bill {order['id']}")

    config: dict[str, Any] = {
        "binders": {"rabbit": {"type": "rabbit", "url": URL}},
        "default_binder": "rabbit",
    }
    with pytest.raises(BinderError, match="auto_bind_dlq: false to share it"):
        async with run_app(app, config):
            pass

    config["bindings"] = {"bill-in-0": {"rabbit": {"auto_bind_dlq": False}}}
    async with run_app(app, config) as harness:
        await asyncio.to_thread(_kombu_publish, destination, {"id": 3, "item": "tea"}, {})
        await harness.wait_handled(1, timeout=10)
        dead = await asyncio.to_thread(_kombu_get, f"{queue_name}.dlq", 10.0)
    assert dead.headers["x-exception-message"] == "cannot bill 3"
    assert dead.headers["x-original-exchange"] == destination
