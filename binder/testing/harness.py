"""``run_app``: run an app on its configured binders (or in memory) and talk to it.

The harness watches destinations and records what is published there, records the
dead letters of the app's bindings, sends messages, and waits on conditions with
deadlines.  On the in-memory binder it sees every publish (the binder reports them);
on a broker it subscribes, as an anonymous subscriber of its own, to the app's output
destinations before the app starts, and to any other destination when asked.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

from binder.app import App
from binder.backoff import Backoff
from binder.codecs import encode
from binder.config import BinderConfig, load_settings
from binder.message import Message
from binder.plugins import BinderRegistry, load_registry
from binder.resolve import resolve_dynamic
from binder.runtime import Runtime
from binder.spi import Binder, ConsumerSpec, Failure
from binder.testing.consume import BoundConsumer, consume
from binder.testing.waiting import wait_until

__all__ = ["Harness", "run_app"]

#: The binder type an ``in_memory`` run uses, whatever the configuration names.
MEMORY = "memory"


class Harness:
    """A running app plus tools to drive and observe it (see :func:`run_app`)."""

    def __init__(self, app: App, runtime: Runtime, registry: BinderRegistry) -> None:
        self.app = app
        self.runtime = runtime
        self._registry = registry
        self._published: dict[str, list[Message]] = defaultdict(list)
        self._cursors: dict[str, int] = defaultdict(int)
        self._dead: dict[tuple[str, str | None], list[Message]] = defaultdict(list)
        self._changed = asyncio.Event()
        self._listened: set[str] = set()  # binder names that report every publish
        self._observers: dict[str, Binder] = {}  # binder name -> a binder of our own
        self._watched: dict[str, BoundConsumer] = {}
        self._removers: list[Callable[[], None]] = []
        self._listening: list[Binder] = []

    # -- what the app does -------------------------------------------------------------

    @property
    def binder(self) -> Binder:
        """The runtime's default binder (the in-memory one for a run without config)."""
        return self.runtime.binders[self.runtime.settings.default_binder]

    @property
    def handled(self) -> int:
        """Messages the app's consumer bindings finished (handled or dead-lettered)."""
        return self.runtime.handled

    def published(self, destination: str) -> list[Message]:
        """Every message published to ``destination`` so far that the harness saw.

        In memory that is every publish; on a broker, every publish since the
        destination was watched (the app's outputs are watched from the start).
        """
        return list(self._published.get(destination, ()))

    def dead_letters(self, destination: str, group: str | None = None) -> list[Message]:
        """Messages the app's consumers of ``destination`` in ``group`` dead-lettered, with
        the failure headers, oldest first (``group=None``: anonymous consumers)."""
        return list(self._dead.get((destination, group), ()))

    # -- driving it --------------------------------------------------------------------

    async def send(
        self,
        destination: str,
        payload: Any,
        *,
        headers: Mapping[str, str] | None = None,
        key: str | None = None,
        content_type: str = "application/json",
    ) -> Message:
        """Publish ``payload`` (encoded for ``content_type``) to ``destination``.

        Goes through the app's runtime like ``App.send`` (a binding named after the
        destination in the config applies); returns once the broker confirmed it.
        """
        message = Message(
            encode(payload, content_type),
            dict(headers or {}),
            key,
            content_type,
            destination=destination,
        )
        await self.runtime.send(destination, message)
        return message

    async def receive(self, destination: str, timeout: float = 2.0) -> Message:
        """The next message published to ``destination`` not yet received here.

        On a broker a destination that is not watched yet is watched from now on.
        Fails with an :class:`AssertionError` when none arrives within ``timeout``.
        """
        await self.watch(destination)
        await self.wait_for(
            lambda: len(self._published.get(destination, ())) > self._cursors[destination],
            timeout=timeout,
            what=f"a message on {destination!r}",
        )
        message = self._published[destination][self._cursors[destination]]
        self._cursors[destination] += 1
        return message

    async def watch(self, destination: str) -> None:
        """Record what is published to ``destination`` from now on (no-op in memory,
        where everything is recorded, and for a destination already watched)."""
        binder_name = resolve_dynamic(destination, self.runtime.settings).binder
        if binder_name in self._listened or destination in self._watched:
            return
        observer = self._observers.get(binder_name)
        if observer is None:
            observer = await self._observer(binder_name)
        group = None if observer.capabilities.anonymous_subscribers else _fresh("harness")

        async def record(message: Message) -> None:
            self._record(destination, message)

        type_name = self.runtime.settings.binders[binder_name].type
        options = self._registry.get(type_name).validate_binding_options({}, "consumer")
        spec = ConsumerSpec(
            binding=f"harness:{destination}", destination=destination, group=group, options=options
        )
        self._watched[destination] = await consume(observer, spec, record)

    async def wait_for(
        self, condition: Callable[[], object], timeout: float = 2.0, what: str = "condition"
    ) -> None:
        """Wait until ``condition()`` holds, looking again on every publish recorded.

        Fails with an :class:`AssertionError` naming ``what`` after ``timeout``.
        """
        await wait_until(condition, timeout, what, changed=self._changed)

    async def wait_handled(self, count: int, timeout: float = 2.0) -> None:
        """Wait until the app finished ``count`` messages in total."""
        await self.wait_for(lambda: self.handled >= count, timeout, f"{count} handled message(s)")

    async def poll(self, supplier: str) -> Any:
        """Call supplier ``supplier`` once now and publish what it returns."""
        return await self.runtime.poll_supplier(supplier)

    # -- recording ---------------------------------------------------------------------

    def _record(self, destination: str, message: Message) -> None:
        self._published[destination].append(message.copy())
        self._changed.set()

    def _record_dead_letter(
        self, destination: str, group: str | None
    ) -> Callable[[Message, Failure], None]:
        def record(message: Message, failure: Failure) -> None:
            dead = message.copy(delivery_attempt=1)
            dead.headers.update(failure.headers())
            self._dead[(destination, group)].append(dead)
            self._changed.set()

        return record

    def _listen(self, name: str, binder: Binder) -> None:
        """Record every publish on ``binder`` when it can report them (in memory)."""
        add_listener = getattr(binder, "add_publish_listener", None)
        if add_listener is None:
            return
        self._listened.add(name)
        if not any(b is binder for b in self._listening):  # one binder for several names
            self._listening.append(binder)
            self._removers.append(add_listener(self._record))

    async def _observer(self, binder_name: str) -> Binder:
        """A started binder of the harness's own, configured like ``binder_name``."""
        config = self.runtime.settings.binders[binder_name]
        observer = self._registry.create(f"{binder_name}-harness", config.type, config.settings)
        await observer.start()
        self._observers[binder_name] = observer
        return observer

    async def _watch_outputs(self) -> None:
        """Watch the destinations of the app's producer bindings (before it starts)."""
        for binding in self.runtime.bindings.values():
            if binding.direction == "producer" and binding.binder not in self._listened:
                await self.watch(binding.destination)

    def _attach_dead_letters(self) -> None:
        for consumer in self.runtime.consumers.values():
            if consumer.dispatcher is not None:
                settings = consumer.settings
                consumer.dispatcher.dead_letter_listeners.append(
                    self._record_dead_letter(settings.destination, settings.group)
                )

    async def _close(self) -> None:
        for remove in self._removers:
            remove()
        for watcher in self._watched.values():
            with contextlib.suppress(Exception):
                await watcher.close()
        for observer in self._observers.values():
            with contextlib.suppress(Exception):
                await observer.close()


