"""Helpers for the RabbitMQ binder tests: settings, fresh names, clean-up, a queue reader.

One module imported under one name by the conftest and the tests, so the clean-up
registry is shared."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import shutil
import subprocess
import uuid
from collections.abc import Collection, Hashable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

import pytest

from binder.app import App
from binder.message import Message
from binder.spi import ConsumerSpec, Delivery, Handler
from binder.testing import BoundConsumer, Collector, Harness, consume, run_app, wait_until
from binder.testing.brokers import in_ci
from binders.rabbit.binder import RabbitBinder
from binders.rabbit.settings import validate_binding_options, validate_settings
from binders.rabbit.topology import ExchangeDecl, QueueDecl

URL = "amqp://guest:guest@127.0.0.1:5672//"

#: Settings for tests: quick reconnects.
BASE_SETTINGS: dict[str, Any] = {
    "url": URL,
    "reconnect_initial": 0.1,
    "reconnect_max": 1.0,
    "heartbeat": 10.0,
}


def fresh(prefix: str) -> str:
    """A uuid-suffixed destination or group name."""
    return f"ebtest-{prefix}-{uuid.uuid4().hex[:10]}"


def consumer_options(**options: Any) -> dict[str, Any]:
    """A validated consumer ``rabbit:`` section."""
    return validate_binding_options(options, "consumer")


def producer_options(**options: Any) -> dict[str, Any]:
    """A validated producer ``rabbit:`` section."""
    return validate_binding_options(options, "producer")


#: Name prefixes of everything the tests declare (``fresh`` and the conformance suite).
TEST_PREFIXES = ("ebtest-", "conf-")
_tracked_binders: list[RabbitBinder] = []
_extra_queues: set[str] = set()
_extra_exchanges: set[str] = set()


def track(binder: RabbitBinder) -> RabbitBinder:
    """Delete what ``binder`` declared (test names only) after the current test."""
    _tracked_binders.append(binder)
    return binder


def delete_later(*, queues: tuple[str, ...] = (), exchanges: tuple[str, ...] = ()) -> None:
    """Delete these (declared by a plain client) after the current test."""
    _extra_queues.update(queues)
    _extra_exchanges.update(exchanges)


def _delete(queues: set[str], exchanges: set[str]) -> None:
    import amqp

    conn = amqp.Connection("127.0.0.1:5672", userid="guest", password="guest")
    conn.connect()
    try:
        for kind, names in (("queue", queues), ("exchange", exchanges)):
            for name in sorted(names):
                if not name.startswith(TEST_PREFIXES):
                    continue  # never DLX or anything shared
                channel = conn.channel()
                with contextlib.suppress(Exception):
                    if kind == "queue":
                        channel.queue_delete(name)
                    else:
                        channel.exchange_delete(name)
                with contextlib.suppress(Exception):
                    channel.close()
    finally:
        conn.close()


def delete_tracked() -> None:
    """Delete what tracked binders and ``delete_later`` registered; reset the registry."""
    queues, exchanges = set(_extra_queues), set(_extra_exchanges)
    for binder in _tracked_binders:
        for decl in binder.declared():
            if isinstance(decl, QueueDecl):
                queues.add(decl.name)
            elif isinstance(decl, ExchangeDecl):
                exchanges.add(decl.name)
    _tracked_binders.clear()
    _extra_queues.clear()
    _extra_exchanges.clear()
    if queues or exchanges:
        with contextlib.suppress(OSError):
            _delete(queues, exchanges)


async def make_binder(**overrides: Any) -> RabbitBinder:
    """A started binder with :data:`BASE_SETTINGS` plus ``overrides``; cleaned up after."""
    binder = track(RabbitBinder("test", validate_settings({**BASE_SETTINGS, **overrides})))
    await binder.start()
    return binder


_bound: list[BoundConsumer] = []


async def bind(binder: RabbitBinder, spec: ConsumerSpec, handler: Handler) -> BoundConsumer:
    """``consume`` (through the delivery engine), closed by :func:`close_consumers`."""
    bound = await consume(binder, spec, handler)
    _bound.append(bound)
    return bound


async def close_consumers() -> None:
    """Drain and close what :func:`bind` bound (idempotent: safe after the binder closed)."""
    bound = list(reversed(_bound))
    _bound.clear()
    for consumer in bound:
        with contextlib.suppress(Exception):
            await consumer.close(timeout=10.0)


async def read_queue(
    binder: RabbitBinder, queue: str, count: int, timeout: float = 10.0
) -> list[Message]:
    """Consume ``count`` messages from the existing queue ``queue`` (default exchange),
    a dead-letter queue say; fails with an :class:`AssertionError` after ``timeout``."""
    collector = Collector()
    consumer = await consume(
        binder,
        ConsumerSpec(
            binding="read-queue",
            destination=queue,
            group="reader",
            options=consumer_options(default_exchange=True),
        ),
        collector,
    )
    try:
        await collector.wait_until(
            lambda: len(collector.messages) >= count,
            timeout,
            f"{count} message(s) on queue {queue!r}",
        )
        return list(collector.messages)
    finally:
        await consumer.close()


class RecordingSink:
    """A :class:`~binder.spi.DeliverySink` that only keeps the deliveries, for tests
    that settle (or dead-letter) them by hand."""

    def __init__(self, window: int = 256) -> None:
        self.deliveries: list[Delivery] = []
        self.window = window

    def deliver(self, delivery: Delivery) -> None:
        self.deliveries.append(delivery)

    @property
    def room(self) -> int:
        return self.window - len(self.deliveries)

    async def wait_for_room(self, at_least: int = 1) -> None:
        await wait_until(lambda: self.room >= at_least, 30.0, "room")

    def discard(self, lanes: Collection[Hashable]) -> None:
        return None

    async def revoke(self, lanes: Collection[Hashable]) -> None:
        return None


def run_on(
    binder: RabbitBinder, app: App, bindings: dict[str, Any] | None = None
) -> AbstractAsyncContextManager[Harness]:
    """``async with run_on(binder, app, bindings):`` runs ``app`` through the full
    runtime (delivery engine, retries, dead letters) on the test's ``binder`` (which
    the run does not close); ``bindings`` is the config's ``bindings`` section."""
    config = {
        "binders": {"rabbit": {"type": "rabbit", "url": URL}},
        "default_binder": "rabbit",
        "bindings": bindings or {},
    }
    return run_app(app, config, binders={"rabbit": binder})


