"""Quickstart: a supplier emits orders, a function prices them, a consumer prints invoices.

Run it on the in-memory binder, no broker needed::

    binder run examples/quickstart/app.py --max-messages 20

Run the same code on RabbitMQ, Kafka or MQTT by giving a config file, e.g.
``--config examples/quickstart/rabbit.yaml``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from binder import App, Message

app = App("quickstart")

PRICES = {"coffee": 3.5, "bagel": 2.25, "juice": 4.0}
_order_ids = itertools.count(1)


@dataclass
class Order:
    """A customer's order, as it travels on the ``orders`` destination."""

    id: int
    item: str
    quantity: int


@dataclass
class Invoice:
    """The priced order, on the ``invoices`` destination."""

    order_id: int
    item: str
    quantity: int
    total: float


@app.supplier("orders", every=0.05)
def new_order() -> Order:
    """Emit one order per tick, cycling through the menu."""
    order_id = next(_order_ids)
    items = sorted(PRICES)
    order = Order(id=order_id, item=items[order_id % len(items)], quantity=1 + order_id % 3)
    print(f"order {order.id} placed: {order.quantity} x {order.item}", flush=True)
    return order


@app.function(input="orders", output="invoices", group="pricing")
def price(order: Order) -> Invoice:
    """Price an order; an unknown item fails and ends up in the dead letters."""
    total = round(PRICES[order.item] * order.quantity, 2)
    return Invoice(order_id=order.id, item=order.item, quantity=order.quantity, total=total)


@app.consumer("invoices", group="mailer")
def print_invoice(invoice: Invoice, message: Message) -> None:
    """Print each invoice with the correlation id that ties it to its order."""
    print(
        f"invoice for order {invoice.order_id}: {invoice.quantity} x {invoice.item}"
        f" = {invoice.total:.2f} (correlation {message.correlation_id})",
        flush=True,
    )