class _Lent:
    """A binder the test lent to the run: the runtime uses it but does not close it."""

    def __init__(self, inner: Binder) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def close(self) -> None:
        """The test closes the real binder."""


def _fresh(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@contextlib.asynccontextmanager
async def run_app(
    app: App,
    config: str | Path | Mapping[str, Any] | None = None,
    *,
    suppliers: bool = True,
    in_memory: bool = False,
    binders: Mapping[str, Binder] | None = None,
    record: bool = True,
    registry: BinderRegistry | None = None,
) -> AsyncIterator[Harness]:
    """Run ``app`` on the binders its configuration names; yield a :class:`Harness`.

    ``config`` (a file path or a mapping) supplies binders, destinations, groups,
    retry settings and the rest; without it, or without binders in it, the app runs on
    the in-memory binder.  The working directory's ``binder.yaml`` and ``EVENTBINDER_*``
    variables are not read.

    * ``in_memory``: every binding runs on one in-memory binder whatever binders the
      configuration names (their settings are still validated).
    * ``binders``: already started binders to use for the binder names given; the run
      does not close them (tests sharing a binder with the app).
    * ``record=False``: watch and record nothing (for measurements).
    * ``suppliers=False``: suppliers do not run on their schedule; call
      :meth:`Harness.poll` instead.

    Leaving the block stops the app gracefully and closes the harness's subscriptions.
    """
    registry = registry or load_registry()
    settings = load_settings(config, registry=registry, discover=False, environ={})
    lent = dict(binders or {})
    memory: Binder | None = None

    def create(binder_config: BinderConfig) -> Binder:
        nonlocal memory
        if binder_config.name in lent:
            return _Lent(lent[binder_config.name])
        if in_memory:
            if memory is None:
                memory_type = registry.get(MEMORY)
                memory = memory_type.create(MEMORY, memory_type.validate_settings({}))
            return memory
        return registry.create(binder_config.name, binder_config.type, binder_config.settings)

    harness: Harness | None = None

    def factory(binder_config: BinderConfig) -> Binder:
        binder = create(binder_config)
        if harness is not None and record:
            harness._listen(binder_config.name, binder)
        return binder

    runtime = Runtime(
        app,
        settings,
        registry,
        binder_factory=factory,
        start_suppliers=suppliers,
        connect_backoff=Backoff(0.1, 2.0, 1.0),
        drain_timeout=10.0,
        fail_fast=True,
    )
    harness = Harness(app, runtime, registry)
    try:
        if record:
            # Binders that report every publish are known once created: create them
            # now, so that only the others get subscriptions of the harness's own.
            for name in sorted({b.binder for b in runtime.bindings.values()}):
                if name not in runtime.binders:
                    runtime.binders[name] = factory(settings.binders[name])
            await harness._watch_outputs()
        await runtime.start()
        if record:
            harness._attach_dead_letters()
        try:
            yield harness
        finally:
            await runtime.stop()
    finally:
        await harness._close()