async def ready_count(binder: RabbitBinder, queue: str) -> int:
    """Messages ready in ``queue``: neither delivered nor waiting for an ack."""

    def count() -> int:
        return int(binder._publisher._admin.queue_declare(queue, passive=True).message_count)

    return int(await binder._publisher.call(count))


async def wait_until_ready(
    binder: RabbitBinder, queue: str, expected: int, timeout: float = 10.0
) -> None:
    """Wait (one broker round trip per check, with a deadline) until ``queue`` has
    ``expected`` messages ready; an :class:`AssertionError` after ``timeout``, as
    :func:`binder.testing.wait_until` (which looks at a plain condition, not the broker)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    ready = await ready_count(binder, queue)
    while ready != expected:
        if loop.time() >= deadline:
            raise AssertionError(
                f"timed out after {timeout:g}s waiting for {expected} message(s) ready in "
                f"{queue!r}; {ready} ready"
            )
        await asyncio.sleep(0.01)  # polling, bounded by the deadline above
        ready = await ready_count(binder, queue)


# -- rabbitmqctl: the local node's administration (users, permissions, restarts) -----


def _ctl_env() -> dict[str, str]:
    path = os.environ.get("PATH", "") + ":/usr/local/sbin:/usr/sbin:/sbin"
    return {**os.environ, "PATH": path}


@functools.cache
def _ctl_problem() -> str | None:
    """Why ``rabbitmqctl`` cannot administer the local node, or ``None`` when it can."""
    env = _ctl_env()
    exe = shutil.which("rabbitmqctl", path=env["PATH"])
    if exe is None:
        return "rabbitmqctl is not installed"
    try:
        probe = subprocess.run(
            [exe, "-q", "list_vhosts"], env=env, timeout=60, capture_output=True, text=True
        )
    except subprocess.TimeoutExpired:
        return "rabbitmqctl did not answer within 60 s"
    if probe.returncode != 0:
        # e.g. not root, so no access to the node's Erlang cookie
        return f"rabbitmqctl cannot reach the node: {probe.stderr.strip()[:200]}"
    return None


def require_rabbitmqctl() -> None:
    """Skip the calling test on a laptop where rabbitmqctl cannot administer the local
    node; fail it in CI (where ``scripts/brokers`` started RabbitMQ as root), like a
    test whose broker is missing."""
    problem = _ctl_problem()
    if problem is not None:
        reason = f"{problem}; this test administers the local RabbitMQ node"
        if in_ci():
            pytest.fail(f"CI=true and {reason}", pytrace=False)
        pytest.skip(reason)


def rabbitmqctl(*args: str) -> str:
    """Run ``rabbitmqctl -q ARGS`` against the node ``scripts/brokers up rabbit`` started
    (its ``/etc/rabbitmq/rabbitmq-env.conf`` names it) and return what it printed.

    Calls :func:`require_rabbitmqctl` first.  A failed command fails the test, naming
    the command only (a password given to ``add_user`` is never shown).
    """
    require_rabbitmqctl()
    env = _ctl_env()
    exe = shutil.which("rabbitmqctl", path=env["PATH"]) or "rabbitmqctl"
    done = subprocess.run([exe, "-q", *args], env=env, timeout=120, capture_output=True, text=True)
    if done.returncode != 0:
        raise AssertionError(
            f"rabbitmqctl {args[0]} failed (exit {done.returncode}): {done.stderr.strip()}"
        )
    return done.stdout


@dataclass(frozen=True)
class RabbitUser:
    """A throwaway RabbitMQ user (see the ``rabbit_user`` fixture)."""

    name: str
    password: str

    def url(self, password: str | None = None, vhost: str = "") -> str:
        """The AMQP URL of this user on the local broker (virtual host ``/`` by default)."""
        secret = self.password if password is None else password
        return f"amqp://{self.name}:{secret}@127.0.0.1:5672/{vhost}"

    async def allow(self, configure: str, write: str, read: str) -> None:
        """``set_permissions`` on virtual host ``/``: one regular expression each."""
        await asyncio.to_thread(
            rabbitmqctl, "set_permissions", "-p", "/", self.name, configure, write, read
        )

    async def set_password(self, password: str) -> None:
        """Change the user's password (its open connections stay open)."""
        await asyncio.to_thread(rabbitmqctl, "change_password", self.name, password)

    async def limit_connections(self, count: int) -> None:
        """``set_user_limits``: at most ``count`` connections."""
        limits = f'{{"max-connections": {count}}}'
        await asyncio.to_thread(rabbitmqctl, "set_user_limits", self.name, limits)

    async def disconnect(self) -> None:
        """Make RabbitMQ close every connection of this user."""
        await asyncio.to_thread(
            rabbitmqctl, "close_all_user_connections", self.name, "closed by a test"
        )


def add_user() -> RabbitUser:
    """Create a user without any permissions; :func:`delete_user` removes it."""
    user = RabbitUser(fresh("user"), uuid.uuid4().hex)
    rabbitmqctl("add_user", user.name, user.password)
    return user


def delete_user(user: RabbitUser) -> None:
    """Close the user's connections and delete it."""
    with contextlib.suppress(AssertionError):
        rabbitmqctl("close_all_user_connections", user.name, "eventbinder test over")
    rabbitmqctl("delete_user", user.name)
