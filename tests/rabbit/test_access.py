"""RabbitMQ refusing the binder: a wrong password, a missing virtual host, a user without
access to the virtual host or without a permission on an exchange or queue.

Each is one sentence naming what was refused (never the password), raised as
:class:`~binder.errors.AccessRefused` where the binder starts or binds, so the runtime
fails at once instead of retrying as if the broker were down.  While running, a login
refused on reconnecting is logged (not "unreachable") with the growing backoff.

The tests with a user of their own create it with rabbitmqctl (the ``rabbit_user``
fixture) and delete it afterwards.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

import pytest

from binder.app import App
from binder.config import load_settings
from binder.errors import AccessRefused
from binder.message import Message
from binder.plugins import load_registry
from binder.runtime import ConnectError, Runtime
from binder.spi import ConsumerSpec, ProducerSpec
from binder.testing import Collector, wait_until
from binders.rabbit.binder import RabbitBinder
from binders.rabbit.confirms import PublishFailed
from binders.rabbit.errors import LinkError
from binders.rabbit.settings import validate_settings
from tests.rabbit.support import (
    URL,
    RabbitUser,
    bind,
    close_consumers,
    consumer_options,
    fresh,
    make_binder,
    producer_options,
)

pytestmark = pytest.mark.broker("rabbit")


async def _refused_start(**settings: Any) -> AccessRefused:
    """Start a binder that RabbitMQ refuses; return the error."""
    binder = RabbitBinder("test", validate_settings({"connect_timeout": 5.0, **settings}))
    try:
        with pytest.raises(AccessRefused) as caught:
            await asyncio.wait_for(binder.start(), 10.0)
    finally:
        await binder.close()
    return caught.value


# -- at start -------------------------------------------------------------------------


async def test_a_wrong_password_is_refused_naming_the_user_not_the_password() -> None:
    refused = await _refused_start(url=URL, password="not-the-password")
    assert str(refused) == (
        "RabbitMQ at 127.0.0.1:5672 refused the login of user 'guest' (wrong user name or password)"
    )


async def test_a_missing_virtual_host_is_refused_at_once() -> None:
    vhost = fresh("vhost")
    refused = await _refused_start(url=f"amqp://guest:guest@127.0.0.1:5672/{vhost}")
    assert str(refused) == f"RabbitMQ at 127.0.0.1:5672 has no virtual host '{vhost}'"


async def test_the_runtime_fails_at_once_on_a_missing_virtual_host() -> None:
    """Without ``fail_fast`` an unreachable broker is waited for; a missing virtual
    host is not something waiting fixes: the start fails with the binder's sentence."""
    vhost = fresh("vhost")
    app = App("refused")

    @app.consumer(fresh("orders"), group="g")
    def never(payload: bytes) -> None:
        raise AssertionError("nothing can arrive")

    config = {
        "binders": {"rabbit": {"type": "rabbit", "url": f"amqp://guest:guest@127.0.0.1/{vhost}"}}
    }
    registry = load_registry()
    settings = load_settings(config, registry=registry, discover=False, environ={})
    runtime = Runtime(app, settings, registry)
    with pytest.raises(ConnectError) as caught:
        await asyncio.wait_for(runtime.start(), 10.0)
    assert str(caught.value) == (
        "binder 'rabbit': the broker refused access: "
        f"RabbitMQ at 127.0.0.1:5672 has no virtual host '{vhost}'"
    )


async def test_a_user_without_access_to_the_virtual_host_is_refused(
    rabbit_user: RabbitUser,
) -> None:
    refused = await _refused_start(url=rabbit_user.url())
    assert str(refused) == (
        f"RabbitMQ at 127.0.0.1:5672 refused user '{rabbit_user.name}' access to virtual "
        "host '/' (the user has no permissions there)"
    )
    assert rabbit_user.password not in str(refused)


async def test_a_refusal_is_reported_even_when_another_url_is_unreachable() -> None:
    refused = await _refused_start(
        url=["amqp://guest:guest@127.0.0.1:1//", "amqp://guest:wrong@127.0.0.1:5672//"]
    )
    assert str(refused) == (
        "RabbitMQ at 127.0.0.1:5672 refused the login of user 'guest' (wrong user name or "
        "password); RabbitMQ is unreachable at 127.0.0.1:1 (connection refused)"
    )


async def test_a_connection_limit_is_not_an_access_refusal(rabbit_user: RabbitUser) -> None:
    """A refusal that waiting can fix is a connection error, which the runtime retries."""
    await rabbit_user.allow(configure="^$", write="^$", read="^$")
    await rabbit_user.limit_connections(0)
    binder = RabbitBinder("test", validate_settings({"url": rabbit_user.url()}))
    try:
        with pytest.raises(LinkError) as caught:
            await asyncio.wait_for(binder.start(), 10.0)
    finally:
        await binder.close()
    assert not isinstance(caught.value, AccessRefused)
    assert str(caught.value) == (
        "RabbitMQ at 127.0.0.1:5672 refused the connection (connection refused for user "
        f"'{rabbit_user.name}': user connection limit (0) is reached)"
    )


# -- while binding and publishing -----------------------------------------------------


