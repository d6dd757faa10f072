"""The binder conformance suite: one set of tests every binder must pass.

Like Watermill's universal Pub/Sub tests, the suite is parameterised by the
:class:`~binder.spi.Capabilities` the binder declares: a test of a capability the
binder lacks is skipped, and the binder must instead refuse such bindings at bind time
(:class:`~binder.errors.UnsupportedFeature`), which is tested too.

A binder's test module subclasses :class:`BinderConformance`::

    pytestmark = pytest.mark.broker("rabbit")

    class TestRabbitConformance(BinderConformance):
        binder_settings = {"type": "rabbit", "url": "amqp://guest:guest@127.0.0.1:5672//"}
        conformance = ConformanceSettings(
            receive_timeout=10.0, session_settings={"heartbeat": 2.0}, block_for=3.0
        )

        async def read_dead_letters(self, binder, destination, group, count, timeout):
            ...   # only where dead letters cannot be read by subscribing to them

Harness knobs (timeouts, counts, short session timeouts) live in
:class:`ConformanceSettings`, apart from the capabilities, which are data about the
broker.  Every test uses fresh destinations.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pytest
import pytest_asyncio

from binder.app import App
from binder.config import load_settings
from binder.errors import UnsupportedFeature
from binder.message import Message
from binder.partitioning import partition_for
from binder.plugins import BinderRegistry, load_registry
from binder.runtime import ConnectError, Runtime
from binder.spi import Binder, ConsumerSpec, Direction, Handler, ProducerBinding, ProducerSpec
from binder.testing.collector import Collector
from binder.testing.consume import BoundConsumer, consume
from binder.testing.harness import run_app
from binder.testing.waiting import wait_until

__all__ = [
    "BinderConformance",
    "Collector",
    "ConformanceSettings",
    "DeadLetterReader",
    "wait_until",
]


@dataclass(frozen=True)
class ConformanceSettings:
    """How the suite drives a binder: timeouts and sizes, not broker facts."""

    receive_timeout: float = 5.0
    """Longest wait for an expected message."""
    messages: int = 20
    """Messages per test stream."""
    partitions: int = 3
    """Partitions for the ordering test (when the binder supports partitioning)."""
    keys: int = 4
    """Distinct partition keys in the ordering test."""
    backoff: float = 0.01
    """Retry backoff used in the dead-letter tests."""
    session_settings: Mapping[str, Any] = field(default_factory=dict)
    """Binder settings that make the broker drop a silent client quickly (a short
    session timeout, heartbeat or keepalive), for the blocking-handler test."""
    block_for: float = 1.5
    """How long the blocking handler blocks: longer than ``session_settings`` allow a
    client to stay silent, so a blocked event loop would lose the session."""
    kill_messages: int = 400
    """Messages in the stream the kill-and-restart test kills an app in."""
    app_start_timeout: float = 30.0
    """Longest wait for an app started in a subprocess to handle its first message."""
    refused_settings: Mapping[str, Any] | None = None
    """Binder settings (merged into ``binder_settings``) the broker refuses: a wrong
    password. ``None``: the binder has nothing to authenticate, the test is skipped."""
    refused_secret: str | None = None
    """The wrong secret in ``refused_settings``: it must not appear in the error."""
    large_payload: int = 5 * 1024 * 1024
    """Bytes of the payload in the large-message test."""
    large_settings: Mapping[str, Any] = field(default_factory=dict)
    """Binder settings (merged into ``binder_settings``) of the large-message test."""
    large_binding_defaults: Mapping[str, Any] = field(default_factory=dict)
    """``bindings.default`` of the large-message test: per-binding size options."""


class DeadLetterReader:
    """Reads dead letters of one binding; opened before the failure happens."""

    def __init__(self, read: Callable[[int, float], Any], close: Callable[[], Any] | None = None):
        self._read = read
        self._close = close

    async def read(self, count: int, timeout: float) -> list[Message]:
        """Return ``count`` dead letters, waiting up to ``timeout`` seconds."""
        letters: list[Message] = await self._read(count, timeout)
        return letters

    async def close(self) -> None:
        """Release what the reader holds."""
        if self._close is not None:
            await self._close()


def _name(prefix: str) -> str:
    return f"conf-{prefix}-{uuid.uuid4().hex[:10]}"


def _json_message(value: Any, **kwargs: Any) -> Message:
    return Message(json.dumps(value).encode(), content_type="application/json", **kwargs)


class BinderConformance:
    """Subclass in a binder's tests; set :attr:`binder_settings` (and maybe more)."""

    binder_settings: ClassVar[dict[str, Any]] = {"type": "memory"}
    """A ``binders.<name>`` config section, ``type`` included."""
    conformance: ClassVar[ConformanceSettings] = ConformanceSettings()

    # -- hooks a binder's test class may override -----------------------------------

    async def read_dead_letters(
        self, binder: Binder, destination: str, group: str | None, count: int, timeout: float
    ) -> list[Message]:
        """Read ``count`` dead letters after the fact.

        Override it where dead letters cannot be read by subscribing to
        ``binder.dead_letter_destination(destination, group)`` (a RabbitMQ DLQ is a
        queue, not an exchange).
        """
        raise NotImplementedError

    async def open_dead_letters(
        self, binder: Binder, destination: str, group: str | None
    ) -> DeadLetterReader:
        """Start reading dead letters before they are produced.

        The default subscribes to the binder's dead-letter destination, unless the
        subclass overrides :meth:`read_dead_letters`.
        """
        if type(self).read_dead_letters is not BinderConformance.read_dead_letters:

            async def later(count: int, timeout: float) -> list[Message]:
                return await self.read_dead_letters(binder, destination, group, count, timeout)

            return DeadLetterReader(later)
        collector = Collector()
        dlq = binder.dead_letter_destination(destination, group)
        spec = ConsumerSpec(
            binding="conformance-dlq", destination=dlq, options=self.binding_options("consumer")
        )
        consumer = await consume(binder, spec, collector)

        async def read(count: int, timeout: float) -> list[Message]:
            return list(await collector.wait_for(count, timeout))

        return DeadLetterReader(read, consumer.close)

    # -- fixtures --------------------------------------------------------------------

    @pytest.fixture
    def registry(self) -> BinderRegistry:
        """The plugin registry, loaded through entry points as in production."""
        return load_registry()

    @pytest.fixture(autouse=True)
    def _binder_type(self, registry: BinderRegistry) -> None:
        """Remember the binder type under test, for :meth:`binding_options`."""
        self._type = registry.get(self.binder_settings["type"])

    def binding_options(
        self, direction: Direction, section: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """``section`` validated by the binder type for ``direction``: the complete
        ``spec.options`` the runtime hands a binder (every option, defaults filled in)."""
        return self._type.validate_binding_options(dict(section or {}), direction)

    @pytest_asyncio.fixture
    async def binder(self, registry: BinderRegistry) -> AsyncIterator[Binder]:
        """A fresh, started binder built from :attr:`binder_settings`."""
        settings = dict(self.binder_settings)
        type_name = settings.pop("type")
        binder_type = registry.get(type_name)
        instance = binder_type.create("conformance", binder_type.validate_settings(settings))
        await instance.start()
        self._bound: list[BoundConsumer] = []
        try:
            yield instance
        finally:
            for bound in self._bound:
                with contextlib.suppress(Exception):
                    await bound.close(timeout=self.timeout)
            await instance.close()

    @property
    def timeout(self) -> float:
        """Shortcut for ``conformance.receive_timeout``."""
        return self.conformance.receive_timeout

    async def _consumer(
        self, binder: Binder, destination: str, handler: Handler, **spec: Any
    ) -> BoundConsumer:
        options = self.binding_options("consumer", spec.pop("options", None))
        bound = await consume(
            binder,
            ConsumerSpec(
                binding=f"{destination}-in-0", destination=destination, options=options, **spec
            ),
            handler,
        )
        self._bound.append(bound)
        return bound

    async def _producer(self, binder: Binder, destination: str, **spec: Any) -> ProducerBinding:
        options = self.binding_options("producer", spec.pop("options", None))
        return await binder.bind_producer(
            ProducerSpec(
                binding=f"{destination}-out-0", destination=destination, options=options, **spec
            )
        )

    def _subscriber_spec(self, binder: Binder) -> dict[str, Any]:
        """A single subscriber: anonymous where supported, else a fresh group."""
        if binder.capabilities.anonymous_subscribers:
            return {}
        return {"group": _name("g")}

    def _config(
        self, defaults: Mapping[str, Any], extra: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        return {
            "binders": {"conformance": {**self.binder_settings, **(extra or {})}},
            "default_binder": "conformance",
            "bindings": {"default": dict(defaults)},
        }

    @contextlib.asynccontextmanager
    async def _on(
        self, binder: Binder, app: App, registry: BinderRegistry, defaults: Mapping[str, Any]
    ) -> AsyncIterator[Runtime]:
        """Run ``app`` on the test's own ``binder`` (lent, so the test can watch its
        destinations and, on the in-memory binder, see the same broker)."""
        async with run_app(
            app,
            self._config(defaults),
            binders={"conformance": binder},
            record=False,
            registry=registry,
        ) as harness:
            yield harness.runtime

    @contextlib.asynccontextmanager
    async def _running(
        self,
        app: App,
        destination: str,
        group: str | None,
        defaults: dict[str, Any],
        registry: BinderRegistry,
        extra: Mapping[str, Any] | None = None,
    ) -> AsyncIterator[tuple[Runtime, DeadLetterReader, ProducerBinding]]:
        """Run ``app`` on this binder type; yield it, a dead-letter reader and a producer.

        ``extra`` settings are merged into :attr:`binder_settings`.
        """
        config = self._config(defaults, extra)
        async with run_app(app, config, record=False, registry=registry) as harness:
            binder = harness.runtime.binders["conformance"]
            reader = await self.open_dead_letters(binder, destination, group)
            try:
                yield harness.runtime, reader, await self._producer(binder, destination)
            finally:
                await reader.close()

    # -- point to point and publish-subscribe ----------------------------------------

    async def test_round_trip_keeps_payload_headers_key_and_content_type(
        self, binder: Binder
    ) -> None:
        destination = _name("rt")
        received = Collector()
        consumer = await self._consumer(
            binder, destination, received, **self._subscriber_spec(binder)
        )
        producer = await self._producer(binder, destination)
        sent = Message(
            b'{"id": 1, "text": "h\\u00e9llo"}',
            headers={"tenant": "acme", "x-trace": "abc"},
            key="order-1",
            content_type="application/json",
        )
        await producer.publish(sent)
        [got] = await received.wait_for(1, self.timeout)
        assert got.payload == sent.payload
        assert got.json() == {"id": 1, "text": "h\u00e9llo"}
        assert got.destination == destination
        assert got.delivery_attempt == 1
        if binder.capabilities.native_headers:
            assert got.key == "order-1"
            assert got.content_type == "application/json"
            assert got.message_id == sent.message_id
            assert {k: got.headers.get(k) for k in sent.headers} == sent.headers
        await consumer.close()
        await producer.close()

    async def test_text_and_binary_payloads_round_trip(self, binder: Binder) -> None:
        destination = _name("bin")
        received = Collector()
        await self._consumer(binder, destination, received, **self._subscriber_spec(binder))
        producer = await self._producer(binder, destination)
        blob = bytes(range(256))
        await producer.publish(Message(b"plain text", content_type="text/plain"))
        await producer.publish(Message(blob, content_type="application/octet-stream"))
        messages = await received.wait_for(2, self.timeout)
        assert sorted(m.payload for m in messages) == sorted([b"plain text", blob])
        if binder.capabilities.native_headers:
            types = {m.payload: m.content_type for m in messages}
            assert types == {b"plain text": "text/plain", blob: "application/octet-stream"}

    async def test_no_crosstalk_between_destinations(self, binder: Binder) -> None:
        first, second = _name("a"), _name("b")
        got_first, got_second = Collector(), Collector()
        await self._consumer(binder, first, got_first, **self._subscriber_spec(binder))
        await self._consumer(binder, second, got_second, **self._subscriber_spec(binder))
        to_first = await self._producer(binder, first)
        to_second = await self._producer(binder, second)
        await to_first.publish(_json_message({"to": "first"}))
        await to_second.publish(_json_message({"to": "second"}))
        # A marker after each: once it arrived, anything misrouted would have too.
        await to_first.publish(_json_message({"marker": True}))
        await to_second.publish(_json_message({"marker": True}))
        await got_first.wait_for(2, self.timeout)
        await got_second.wait_for(2, self.timeout)
        assert sorted(map(str, got_first.payloads())) == sorted(
            map(str, [{"to": "first"}, {"marker": True}])
        )
        assert sorted(map(str, got_second.payloads())) == sorted(
            map(str, [{"to": "second"}, {"marker": True}])
        )

    async def test_group_members_share_the_load(self, binder: Binder) -> None:
        if not binder.capabilities.consumer_groups:
            pytest.skip("binder declares consumer_groups=False")
        destination, group = _name("share"), _name("g")
        members = [Collector(), Collector()]
        for member in members:
            await self._consumer(binder, destination, member, group=group)
        producer = await self._producer(binder, destination)
        count = self.conformance.messages
        for i in range(count):
            await producer.publish(_json_message({"n": i}))
        await wait_until(
            lambda: sum(len(m.messages) for m in members) >= count,
            self.timeout,
            f"{count} messages across the group",
        )
        seen = sorted(p["n"] for m in members for p in m.payloads())
        assert seen == list(range(count)), "each message must reach exactly one member"

    async def test_each_group_and_each_anonymous_subscriber_gets_a_copy(
        self, binder: Binder
    ) -> None:
        caps = binder.capabilities
        if not (caps.consumer_groups or caps.anonymous_subscribers):
            pytest.skip("binder has neither groups nor anonymous subscribers")
        destination = _name("fanout")
        subscribers: list[Collector] = []
        if caps.consumer_groups:
            for _ in range(2):
                subscribers.append(Collector())
                await self._consumer(binder, destination, subscribers[-1], group=_name("g"))
        if caps.anonymous_subscribers:
            for _ in range(2):
                subscribers.append(Collector())
                await self._consumer(binder, destination, subscribers[-1])
        producer = await self._producer(binder, destination)
        count = 5
        for i in range(count):
            await producer.publish(_json_message({"n": i}))
        for subscriber in subscribers:
            await subscriber.wait_for(count, self.timeout)
            assert sorted(p["n"] for p in subscriber.payloads()) == list(range(count))

    # -- ordering ----------------------------------------------------------------------

    async def test_order_is_kept_per_partition_key(self, binder: Binder) -> None:
        caps = binder.capabilities
        if not caps.ordering:
            pytest.skip("binder declares ordering=False")
        cfg = self.conformance
        partitions = cfg.partitions if caps.partitioning else 1
        destination = _name("order")
        spec: dict[str, Any] = {"concurrency": 3}
        spec["group"] = _name("g") if caps.consumer_groups else None
        received = Collector()
        await self._consumer(binder, destination, received, **spec)
        producer = await self._producer(binder, destination, partition_count=partitions)
        keys = [f"key-{k}" for k in range(cfg.keys)]
        per_key = max(1, cfg.messages // len(keys)) * 2
        for seq in range(per_key):
            for key in keys:
                message = _json_message({"key": key, "seq": seq}, key=key)
                if partitions > 1:
                    message.partition = partition_for(key, partitions)
                await producer.publish(message)
        await received.wait_for(per_key * len(keys), self.timeout * 2)
        for key in keys:
            seqs = [p["seq"] for p in received.payloads() if p["key"] == key]
            assert seqs == list(range(per_key)), f"order broken for {key}: {seqs}"

    # -- acknowledgement ---------------------------------------------------------------

    async def test_nack_leads_to_redelivery(self, binder: Binder) -> None:
        if not binder.capabilities.redelivery_on_nack:
            pytest.skip("binder declares redelivery_on_nack=False")
        destination = _name("nack")
        failed_once: set[str] = set()

        def fail_first(message: Message) -> bool:
            if message.message_id in failed_once:
                return False
            failed_once.add(message.message_id)
            return True

        received = Collector(fail=fail_first)
        group = _name("g") if binder.capabilities.consumer_groups else None
        await self._consumer(binder, destination, received, group=group)
        producer = await self._producer(binder, destination)
        await producer.publish(_json_message({"n": 1}))
        [got] = await received.wait_for(1, self.timeout)
        assert got.json() == {"n": 1}
        assert len(received.attempts) >= 2
        assert got.delivery_attempt >= 2

    async def test_failing_handler_does_not_stop_the_stream(
        self, binder: Binder, registry: BinderRegistry
    ) -> None:
        destination = _name("stream")
        group = _name("g") if binder.capabilities.consumer_groups else None
        app = App("conformance")
        good: list[int] = []

        @app.consumer(destination, group=group)
        def handle(payload: dict[str, Any]) -> None:
            if payload["n"] % 3 == 0:
                raise ValueError(f"cannot handle {payload['n']}")
            good.append(payload["n"])

        defaults = {"max_attempts": 2, "backoff_initial": self.conformance.backoff}
        async with self._running(app, destination, group, defaults, registry) as running:
            runtime, reader, producer = running
            count = 9
            for i in range(1, count + 1):
                await producer.publish(_json_message({"n": i}))
            expected = [i for i in range(1, count + 1) if i % 3]
            await wait_until(
                lambda: runtime.handled >= count, self.timeout * 2, f"{count} handled messages"
            )
            assert sorted(good) == expected
            dead = await reader.read(count - len(expected), self.timeout)
            assert sorted(m.json()["n"] for m in dead) == [3, 6, 9]

    async def test_retry_then_dead_letter_with_error_headers(
        self, binder: Binder, registry: BinderRegistry
    ) -> None:
        destination = _name("dlq")
        group = _name("g") if binder.capabilities.consumer_groups else None
        app = App("conformance")
        attempts: list[int] = []

        @app.consumer(destination, group=group)
        def always_fails(payload: dict[str, Any], message: Message) -> None:
            attempts.append(message.delivery_attempt)
            raise ValueError("payment service said no")

        defaults = {"max_attempts": 3, "backoff_initial": self.conformance.backoff}
        async with self._running(app, destination, group, defaults, registry) as running:
            _, reader, producer = running
            sent = _json_message({"id": 7}, headers={"tenant": "acme"})
            await producer.publish(sent)
            [dead] = await reader.read(1, self.timeout * 2)
            assert attempts == [1, 2, 3]
            assert dead.json() == {"id": 7}
            headers = dead.headers
            assert headers["x-exception-message"] == "payment service said no"
            assert headers["x-exception-type"] == "builtins.ValueError"
            assert "ValueError" in headers["x-exception-stacktrace"]
            assert headers["x-original-destination"] == destination
            assert headers["x-original-group"] == (group or "")
            assert headers["x-delivery-attempts"] == "3"
            origin = dead.dead_letter
            assert origin is not None
            assert (origin.destination, origin.group, origin.attempts) == (destination, group, 3)
            assert origin.exception_type == "builtins.ValueError"
            assert origin.exception_message == "payment service said no"
            if binder.capabilities.native_headers:
                assert headers["tenant"] == "acme"

    async def test_undecodable_payload_is_dead_lettered_at_once(
        self, binder: Binder, registry: BinderRegistry
    ) -> None:
        destination = _name("undecodable")
        group = _name("g") if binder.capabilities.consumer_groups else None
        app = App("conformance")
        handled: list[dict[str, Any]] = []

        @app.consumer(destination, group=group)
        def handle(payload: dict[str, Any]) -> None:
            handled.append(payload)

        defaults = {"max_attempts": 5, "backoff_initial": 1.0}
        async with self._running(app, destination, group, defaults, registry) as running:
            _, reader, producer = running
            await producer.publish(Message(b"{not json", content_type="application/json"))
            await producer.publish(_json_message({"after": True}))
            [dead] = await reader.read(1, self.timeout)
            assert dead.payload == b"{not json"
            assert dead.headers["x-exception-type"] == "binder.errors.DecodeError"
            assert dead.headers["x-delivery-attempts"] == "1"
            await wait_until(lambda: handled, self.timeout, "the next message")
            assert handled == [{"after": True}]

    # -- lifecycle ---------------------------------------------------------------------

    async def test_close_is_idempotent_and_flushes_pending_publishes(self, binder: Binder) -> None:
        destination = _name("close")
        received = Collector()
        consumer = await self._consumer(
            binder, destination, received, **self._subscriber_spec(binder)
        )
        producer = await self._producer(binder, destination)
        count = self.conformance.messages
        pending = [
            asyncio.ensure_future(producer.publish(_json_message({"n": i}))) for i in range(count)
        ]
        await asyncio.sleep(0)  # let every publish start, then close with them in flight
        await producer.close()
        await producer.close()
        await asyncio.gather(*pending)
        await received.wait_for(count, self.timeout)
        assert sorted(p["n"] for p in received.payloads()) == list(range(count))
        await consumer.close()
        await consumer.close()
        await binder.close()
        await binder.close()

    # -- the delivery engine -------------------------------------------------------------

    async def test_blocking_handler_keeps_the_session(
        self, binder: Binder, registry: BinderRegistry, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A plain ``def`` handler that blocks longer than the broker lets a silent
        client live costs nothing: it runs in a worker thread, so heartbeats and
        keepalives go on; nothing is delivered twice and nobody reconnects."""
        cfg = self.conformance
        destination = _name("block")
        group = _name("g") if binder.capabilities.consumer_groups else None
        app = App("conformance")
        handled: list[tuple[int, int]] = []

        @app.consumer(destination, group=group)
        def slow(payload: dict[str, Any], message: Message) -> None:
            if payload["n"] == 0:
                time.sleep(cfg.block_for)  # blocks its worker thread, never the event loop
            handled.append((payload["n"], message.delivery_attempt))

        defaults = {"max_attempts": 1}
        async with self._running(
            app, destination, group, defaults, registry, extra=cfg.session_settings
        ) as running:
            _, _, producer = running
            caplog.clear()
            caplog.set_level(logging.WARNING)
            count = 5
            for n in range(count):
                await producer.publish(_json_message({"n": n}))
            await wait_until(
                lambda: len(handled) >= count, cfg.block_for + self.timeout, f"{count} messages"
            )
            # Still subscribed, same session: a message published now arrives once.
            await producer.publish(_json_message({"n": count}))
            await wait_until(lambda: len(handled) > count, self.timeout, "one more message")
            troubles = [
                f"{r.name}: {r.getMessage()}"
                for r in caplog.records
                if r.levelno >= logging.WARNING and r.name.split(".")[0] in _CLIENT_LOGGERS
            ]
        assert sorted(n for n, _ in handled) == list(range(count + 1)), handled
        assert all(attempt == 1 for _, attempt in handled), f"redelivered: {handled}"
        assert troubles == [], "the session suffered while the handler blocked"

    async def test_function_outputs_keep_order_per_key(
        self, binder: Binder, registry: BinderRegistry
    ) -> None:
        """Outputs are published without waiting for each confirm, yet every key's
        outputs come out in the order of its inputs."""
        caps = binder.capabilities
        if not caps.ordering:
            pytest.skip("binder declares ordering=False")
        cfg = self.conformance
        source, target = _name("fin"), _name("fout")
        group = _name("g") if caps.consumer_groups else None
        partitions = cfg.partitions if caps.partitioning else 1
        app = App("conformance")

        @app.function(input=source, output=target, group=group, concurrency=3)
        def relay(payload: dict[str, Any], message: Message) -> Message:
            return Message(message.payload, key=message.key, content_type="application/json")

        # The partitions exist before the app subscribes: no rebalance in the middle.
        producer = await self._producer(binder, source, partition_count=partitions)
        async with self._on(binder, app, registry, {}):
            outputs = Collector()
            await self._consumer(binder, target, outputs, **self._subscriber_spec(binder))
            keys = [f"key-{k}" for k in range(cfg.keys)]
            per_key = max(1, cfg.messages // len(keys)) * 5
            sends = []
            for seq in range(per_key):
                for key in keys:
                    message = _json_message({"key": key, "seq": seq}, key=key)
                    if partitions > 1:
                        message.partition = partition_for(key, partitions)
                    sends.append(producer.publish(message))
            await asyncio.gather(*sends)
            await outputs.wait_for(per_key * len(keys), self.timeout * 2)
        for key in keys:
            seqs = [p["seq"] for p in outputs.payloads() if p["key"] == key]
            assert seqs == list(range(per_key)), f"outputs out of order for {key}: {seqs}"

    @pytest.mark.parametrize("flavour", ["def", "async def"])
    async def test_concurrency_bound_holds(
        self, binder: Binder, registry: BinderRegistry, flavour: str
    ) -> None:
        """``concurrency`` handler calls run at once when there is work for them, and
        never more."""
        caps = binder.capabilities
        concurrency, count = 3, 30
        destination = _name("conc")
        group = _name("g") if caps.consumer_groups else None
        partitions = concurrency if caps.partitioning else 1
        state = {"now": 0, "max": 0, "done": 0}
        lock = threading.Lock()
        app = App("conformance")

        def enter() -> None:
            with lock:
                state["now"] += 1
                state["max"] = max(state["max"], state["now"])

        def leave() -> None:
            with lock:
                state["now"] -= 1
                state["done"] += 1

        if flavour == "def":
            barrier = threading.Barrier(concurrency)

            @app.consumer(destination, group=group, concurrency=concurrency)
            def busy(payload: dict[str, Any]) -> None:
                enter()
                if payload["n"] < concurrency:  # the first calls meet: all must run at once
                    with contextlib.suppress(threading.BrokenBarrierError):
                        barrier.wait(self.timeout)
                time.sleep(0.005)
                leave()

        else:
            gate = asyncio.Barrier(concurrency)

            @app.consumer(destination, group=group, concurrency=concurrency)
            async def busy_async(payload: dict[str, Any]) -> None:
                enter()
                if payload["n"] < concurrency:
                    with contextlib.suppress(TimeoutError, asyncio.BrokenBarrierError):
                        await asyncio.wait_for(gate.wait(), self.timeout)
                await asyncio.sleep(0.005)
                leave()

        # The partitions exist before the app subscribes: no rebalance in the middle.
        producer = await self._producer(binder, destination, partition_count=partitions)
        async with self._on(binder, app, registry, {"max_attempts": 1}):
            for n in range(count):
                # n < concurrency land on different keys (and partitions): one lane each
                message = _json_message({"n": n}, key=f"k{n % concurrency}")
                if partitions > 1:
                    message.partition = n % partitions
                await producer.publish(message)
            await wait_until(lambda: state["done"] >= count, self.timeout * 2, "all messages")
        assert state["max"] == concurrency, f"at most {state['max']} call(s) ran at once"

    async def test_stop_waits_for_handlers_and_unconfirmed_outputs(
        self, binder: Binder, registry: BinderRegistry
    ) -> None:
        """Stopping lets running handlers finish and waits until their outputs are
        confirmed; what was not handled stays with the broker for the next start."""
        caps = binder.capabilities
        source, target = _name("sin"), _name("sout")
        group = _name("g") if caps.consumer_groups else None
        release = threading.Event()
        started: list[int] = []
        returned: list[int] = []

        def build() -> App:
            app = App("conformance")

            @app.function(input=source, output=target, group=group)
            def relay(payload: dict[str, Any]) -> dict[str, Any]:
                started.append(payload["n"])
                release.wait(self.timeout)
                returned.append(payload["n"])
                return payload

            return app

        outputs = Collector()
        await self._consumer(binder, target, outputs, **self._subscriber_spec(binder))
        producer = await self._producer(binder, source)
        count = 10
        async with self._on(binder, build(), registry, {}) as runtime:
            sends = [producer.publish(_json_message({"n": n})) for n in range(count)]
            await asyncio.gather(*sends)
            await wait_until(lambda: started, self.timeout, "the first handler call")
            stopping = asyncio.ensure_future(runtime.stop())
            await wait_until(
                lambda: runtime.status().get("relay-in-0") in ("stopping", "stopped"),
                self.timeout,
                "the binding to begin stopping",
            )
            assert not stopping.done(), "stop() returned while a handler was still running"
            release.set()
            await asyncio.wait_for(stopping, self.timeout * 2)
        assert returned, "the running handler was abandoned"
        # Every handler that returned had its output confirmed before stop() returned.
        await outputs.wait_until(
            lambda: {p["n"] for p in outputs.payloads()} >= set(returned),
            self.timeout,
            "the outputs of every handler that returned",
        )
        if not (caps.durable and group is not None):
            return
        # The rest waited with the broker: the next start handles every one.
        async with self._on(binder, build(), registry, {}):
            await outputs.wait_until(
                lambda: {p["n"] for p in outputs.payloads()} == set(range(count)),
                self.timeout * 2,
                "an output for every input after the restart",
            )

    async def test_killed_app_leaves_every_input_with_an_output(
        self, binder: Binder, tmp_path: Path
    ) -> None:
        """An app killed with SIGKILL mid-stream and started again: every input has
        its output at least once (nothing acknowledged before its output was stored)."""
        caps = binder.capabilities
        if not (caps.durable and caps.consumer_groups):
            pytest.skip("needs durable consumer groups")
        cfg = self.conformance
        source, target, group = _name("kin"), _name("kout"), _name("g")
        outputs = Collector()
        await self._consumer(binder, target, outputs, group=_name("sink"))
        producer = await self._producer(binder, source)
        app_file = tmp_path / "killed_app.py"
        app_file.write_text(_KILLED_APP.format(source=source, target=target, group=group))
        config = tmp_path / "binder.yaml"
        settings = {**self.binder_settings, **cfg.session_settings}
        config.write_text(json.dumps({"binders": {"conformance": settings}}))

        def ids() -> set[int]:
            return {p["id"] for p in outputs.payloads()}

        async def until_running(app: _AppProcess) -> None:
            # Ping until the app answers: only then is its group subscription in place
            # on every broker (MQTT keeps nothing for a group before that).
            deadline = time.monotonic() + cfg.app_start_timeout
            ping = -1
            while not any(n < 0 for n in ids()):
                if time.monotonic() > deadline or app.exited():
                    raise AssertionError(f"the app did not start: {app.log()}")
                await producer.publish(_json_message({"id": ping}))
                ping -= 1
                with contextlib.suppress(AssertionError):
                    await outputs.wait_until(lambda: any(n < 0 for n in ids()), 1.0, "a ping")

        count = cfg.kill_messages
        first = _AppProcess(app_file, config)
        try:
            await until_running(first)
            await asyncio.gather(
                *(producer.publish(_json_message({"id": n})) for n in range(count))
            )
            await outputs.wait_until(
                lambda: len(ids() & set(range(count))) >= count // 4,
                self.timeout * 2,
                "a quarter of the stream",
            )
            first.kill()
            second = _AppProcess(app_file, config)
            try:
                await outputs.wait_until(
                    lambda: ids() >= set(range(count)),
                    cfg.app_start_timeout + self.timeout * 2,
                    "an output for every input after the restart",
                )
            finally:
                second.stop()
        finally:
            first.kill()

    # -- what users get wrong -----------------------------------------------------------

    async def test_refused_credentials_fail_at_once(self, registry: BinderRegistry) -> None:
        """Wrong credentials are not a network fault: the start fails at once with an
        error that says the broker refused access (and holds no secret), even without
        ``fail_fast``; ``runtime.retry_access_refused`` keeps retrying instead."""
        cfg = self.conformance
        if cfg.refused_settings is None:
            pytest.skip("the binder has no credentials to refuse")
        app = App("conformance")

        @app.consumer(_name("refused"), group=_name("g"))
        def never(payload: bytes) -> None:
            raise AssertionError("no message can arrive")

        config = self._config({}, cfg.refused_settings)
        settings = load_settings(config, registry=registry, discover=False, environ={})
        runtime = Runtime(app, settings, registry)
        with pytest.raises(ConnectError) as refused:
            await asyncio.wait_for(runtime.start(), self.timeout * 2)
        message = str(refused.value)
        assert "refused access" in message, message
        if cfg.refused_secret:
            assert cfg.refused_secret not in message, message

        config["runtime"] = {"retry_access_refused": True}
        settings = load_settings(config, registry=registry, discover=False, environ={})
        retrying = Runtime(app, settings, registry)
        starting = asyncio.ensure_future(retrying.start())
        try:
            await wait_until(
                lambda: any(s.startswith("refused by broker") for s in retrying.status().values()),
                self.timeout * 2,
                "a retry after the refusal",
            )
            assert not starting.done()
        finally:
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await starting
            await retrying.stop()

    async def test_large_message_passes_through_a_function(
        self, binder: Binder, registry: BinderRegistry
    ) -> None:
        """A message of ``large_payload`` bytes goes in, through a function and out,
        unchanged, with the binder's documented size settings."""
        cfg = self.conformance
        source, target = _name("bigin"), _name("bigout")
        app = App("conformance")
        group = _name("g") if binder.capabilities.consumer_groups else None

        @app.function(input=source, output=target, group=group)
        def relay(payload: bytes) -> Message:
            return Message(payload[::-1], content_type="application/octet-stream")

        blob = os.urandom(cfg.large_payload)
        defaults = dict(cfg.large_binding_defaults)
        async with self._running(
            app, source, group, defaults, registry, extra=cfg.large_settings
        ) as running:
            runtime, _, producer = running
            binder = runtime.binders["conformance"]
            outputs = Collector()
            spec = ConsumerSpec(
                binding=f"{target}-in-0",
                destination=target,
                options=self.binding_options("consumer"),
                **self._subscriber_spec(binder),
            )
            sink = await consume(binder, spec, outputs)
            try:
                await producer.publish(Message(blob, content_type="application/octet-stream"))
                [out] = await outputs.wait_for(1, self.timeout * 2)
            finally:
                await sink.close(timeout=self.timeout)
        assert len(out.payload) == len(blob)
        assert out.payload == blob[::-1]

    async def test_capability_declared_false_is_refused_at_bind_time(self, binder: Binder) -> None:
        caps = binder.capabilities
        destination = _name("caps")
        checked = 0

        async def nothing(message: Message) -> None:
            return None

        if not caps.consumer_groups:
            checked += 1
            with pytest.raises(UnsupportedFeature):
                await self._consumer(binder, destination, nothing, group="g")
        if not caps.anonymous_subscribers:
            checked += 1
            with pytest.raises(UnsupportedFeature):
                await self._consumer(binder, destination, nothing)
        if not caps.partitioning:
            checked += 1
            with pytest.raises(UnsupportedFeature):
                await self._producer(binder, destination, partition_count=3)
            with pytest.raises(UnsupportedFeature):
                await self._consumer(
                    binder,
                    destination,
                    nothing,
                    group="g" if caps.consumer_groups else None,
                    instance_index=0,
                    instance_count=2,
                )
        if not checked:
            pytest.skip("every capability that a binding can ask for is declared true")


#: Loggers whose warnings mean a client lost (or feared for) its broker session.
_CLIENT_LOGGERS = ("binder", "binders", "aiokafka", "kombu", "amqp", "paho")

_KILLED_APP = """\
import time

from binder import App

app = App("conformance-killed")


@app.function(input={source!r}, output={target!r}, group={group!r})
def relay(payload: dict) -> dict:
    time.sleep(0.002)  # slow enough that a kill lands mid-stream
    return payload
"""


class _AppProcess:
    """``binder run`` of an app file in a subprocess, its output in a log file."""

    def __init__(self, app_file: Path, config: Path) -> None:
        self._log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed in kill()/stop()
            "w+", prefix="eventbinder-app-", suffix=".log", delete=False
        )
        self.process = subprocess.Popen(
            [sys.executable, "-m", "binder.cli", "run", str(app_file), "--config", str(config)],
            cwd=app_file.parent,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )

    def exited(self) -> bool:
        """True once the process ended."""
        return self.process.poll() is not None

    def log(self) -> str:
        """What the app wrote so far (the last few kilobytes)."""
        self._log.flush()
        return Path(self._log.name).read_text(errors="replace")[-4000:]

    def kill(self) -> None:
        """SIGKILL: no shutdown, no acknowledgement, nothing flushed."""
        if not self.exited():
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(30)
        self._close_log()

    def stop(self) -> None:
        """SIGTERM and wait: a graceful stop."""
        if not self.exited():
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(30)
        self._close_log()

    def _close_log(self) -> None:
        self._log.close()
        with contextlib.suppress(OSError):
            os.unlink(self._log.name)
