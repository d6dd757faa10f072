"""A web shop whose HTTP handler publishes orders, with the bindings, health checks,
metrics and bindings control served next to it (docs/operations.md).

Run it (``pip install 'eventbinder[http]' starlette uvicorn``)::

    uvicorn examples.observability.app:web --port 8000

* ``POST /orders`` (port 8000) publishes the order with ``bus.send``; a function bills
  it, a consumer mails the invoice;
* the management endpoint on port 8080 (``binder.yaml``) answers ``/health/ready``,
  ``/bindings``, ``/metrics``, and ``POST /bindings/NAME/pause`` and the like;
* the web app's lifespan starts the bindings before it serves and stops them
  gracefully when uvicorn stops (Ctrl-C, SIGTERM): in-flight messages finish first.

The same code runs on RabbitMQ, Kafka or MQTT with a ``binders:`` section in the
configuration (or ``EVENTBINDER_CONFIG=...``).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from binder import App

CONFIG = Path(__file__).with_name("binder.yaml")
PRICES = {"coffee": 3.5, "bagel": 2.25, "juice": 4.0}
log = logging.getLogger("shop")

bus = App("shop")


@dataclass
class Order:
    """An order as the web app accepts it and the ``orders`` destination carries it."""

    id: int
    item: str
    quantity: int


@dataclass
class Invoice:
    """An order, billed."""

    order_id: int
    total: float


@bus.function("orders", "invoices", group="billing")
def bill(order: Order) -> Invoice:
    """Price an order; an unknown item fails (retried, then dead-lettered)."""
    if order.item not in PRICES:
        raise ValueError(f"no price for {order.item!r}")
    return Invoice(order.id, round(PRICES[order.item] * order.quantity, 2))


@bus.consumer("invoices", group="mailer")
def mail(invoice: Invoice) -> None:
    """Send the invoice (here: log it)."""
    log.info("invoice for order %d: %.2f", invoice.order_id, invoice.total)


@asynccontextmanager
async def lifespan(_: Starlette) -> AsyncIterator[None]:
    """The bindings (and the management endpoint) live as long as the web app."""
    async with bus.run(config=CONFIG):
        yield


async def place_order(request: Request) -> JSONResponse:
    """``POST /orders {"id": 1, "item": "coffee", "quantity": 2}``: 202 once the broker
    took the order."""
    body: dict[str, Any] = await request.json()
    try:
        order = Order(int(body["id"]), str(body["item"]), int(body["quantity"]))
    except (KeyError, TypeError, ValueError):
        return JSONResponse({"error": "expected {id, item, quantity}"}, status_code=400)
    await bus.send("orders", order, key=str(order.id))
    return JSONResponse({"accepted": order.id}, status_code=202)


web = Starlette(routes=[Route("/orders", place_order, methods=["POST"])], lifespan=lifespan)