async def test_permissions_refused_while_binding_name_the_resource(
    rabbit_user: RabbitUser,
) -> None:
    """The user may configure and write what starts with its prefix, and read nothing:
    declaring another exchange, binding a queue to an exchange (read) and publishing
    to another exchange (write) are refused, each naming the permission and the
    resource; what the user may do still works on the same connections afterwards."""
    allowed = fresh("ok")
    await rabbit_user.allow(configure=f"^{allowed}", write=f"^{allowed}", read="^$")
    user = rabbit_user.name
    binder = await make_binder(url=rabbit_user.url())
    try:
        other = fresh("other")
        with pytest.raises(AccessRefused) as declare:
            await binder.bind_producer(ProducerSpec("out", other, options=producer_options()))
        assert str(declare.value) == (
            f"RabbitMQ refused exchange.declare: user '{user}' has no configure permission "
            f"on exchange '{other}' in virtual host '/'"
        )

        destination = f"{allowed}-orders"
        with pytest.raises(AccessRefused) as bind_queue:
            await bind(
                binder, ConsumerSpec("in", destination, options=consumer_options()), Collector()
            )
        assert str(bind_queue.value) == (
            f"RabbitMQ refused queue.bind: user '{user}' has no read permission on exchange "
            f"'{destination}' in virtual host '/'"
        )

        elsewhere = await binder.bind_producer(
            ProducerSpec("out", other, options=producer_options(declare=False))
        )
        with pytest.raises(PublishFailed) as publish:
            await elsewhere.publish(Message(b"no", content_type="text/plain"))
        assert str(publish.value) == (
            f"RabbitMQ refused basic.publish: user '{user}' has no write permission on "
            f"exchange '{other}' in virtual host '/'"
        )

        # Declaring and publishing what the user may: the channels were repaired.
        producer = await binder.bind_producer(
            ProducerSpec("out", destination, options=producer_options())
        )
        await producer.publish(Message(b"yes", content_type="text/plain"))
    finally:
        await close_consumers()
        await binder.close()


# -- while running --------------------------------------------------------------------

_NEXT = re.compile(r"next attempt in ([0-9.]+)s$")


async def test_a_login_refused_on_reconnecting_is_logged_with_a_growing_backoff(
    rabbit_user: RabbitUser, caplog: pytest.LogCaptureFixture
) -> None:
    """The user's password changes and its connections are closed: each reconnect
    attempt logs one line saying the login was refused, with a longer wait each time;
    publishes queued meanwhile do not hurry the attempts.  With the password back the
    binder reconnects and delivers what was published while refused."""
    prefix = fresh("ok")
    await rabbit_user.allow(configure=f"^{prefix}", write=f"^{prefix}", read=f"^{prefix}")
    destination, group = f"{prefix}-orders", f"{prefix}-g"
    binder = await make_binder(
        url=rabbit_user.url(),
        reconnect_initial=0.1,
        reconnect_multiplier=2.0,
        reconnect_max=1.0,
        publish_timeout=15.0,  # a failing test must not wait the default 60 s to close
    )
    caplog.set_level(logging.WARNING, logger="binders.rabbit")
    label = f"{binder.name}/publish"

    def refusals() -> list[logging.LogRecord]:
        return [
            r for r in caplog.records if r.getMessage().startswith(f"{label}: cannot reconnect:")
        ]

    changed = False
    try:
        received = Collector()
        await bind(
            binder,
            ConsumerSpec("in", destination, group, options=consumer_options(auto_bind_dlq=False)),
            received,
        )
        producer = await binder.bind_producer(
            ProducerSpec("out", destination, options=producer_options())
        )
        await producer.publish(Message(b"0", content_type="text/plain"))
        await received.wait_for(1)

        changed = True
        await rabbit_user.set_password("changed-" + rabbit_user.password)
        await rabbit_user.disconnect()
        await wait_until(lambda: refusals(), 10.0, "the first refused reconnect")
        # Publishes while refused: queued, and they must not trigger attempts.
        pending = [
            producer.publish(Message(str(n).encode(), content_type="text/plain"))
            for n in range(1, 21)
        ]
        await wait_until(lambda: len(refusals()) >= 3, 10.0, "three refused reconnects")

        records = refusals()[:3]
        expected = (
            f"{label}: cannot reconnect: RabbitMQ at 127.0.0.1:5672 refused the login of "
            f"user '{rabbit_user.name}' (wrong user name or password); next attempt in "
        )
        for record in records:
            assert record.levelno == logging.ERROR
            assert record.getMessage().startswith(expected), record.getMessage()
            assert rabbit_user.password not in record.getMessage()
        delays = []
        for record in records:
            match = _NEXT.search(record.getMessage())
            assert match is not None
            delays.append(float(match.group(1)))
        assert delays[0] < delays[1] < delays[2], delays
        for before, after, delay in zip(records, records[1:], delays, strict=False):
            # each wait was kept (logged with one decimal: allow its rounding)
            waited = after.created - before.created
            assert waited >= delay - 0.06, f"the {delay}s wait lasted {waited:.3f}s"
        assert not [r for r in caplog.records if "unreachable" in r.getMessage()]

        await rabbit_user.set_password(rabbit_user.password)
        changed = False
        await asyncio.wait_for(asyncio.gather(*pending), 15.0)
        await received.wait_for(21, 15.0)
        assert sorted(int(m.payload) for m in received.messages) == list(range(21))
        assert binder._publisher.reconnects == 1
    finally:
        if changed:  # let the binder reconnect and close without waiting for timeouts
            await rabbit_user.set_password(rabbit_user.password)
        await close_consumers()
        await binder.close()
