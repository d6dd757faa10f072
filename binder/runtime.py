"""Running an app: start, connect with backoff, provision, bind, report status, stop.

:class:`Runtime` orchestrates; a consumer binding's assembly and shutdown live in
:mod:`binder.consumers` (with :class:`BindingRuntime`), the supplier loops in
:mod:`binder.suppliers`.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from binder.app import App
from binder.backoff import Backoff
from binder.bindings import BindingSettings
from binder.config import BinderConfig, Settings
from binder.consumers import BindingRuntime, bind_consumer, stop_consumers
from binder.dispatch import LoopWatchdog
from binder.errors import (
    AccessRefused,
    BinderError,
    BindingNotFound,
    ConfigError,
    NotRunningError,
    UnsupportedFeature,
    describe_error,
)
from binder.output import OutputPort
from binder.plugins import BinderRegistry
from binder.redaction import redact_url
from binder.resolve import resolve_bindings, resolve_dynamic
from binder.shutdown import bounded
from binder.spi import Binder, PausableBinding, ProducerSpec
from binder.suppliers import Suppliers
from binder.tracing import messaging_system, tracing_for

__all__ = ["BindingRuntime", "ConnectError", "Runtime"]

log = logging.getLogger("binder.runtime")

BinderFactory = Callable[[BinderConfig], Binder]
#: Waits between attempts to reach a broker at start: 0.5 s doubling up to 30 s.
CONNECT_BACKOFF = Backoff(0.5, 2.0, 30.0)


class ConnectError(BinderError):
    """A binder could not start: its broker refused access (see
    :class:`~binder.errors.AccessRefused`), or it was unreachable and ``fail_fast``
    was asked for."""


class Runtime:
    """Runs one :class:`App` against the binders its configuration selects.

    ``strict_bindings=False`` accepts configured handler bindings the app does not
    declare (for tools that use another app's file; see
    :func:`binder.resolve.check_configured_bindings`).
    """

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
        strict_bindings: bool = True,
    ) -> None:
        self.app = app
        self.settings = settings
        self.registry = registry
        self.bindings = resolve_bindings(app, settings, strict=strict_bindings)
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
        self._factory = binder_factory or self._create_binder
        self._connect_backoff = connect_backoff
        self._dynamic: dict[str, OutputPort] = {}
        self._dynamic_lock = asyncio.Lock()
        self._binding_tasks: set[asyncio.Future[None]] = set()
        # Destination -> sends made while its producer binds, sent in order once bound.
        self._waiting_sends: dict[str, list[_WaitingSend]] = {}
        self._suppliers = Suppliers(app.handlers, self.outputs)
        self._watchdog = LoopWatchdog(float(settings.runtime["blocked_loop_warning"]))
        #: Spans of sends and deliveries (``runtime.tracing``), else None.
        self.tracing = tracing_for(bool(settings.runtime["tracing"]))
        self._binder_status: dict[str, str] = {}
        self._started = False
        self._running = False
        self._stopped = False

    # -- start ---------------------------------------------------------------------

    def _create_binder(self, config: BinderConfig) -> Binder:
        return self.registry.create(config.name, config.type, config.settings)

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
                self._suppliers.start()
            self.registry.hook.binder_runtime_started(runtime=self)
        except BaseException:
            await self.stop()
            raise
        self._running = True
        if self.bindings:
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
                reason = redact_url(describe_error(exc))
                refused = isinstance(exc, AccessRefused)
                if refused and not self.settings.runtime["retry_access_refused"]:
                    raise ConnectError(
                        f"binder {name!r}: the broker refused access: {reason}"
                    ) from None
                if not refused and self.fail_fast:
                    raise ConnectError(
                        f"binder {name!r} cannot reach its broker: {reason}"
                    ) from None
                attempt += 1
                delay = self._connect_backoff.delay(attempt)
                state = "refused by broker" if refused else "waiting for broker"
                self._set_status(name, f"{state} (attempt {attempt}): {reason}")
                log.warning(
                    "binder %s: %s (%s); retrying in %.1fs",
                    name,
                    "refused by broker" if refused else "cannot reach broker",
                    reason,
                    delay,
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

    async def _provision(self, only: Callable[[BindingSettings], bool] | None = None) -> None:
        for binding in self.bindings.values():
            if only is not None and not only(binding):
                continue
            binder = self.binders[binding.binder]
            options = binding.options_for(self._binder_type(binding.binder))
            group = binding.group if binding.direction == "consumer" else None
            try:
                await binder.provision(binding.destination, group, options)
            except ConfigError as exc:
                raise self.settings.locate(exc, f"bindings.{binding.name}") from None

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
            required_groups=tuple(sorted(binding.required_groups)),
            options=binding.options_for(self._binder_type(binding.binder)),
        )
        try:
            producer = await binder.bind_producer(spec)
        except ConfigError as exc:
            raise self.settings.locate(exc, f"bindings.{binding.name}") from None
        system = messaging_system(self._binder_type(binding.binder))
        return OutputPort(binding, producer, tracing=self.tracing, system=system)

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
            await self._bind_input(runtime)

    async def _bind_input(self, runtime: BindingRuntime) -> None:
        await bind_consumer(
            runtime,
            self.binders[runtime.settings.binder],
            config=self.settings,
            output=self.outputs.get(runtime.handler.name),
            middleware=self._plugin_middleware,
            on_handled=self._on_handled,
            tracing=self.tracing,
        )

    # -- bindings control ------------------------------------------------------------

    async def control(self, name: str, action: str) -> str:
        """``stop``, ``start``, ``pause`` or ``resume`` consumer binding ``name`` (as
        Spring's bindings endpoint does); return its state afterwards.

        *pause* starts no more handlers and fetches no more (the binding stays
        subscribed, a member of its group; messages wait unacknowledged); *resume*
        undoes it. *stop* drains the binding and closes it (it leaves its group);
        *start* binds it again. An action that does not apply to the binding's state
        (pausing a stopped binding, say) changes nothing. Raises
        :class:`~binder.errors.BindingNotFound` for an unknown binding and
        :class:`~binder.errors.UnsupportedFeature` for a producer binding or an
        unknown action.
        """
        if name not in self.bindings:
            known = ", ".join(sorted(self.bindings)) or "none"
            raise BindingNotFound(f"no binding {name!r}; the app's bindings: {known}")
        consumer = self.consumers.get(name)
        if consumer is None:
            raise UnsupportedFeature(
                f"binding {name!r} publishes: only consumer bindings can be stopped, "
                "started, paused or resumed"
            )
        if action not in CONTROL_ACTIONS:
            raise UnsupportedFeature(
                f"unknown action {action!r}; one of: {', '.join(CONTROL_ACTIONS)}"
            )
        if not self.running:
            raise NotRunningError(f"app {self.app.name!r} is not running")
        act = {
            "stop": self._stop_binding,
            "start": self._start_binding,
            "pause": self._pause,
            "resume": self._resume,
        }[action]
        await act(consumer)
        log.info("binding %s: %s, now %s", name, action, consumer.status)
        return consumer.status

    async def _pause(self, consumer: BindingRuntime) -> None:
        if consumer.status == "running" and consumer.dispatcher is not None:
            consumer.dispatcher.pause()
            if isinstance(consumer.binding, PausableBinding):
                consumer.binding.pause()
            consumer.status = "paused"

    async def _resume(self, consumer: BindingRuntime) -> None:
        if consumer.status == "paused" and consumer.dispatcher is not None:
            if isinstance(consumer.binding, PausableBinding):
                consumer.binding.resume()
            consumer.dispatcher.resume()
            consumer.status = "running"

    async def _stop_binding(self, consumer: BindingRuntime) -> None:
        if consumer.status in ("running", "paused"):
            await stop_consumers([consumer], self.drain_timeout)

    async def _start_binding(self, consumer: BindingRuntime) -> None:
        if consumer.status == "stopped":
            consumer.binding = consumer.dispatcher = None
            await self._bind_input(consumer)

    def _plugin_middleware(self, binding: BindingRuntime) -> list[Any]:
        return list(self.registry.hook.binder_consumer_middleware(binding=binding))

    async def poll_supplier(self, name: str) -> Any:
        """Call supplier ``name`` once now and publish its result; return the value."""
        return await self._suppliers.poll(name)

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
        if port is not None:
            return port.send(payload, headers=headers, key=key, content_type=content_type)
        # The first send binds the producer; sends made meanwhile wait in a list that is
        # sent, in order, in the same loop step as the producer becomes visible here, so
        # no later send can overtake them.
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiting = self._waiting_sends.get(destination)
        if waiting is None:
            waiting = self._waiting_sends[destination] = []
            task = asyncio.ensure_future(self._bind_and_send(destination))
            self._binding_tasks.add(task)
            task.add_done_callback(self._binding_tasks.discard)
        waiting.append(_WaitingSend(payload, headers, key, content_type, future))
        return future

    async def _bind_and_send(self, destination: str) -> None:
        try:
            async with self._dynamic_lock:
                port = await self._bind_dynamic(destination)
        except BaseException as exc:
            cancelled = isinstance(exc, asyncio.CancelledError)
            for send in self._waiting_sends.pop(destination, []):
                if send.future.done():
                    continue
                if cancelled:
                    send.future.cancel()
                else:
                    send.future.set_exception(exc)
            if cancelled:
                raise
            return
        # From here to the end, no await: the waiting sends go out before any new one.
        self._dynamic[destination] = port
        for send in self._waiting_sends.pop(destination, []):
            try:
                confirmed = port.send(
                    send.payload,
                    headers=send.headers,
                    key=send.key,
                    content_type=send.content_type,
                )
            except Exception as exc:
                send.future.set_exception(exc)
            else:
                confirmed.add_done_callback(functools.partial(_settle_like, send.future))

    async def _bind_dynamic(self, destination: str) -> OutputPort:
        """The producer of a destination no binding declares, bound now (under the lock)."""
        port = self._dynamic.get(destination)
        if port is None:
            settings = resolve_dynamic(destination, self.settings)
            if settings.binder not in self.binders:
                self.binders[settings.binder] = self._factory(
                    self.settings.binders[settings.binder]
                )
                await self._connect(settings.binder)
            if not self._running:
                # A startup hook sends before the app is provisioned: create the
                # storage of the app's own groups of this destination first.
                await self._provision(
                    lambda b: (
                        b.direction == "consumer"
                        and b.binder == settings.binder
                        and b.destination == settings.destination
                    )
                )
            port = await self._bind_producer(settings)
        return port

    # -- status ----------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """True from the end of :meth:`start` until :meth:`stop` begins."""
        return self._running and not self._stopped

    def output_ports(self) -> list[OutputPort]:
        """Every bound producer: the handlers' outputs, then destinations sent to."""
        ports = list(self.outputs.values())
        return ports + [p for p in self._dynamic.values() if p not in ports]

    def binder_status(self) -> dict[str, str]:
        """Each binder's connection state at start: "connected", "waiting for broker
        (...)", "refused by broker (...)"; see also the binders' ``connections()``."""
        return dict(self._binder_status)

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
        for impl in self.registry.hook.binder_runtime_stopping.get_hookimpls():
            try:
                impl.function(runtime=self)
            except Exception:
                log.exception("binder_runtime_stopping hook of %s failed", impl.plugin_name)
        await self._suppliers.stop()
        await stop_consumers(self.consumers.values(), self.drain_timeout)
        self._watchdog.stop()
        ports = [*self.outputs.values(), *self._dynamic.values()]
        await bounded(
            "flushing producers",
            asyncio.gather(*(p.close() for p in ports), return_exceptions=True),
            self.drain_timeout,
        )
        await bounded(
            "closing binders",
            asyncio.gather(*(b.close() for b in self.binders.values()), return_exceptions=True),
            self.drain_timeout,
        )
        for hook in self.app.shutdown_hooks:
            try:
                await _call_hook(hook)
            except Exception:
                log.exception("shutdown hook %s failed", getattr(hook, "__name__", hook))
        if self.app._runtime is self:
            self.app._runtime = None
        if self._running and self.bindings:
            log.info("app %s stopped after %d message(s)", self.app.name, self.handled)


#: What :meth:`Runtime.control` does.
CONTROL_ACTIONS = ("stop", "start", "pause", "resume")


async def _call_hook(hook: Callable[[], Any]) -> None:
    result = hook()
    if inspect.isawaitable(result):
        await result


@dataclass(slots=True)
class _WaitingSend:
    """A send made while the destination's producer was being bound."""

    payload: Any
    headers: Mapping[str, str] | None
    key: str | None
    content_type: str | None
    future: asyncio.Future[None]


def _settle_like(future: asyncio.Future[None], confirmed: asyncio.Future[None]) -> None:
    if future.done():
        return
    if confirmed.cancelled():
        future.cancel()
    elif confirmed.exception() is not None:
        future.set_exception(confirmed.exception())  # type: ignore[arg-type]
    else:
        future.set_result(None)
