"""Start, provision, bind consumers to the delivery engine, run suppliers, drain, stop."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from binder.app import App, HandlerDecl
from binder.backoff import Backoff
from binder.bindings import BindingSettings
from binder.config import BinderConfig, Settings
from binder.dispatch import (
    BindingStats,
    CallThreads,
    Dispatcher,
    DispatchPlan,
    HandlerCall,
    LoopWatchdog,
    RetryPolicy,
    create_dispatcher,
)
from binder.errors import BinderError, ConfigError, NotRunningError, UnsupportedFeature
from binder.output import OutputPort
from binder.plugins import BinderRegistry
from binder.redaction import redact_url
from binder.resolve import resolve_bindings, resolve_dynamic
from binder.spi import Binder, ConsumerBinding, ConsumerSpec, ProducerSpec

__all__ = ["BindingRuntime", "ConnectError", "Runtime"]

log = logging.getLogger("binder.runtime")

BinderFactory = Callable[[BinderConfig], Binder]
#: Waits between attempts to reach a broker at start: 0.5 s doubling up to 30 s.
CONNECT_BACKOFF = Backoff(0.5, 2.0, 30.0)


class ConnectError(BinderError):
    """A binder could not reach its broker and ``fail_fast`` was asked for."""


@dataclass(slots=True)
class BindingRuntime:
    """A consumer binding at run time: what plugin middleware hooks receive."""

    settings: BindingSettings
    handler: HandlerDecl
    stats: BindingStats = field(default_factory=BindingStats)
    status: str = "pending"
    binding: ConsumerBinding | None = None
    dispatcher: Dispatcher | None = None
    """The delivery engine of this binding (set once it is bound)."""


class Runtime:
    """Runs one :class:`App` against the binders its configuration selects."""

    def __init__(
        self,
        app: App,
        settings: Settings,
        registry: BinderRegistry,
        *,
        binder_factory: BinderFactory | None = None,
        fail_fast: bool = False,
        max_messages: int | None = None,
        start_suppliers: bool = True,
        connect_backoff: Backoff = CONNECT_BACKOFF,
        drain_timeout: float = 30.0,
    ) -> None:
        self.app = app
        self.settings = settings
        self.registry = registry
        self.bindings = resolve_bindings(app, settings)
        self.fail_fast = fail_fast
        self.max_messages = max_messages
        self.start_suppliers = start_suppliers
        self.drain_timeout = drain_timeout
        self.binders: dict[str, Binder] = {}
        self.consumers: dict[str, BindingRuntime] = {}
        self.outputs: dict[str, OutputPort] = {}
        self.handled = 0
        self.done = asyncio.Event()
        """Set when ``max_messages`` were handled (the caller decides to stop)."""
        self._stopping = asyncio.Event()
        self._factory = binder_factory or self._create_binder
        self._connect_backoff = connect_backoff
        self._dynamic: dict[str, OutputPort] = {}
        self._dynamic_lock = asyncio.Lock()
        self._supplier_tasks: list[asyncio.Task[None]] = []
        self._supplier_threads: dict[str, CallThreads] = {}
        self._watchdog = LoopWatchdog(float(settings.runtime.get("blocked_loop_warning", 1.0)))
        self._binder_status: dict[str, str] = {}
        self._started = False
        self._stopped = False

    # -- start ---------------------------------------------------------------------

    def _create_binder(self, config: BinderConfig) -> Binder:
        return self.registry.get(config.type).create(config.name, config.settings)

    def _binder_type(self, binder_name: str) -> str:
        return self.settings.binders[binder_name].type

    async def start(self) -> None:
        """Connect, provision, bind every binding and start the suppliers."""
        if self._started:
            return
        self._started = True
        self.app._runtime = self
        try:
            for hook in self.app.startup_hooks:
                await _call_hook(hook)
            names = {b.binder for b in self.bindings.values()} | {self.settings.default_binder}
            for name in sorted(names):
                if name not in self.binders:  # App.send in a startup hook may have made it
                    self.binders[name] = self._factory(self.settings.binders[name])
            await asyncio.gather(*(self._connect(name) for name in sorted(names)))
            await self._provision()
            await self._bind_outputs()
            self._watch_handlers()
            await self._bind_inputs()
            if self.start_suppliers:
                self._start_suppliers()
            self.registry.hook.binder_runtime_started(runtime=self)
        except BaseException:
            await self.stop()
            raise
        log.info("app %s running with %d binding(s)", self.app.name, len(self.bindings))

    def _watch_handlers(self) -> None:
        for decl in self.app.handlers.values():
            if decl.input is not None:
                code = getattr(decl.invoker.function, "__code__", None)
                if code is not None:
                    self._watchdog.handlers[code] = decl.input.name
        self._watchdog.start()

    async def _connect(self, name: str) -> None:
        binder = self.binders[name]
        attempt = 0
        while True:
            try:
                await binder.start()
            except Exception as exc:
                reason = redact_url(f"{type(exc).__name__}: {exc}")
                if self.fail_fast:
                    raise ConnectError(
                        f"binder {name!r} cannot reach its broker: {reason}"
                    ) from None
                attempt += 1
                delay = self._connect_backoff.delay(attempt)
                self._set_status(name, f"waiting for broker (attempt {attempt}): {reason}")
                log.warning(
                    "binder %s: cannot reach broker (%s); retrying in %.1fs", name, reason, delay
                )
                await asyncio.sleep(delay)
            else:
                if attempt:
                    log.info("binder %s: connected after %d failed attempt(s)", name, attempt)
                self._set_status(name, "connected")
                return

    def _set_status(self, binder_name: str, status: str) -> None:
        # Bindings not bound yet report their binder's state (see status()).
        self._binder_status[binder_name] = status

    async def _provision(self) -> None:
        for binding in self.bindings.values():
            binder = self.binders[binding.binder]
            options = binding.options_for(self._binder_type(binding.binder))
            group = binding.group if binding.direction == "consumer" else None
            await binder.provision(binding.destination, group, options)

    def _required_groups(self, producer: BindingSettings) -> tuple[str, ...]:
        return tuple(
            sorted(
                {
                    b.group
                    for b in self.bindings.values()
                    if b.direction == "consumer"
                    and b.group is not None
                    and b.binder == producer.binder
                    and b.destination == producer.destination
                }
            )
        )

    async def _bind_producer(self, binding: BindingSettings) -> OutputPort:
        binder = self.binders[binding.binder]
        if binding.partition_count > 1 and not binder.capabilities.partitioning:
            raise UnsupportedFeature(
                f"binding {binding.name!r}: partition_count={binding.partition_count} but the "
                f"{binding.binder} binder does not support partitioning"
            )
        spec = ProducerSpec(
            binding=binding.name,
            destination=binding.destination,
            partition_count=binding.partition_count,
            required_groups=self._required_groups(binding),
            options=binding.options_for(self._binder_type(binding.binder)),
        )
        return OutputPort(binding, await binder.bind_producer(spec))

    async def _bind_outputs(self) -> None:
        for decl in self.app.handlers.values():
            if decl.output is not None:
                binding = self.bindings[decl.output.name]
                self.outputs[decl.name] = await self._bind_producer(binding)

    async def _bind_inputs(self) -> None:
        for decl in self.app.handlers.values():
            if decl.input is None:
                continue
            settings = self.bindings[decl.input.name]
            runtime = BindingRuntime(settings, decl)
            self.consumers[settings.name] = runtime
            await self._bind_consumer(runtime)

    def _check_capabilities(self, settings: BindingSettings, binder: Binder) -> None:
        caps = binder.capabilities
        problem = None
        if settings.group is not None and not caps.consumer_groups:
            problem = f"group {settings.group!r} set but the binder has no consumer groups"
        elif settings.group is None and not caps.anonymous_subscribers:
            problem = "no group set but the binder has no anonymous subscribers; set a group"
        elif settings.instance_count > 1 and not caps.partitioning:
            problem = "instance_count > 1 but the binder does not support partitioning"
        if problem:
            raise UnsupportedFeature(f"binding {settings.name!r} ({settings.binder}): {problem}")

    async def _bind_consumer(self, runtime: BindingRuntime) -> None:
        settings = runtime.settings
        binder = self.binders[settings.binder]
        self._check_capabilities(settings, binder)
        decl = runtime.handler
        plugin_middleware = tuple(
            m for m in self.registry.hook.binder_consumer_middleware(binding=runtime) if m
        )
        dead_letter: str | None
        if settings.dead_letter is False:
            dead_letter = None
        elif isinstance(settings.dead_letter, str):
            dead_letter = settings.dead_letter
        else:
            try:
                dead_letter = binder.dead_letter_destination(settings.destination, settings.group)
            except ConfigError as exc:
                if exc.key is not None:
                    raise
                key = f"bindings.{settings.name}.dead_letter"
                raise self.settings.error(exc.reason, key) from None
        plan = DispatchPlan(
            binding=settings.name,
            destination=settings.destination,
            group=settings.group,
            call=HandlerCall(decl.invoker, self.outputs.get(decl.name)),
            retry=RetryPolicy(
                settings.max_attempts,
                settings.backoff_initial,
                settings.backoff_multiplier,
                settings.backoff_max,
            ),
            concurrency=settings.concurrency,
            window=settings.prefetch,
            threaded=decl.invoker.threaded,
            middleware=plugin_middleware,
            dead_letter=dead_letter,
        )
        dispatcher = create_dispatcher(plan, stats=runtime.stats, on_handled=self._on_handled)
        runtime.dispatcher = dispatcher
        spec = ConsumerSpec(
            binding=settings.name,
            destination=settings.destination,
            group=settings.group,
            concurrency=settings.concurrency,
            prefetch=settings.prefetch,
            partitioned=settings.instance_count > 1,
            instance_index=settings.instance_index,
            instance_count=settings.instance_count,
            dead_letter=dead_letter,
            options=settings.options_for(self._binder_type(settings.binder)),
        )
        try:
            runtime.binding = await binder.bind_consumer(spec, dispatcher)
        except BaseException as exc:
            dispatcher.fail_attach(exc)
            await dispatcher.close()
            raise
        dispatcher.attach(runtime.binding)
        runtime.status = "running"

    def _start_suppliers(self) -> None:
        for decl in self.app.handlers.values():
            if decl.kind == "supplier":
                task = asyncio.create_task(self._run_supplier(decl), name=f"supplier:{decl.name}")
                self._supplier_tasks.append(task)

    async def _call_supplier(self, decl: HandlerDecl) -> Any:
        """Call a supplier: ``async def`` on the loop, ``def`` in a thread of its own."""
        function = decl.invoker.function
        if decl.invoker.is_async:
            return await function()
        if not decl.invoker.threaded:
            return function()
        threads = self._supplier_threads.get(decl.name)
        if threads is None:
            threads = self._supplier_threads[decl.name] = CallThreads(
                1, f"eventbinder:supplier:{decl.name}"
            )
        return await threads.call(function)

    async def _run_supplier(self, decl: HandlerDecl) -> None:
        loop = asyncio.get_running_loop()
        output = self.outputs[decl.name]
        assert decl.every is not None
        deadline = loop.time()
        while not self._stopping.is_set():
            try:
                value = await self._call_supplier(decl)
                if value is not None:
                    await output.publish(value)
            except Exception:
                log.exception("supplier %s failed; trying again in %.2fs", decl.name, decl.every)
            deadline += decl.every
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), max(0.0, deadline - loop.time()))

    async def poll_supplier(self, name: str) -> Any:
        """Call supplier ``name`` once now and publish its result; return the value."""
        decl = self.app.handlers[name]
        if decl.kind != "supplier":
            raise ValueError(f"{name!r} is a {decl.kind}, not a supplier")
        value = await self._call_supplier(decl)
        if value is not None:
            await self.outputs[name].publish(value)
        return value

    def _on_handled(self) -> None:
        self.handled += 1
        if self.max_messages is not None and self.handled >= self.max_messages:
            self.done.set()

    # -- dynamic destinations --------------------------------------------------------

    def send(
        self,
        destination: str,
        payload: Any,
        *,
        headers: Mapping[str, str] | None = None,
        key: str | None = None,
        content_type: str | None = None,
    ) -> asyncio.Future[None]:
        """Publish to ``destination`` through a producer bound on first use.

        Returns a future resolved once the broker confirmed the message (see
        :meth:`binder.App.send`); messages sent one after another go out in order.
        """
        if not self._started or self._stopped:
            raise NotRunningError(f"app {self.app.name!r} is not running")
        port = self._dynamic.get(destination)
        if port is None:
            return asyncio.ensure_future(
                self._send_first(destination, payload, headers, key, content_type)
            )
        return port.send(payload, headers=headers, key=key, content_type=content_type)

    async def _send_first(
        self,
        destination: str,
        payload: Any,
        headers: Mapping[str, str] | None,
        key: str | None,
        content_type: str | None,
    ) -> None:
        # Sends racing the first bind queue on the lock (FIFO), so they keep their order.
        async with self._dynamic_lock:
            port = self._dynamic.get(destination)
            if port is None:
                settings = resolve_dynamic(destination, self.settings)
                if settings.binder not in self.binders:
                    self.binders[settings.binder] = self._factory(
                        self.settings.binders[settings.binder]
                    )
                    await self._connect(settings.binder)
                port = await self._bind_producer(settings)
                self._dynamic[destination] = port
            confirmed = port.send(payload, headers=headers, key=key, content_type=content_type)
        await confirmed

    # -- status ----------------------------------------------------------------------

    def status(self) -> dict[str, str]:
        """Each binding's state: "pending", "waiting for broker ...", "running", ..."""
        states: dict[str, str] = {}
        bound_outputs = {port.settings.name for port in self.outputs.values()}
        for name, binding in self.bindings.items():
            consumer = self.consumers.get(name)
            if consumer is not None:
                states[name] = consumer.status
            elif self._stopped:
                states[name] = "stopped"
            elif name in bound_outputs:
                states[name] = "running"
            else:
                states[name] = self._binder_status.get(binding.binder, "pending")
        return states

    # -- stop ------------------------------------------------------------------------

    async def stop(self) -> None:
        """Stop taking messages, finish in-flight handlers, flush producers, close."""
        if self._stopped or not self._started:
            return
        self._stopped = True
        self._stopping.set()
        for impl in self.registry.hook.binder_runtime_stopping.get_hookimpls():
            try:
                impl.function(runtime=self)
            except Exception:
                log.exception("binder_runtime_stopping hook of %s failed", impl.plugin_name)
        for task in self._supplier_tasks:
            task.cancel()
        await asyncio.gather(*self._supplier_tasks, return_exceptions=True)
        for threads in self._supplier_threads.values():
            threads.close()
        consumers = list(self.consumers.values())
        for runtime in consumers:
            if runtime.dispatcher is not None:
                runtime.dispatcher.stop_intake()
        await asyncio.gather(*(self._stop_consumer(r) for r in consumers))
        self._watchdog.stop()
        ports = [*self.outputs.values(), *self._dynamic.values()]
        await self._bounded(
            "flushing producers",
            asyncio.gather(*(p.close() for p in ports), return_exceptions=True),
        )
        await self._bounded(
            "closing binders",
            asyncio.gather(*(b.close() for b in self.binders.values()), return_exceptions=True),
        )
        for hook in self.app.shutdown_hooks:
            try:
                await _call_hook(hook)
            except Exception:
                log.exception("shutdown hook %s failed", getattr(hook, "__name__", hook))
        if self.app._runtime is self:
            self.app._runtime = None
        log.info("app %s stopped after %d message(s)", self.app.name, self.handled)

    async def _stop_consumer(self, runtime: BindingRuntime) -> None:
        """Drain the binding's engine (handlers and unconfirmed outputs), then close it."""
        dispatcher = runtime.dispatcher
        if dispatcher is not None:
            runtime.status = "stopping"
            await dispatcher.drain(self.drain_timeout)
        if runtime.binding is not None:
            what = f"closing consumer {runtime.settings.name}"
            await self._bounded(what, _gather(runtime.binding.close()))
        if dispatcher is not None:
            await dispatcher.close()
        runtime.status = "stopped"

    async def _bounded(self, what: str, work: Awaitable[Any]) -> None:
        try:
            results = await asyncio.wait_for(work, self.drain_timeout)
        except TimeoutError:
            log.error("%s took longer than %.0fs; giving up on it", what, self.drain_timeout)
            return
        for result in results or ():
            if isinstance(result, BaseException):
                log.error("%s: %s: %s", what, type(result).__name__, redact_url(str(result)))


async def _gather(*work: Awaitable[Any]) -> list[Any]:
    return list(await asyncio.gather(*work, return_exceptions=True))


async def _call_hook(hook: Callable[[], Any]) -> None:
    result = hook()
    if inspect.isawaitable(result):
        await result
