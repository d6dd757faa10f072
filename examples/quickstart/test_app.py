"""How to unit-test handlers: run the app on the in-memory binder with ``run_app``."""

from __future__ import annotations

from pathlib import Path

from binder import Message
from binder.testing import run_app
from examples.quickstart.app import app

HERE = Path(__file__).parent


async def test_an_order_becomes_an_invoice() -> None:
    async with run_app(app, suppliers=False) as harness:
        await harness.send("orders", {"id": 1, "item": "coffee", "quantity": 2})
        invoice = await harness.receive("invoices", timeout=2.0)
        assert invoice.json() == {"order_id": 1, "item": "coffee", "quantity": 2, "total": 7.0}


async def test_the_invoice_carries_the_order_correlation_id() -> None:
    async with run_app(app, suppliers=False) as harness:
        order = await harness.send(
            "orders", {"id": 2, "item": "bagel", "quantity": 1}, headers={"correlationId": "c-42"}
        )
        invoice: Message = await harness.receive("invoices")
        assert invoice.correlation_id == "c-42"
        assert order.headers == {"correlationId": "c-42"}


async def test_an_unknown_item_is_retried_then_dead_lettered() -> None:
    config = {"bindings": {"price-in-0": {"max_attempts": 2, "backoff_initial": 0.0}}}
    async with run_app(app, config, suppliers=False) as harness:
        await harness.send("orders", {"id": 3, "item": "caviar", "quantity": 1})
        await harness.wait_for(lambda: harness.dead_letters("orders", group="pricing"))
        [dead] = harness.dead_letters("orders", group="pricing")
        assert dead.json()["item"] == "caviar"
        assert dead.headers["x-exception-type"] == "builtins.KeyError"
        assert dead.headers["x-delivery-attempts"] == "2"
        assert harness.published("invoices") == []


async def test_a_malformed_order_goes_to_the_dead_letters_and_the_stream_goes_on() -> None:
    async with run_app(app, suppliers=False) as harness:
        await harness.send("orders", {"id": "x"}, content_type="application/json")
        await harness.send("orders", {"id": 4, "item": "juice", "quantity": 3})
        invoice = await harness.receive("invoices")
        assert invoice.json()["order_id"] == 4
        [dead] = harness.dead_letters("orders", group="pricing")
        assert dead.headers["x-exception-type"] == "binder.errors.DecodeError"


async def test_the_supplier_emits_orders_that_get_priced() -> None:
    async with run_app(app, suppliers=False) as harness:
        order = await harness.poll("new_order")
        invoice = await harness.receive("invoices")
        assert invoice.json()["order_id"] == order.id


async def test_config_file_settings_apply_in_tests(tmp_path: Path) -> None:
    config = tmp_path / "binder.yaml"
    config.write_text(
        "bindings:\n"
        "  price-in-0: {destination: web-orders, group: pricing}\n"
        "  price-out-0: {destination: billing}\n"
    )
    async with run_app(app, config, suppliers=False) as harness:
        await harness.send("web-orders", {"id": 5, "item": "coffee", "quantity": 1})
        assert (await harness.receive("billing")).json()["total"] == 3.5
