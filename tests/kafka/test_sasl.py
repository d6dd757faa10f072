"""SASL on the broker's 127.0.0.1:9094 listener (scripts/brokers: SASL_PLAINTEXT,
mechanism PLAIN, user eventbinder): the right credentials work for every client the
binder makes; a refused login is an AccessRefused that names the cause, never the
password; a listener mix-up says what is wrong."""

from __future__ import annotations

from typing import Any

import pytest

from binder.app import App
from binder.errors import AccessRefused, BinderError
from binder.testing import run_app

from .helpers import SASL_BOOTSTRAP, SASL_SETTINGS, SETTINGS, make_binder, unique

pytestmark = pytest.mark.broker("kafka")


async def test_the_right_credentials_exchange_messages(topic: str) -> None:
    group = unique("g")
    app = App("kafka-sasl")
    got: list[dict[str, Any]] = []

    @app.function(input=topic, output=f"{topic}-out", group=group)
    def relay(order: dict[str, Any]) -> dict[str, Any]:
        return {**order, "relayed": True}

    @app.consumer(f"{topic}-out", group=group)
    def collect(order: dict[str, Any]) -> None:
        got.append(order)

    async with run_app(app, {"binders": {"kafka": SASL_SETTINGS}}) as harness:
        await harness.send(topic, {"id": 1})
        await harness.wait_for(lambda: len(got) == 1, 15, "the relayed message")
        assert "as eventbinder" in repr(harness.binder)
    assert got == [{"id": 1, "relayed": True}]


async def test_a_wrong_password_is_refused_without_being_shown() -> None:
    binder = make_binder(**{**SASL_SETTINGS, "sasl_plain_password": "wrong-horse-battery"})
    with pytest.raises(AccessRefused) as refused:
        await binder.start()
    await binder.close()
    message = str(refused.value)
    assert "wrong-horse-battery" not in message
    assert f"Kafka at {SASL_BOOTSTRAP} (SASL_PLAINTEXT as eventbinder)" in message
    assert "refused the SASL PLAIN login of user 'eventbinder'" in message
    assert "sasl_plain_password" in message  # the setting to check


async def test_a_mechanism_the_listener_does_not_offer_is_refused() -> None:
    binder = make_binder(**{**SASL_SETTINGS, "sasl_mechanism": "SCRAM-SHA-512"})
    with pytest.raises(AccessRefused, match="does not accept SASL mechanism SCRAM-SHA-512"):
        await binder.start()
    await binder.close()


async def test_a_sasl_login_on_the_plain_listener_is_explained() -> None:
    binder = make_binder(**{**SASL_SETTINGS, "bootstrap_servers": SETTINGS["bootstrap_servers"]})
    with pytest.raises(BinderError) as failed:
        await binder.start()
    await binder.close()
    assert not isinstance(failed.value, AccessRefused)  # a network-level mix-up, retried
    assert "does not expect a SASL login" in str(failed.value)
    assert "eventbinder-secret" not in str(failed.value)


async def test_no_login_on_the_sasl_listener_is_explained() -> None:
    binder = make_binder(bootstrap_servers=SASL_BOOTSTRAP, request_timeout_ms=5000)
    with pytest.raises(BinderError, match="does this listener expect a SASL login or TLS"):
        await binder.start()
    await binder.close()
