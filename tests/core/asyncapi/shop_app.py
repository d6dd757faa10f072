"""The app whose AsyncAPI document tests/core/test_asyncapi.py checks.

A consumer of a dataclass (with a group), a function from a pydantic model (a
dataclass when pydantic is not installed) to a TypedDict, and a supplier of text.
"""

from __future__ import annotations

import dataclasses
import datetime
from typing import Literal, Optional, TypedDict

from binder import App, Message

app = App("webshop")


@dataclasses.dataclass
class Address:
    """Where an order goes."""

    street: str
    city: str


@dataclasses.dataclass
class Order:
    id: int
    items: list[str]
    address: Address
    placed_at: datetime.datetime
    note: Optional[str] = None  # noqa: UP045 - the Optional spelling is what is tested
    tags: dict[str, int] = dataclasses.field(default_factory=dict)


class InvoiceLine(TypedDict):
    sku: str
    amount: float


class Invoice(TypedDict):
    order_id: int
    lines: list[InvoiceLine]
    total: float


try:
    from pydantic import BaseModel
except ImportError:  # the project does not require pydantic
    HAVE_PYDANTIC = False

    @dataclasses.dataclass
    class Payment:
        order_id: int
        amount: float
        currency: str = "EUR"

else:
    HAVE_PYDANTIC = True

    class Payment(BaseModel):  # type: ignore[no-redef]
        order_id: int
        amount: float
        currency: Literal["EUR", "USD"] = "EUR"


@app.consumer("orders", group="audit")
def audit(order: Order, message: Message) -> None:
    print(order.id, message.correlation_id)


@app.function("payments", "invoices", group="billing")
def bill(payment: Payment) -> Invoice | None:
    line: InvoiceLine = {"sku": "order", "amount": payment.amount}
    return {"order_id": payment.order_id, "lines": [line], "total": payment.amount}


@app.supplier("shop/heartbeat", every=5.0)
def beat() -> str:
    return "alive"
