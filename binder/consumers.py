"""A consumer binding's life at run time: assembled, bound, attached, drained, closed.

:func:`bind_consumer` turns a resolved consumer binding into a running one: it checks
the binder can serve it, asks the plugins for middleware, resolves the dead-letter
destination, builds the :class:`~binder.dispatch.DispatchPlan` (handler call, retry
policy, middleware, concurrency and prefetch) and its dispatcher, binds the binding
with the binder and attaches the dispatcher to it.  :func:`stop_consumers` stops them:
no more intake, drain, close the binding, close the dispatcher.  A
:class:`BindingRuntime` is one such binding's state (what plugin middleware hooks get).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from binder.bindings import BindingSettings
from binder.dispatch import (
    BindingStats,
    Dispatcher,
    DispatchPlan,
    HandlerCall,
    RetryPolicy,
    create_dispatcher,
)
from binder.errors import ConfigError, UnsupportedFeature
from binder.middleware import Middleware
from binder.shutdown import bounded, settle
from binder.spi import Binder, ConsumerBinding, ConsumerSpec
from binder.tracing import Tracing, messaging_system

if TYPE_CHECKING:
    from binder.app import HandlerDecl
    from binder.config import Settings
    from binder.output import OutputPort

__all__ = ["BindingRuntime", "MiddlewareHook", "bind_consumer", "stop_consumers"]


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


#: Asks the plugins for a binding's middleware (the ``binder_consumer_middleware``
#: hook); ``None`` results are left out.
MiddlewareHook = Callable[[BindingRuntime], Iterable[Middleware | None]]


async def bind_consumer(
    runtime: BindingRuntime,
    binder: Binder,
    *,
    config: Settings,
    output: OutputPort | None,
    middleware: MiddlewareHook,
    on_handled: Callable[[], None],
    tracing: Tracing | None = None,
) -> None:
    """Bind ``runtime``'s binding with ``binder`` and attach its delivery engine.

    ``config`` is the application's configuration (the binder's type and the location
    of errors), ``output`` the port a function handler publishes its results to, and
    ``on_handled`` is called for every message the binding finished; ``tracing`` makes
    a span of every delivery.  On failure the engine is closed again and the error
    raised.
    """
    settings = runtime.settings
    _check_capabilities(settings, binder)
    decl = runtime.handler
    plugin_middleware = tuple(m for m in middleware(runtime) if m)
    dead_letter = _dead_letter_destination(settings, binder, config)
    plan = DispatchPlan(
        binding=settings.name,
        destination=settings.destination,
        group=settings.group,
        call=HandlerCall(decl.invoker, output),
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
        tracing=tracing,
        system=messaging_system(config.binders[settings.binder].type),
    )
    dispatcher = create_dispatcher(plan, stats=runtime.stats, on_handled=on_handled)
    runtime.dispatcher = dispatcher
    spec = ConsumerSpec(
        binding=settings.name,
        destination=settings.destination,
        group=settings.group,
        concurrency=settings.concurrency,
        prefetch=settings.prefetch,
        instance_index=settings.instance_index,
        instance_count=settings.instance_count,
        dead_letter=dead_letter,
        options=settings.options_for(config.binders[settings.binder].type),
    )
    try:
        runtime.binding = await binder.bind_consumer(spec, dispatcher)
    except BaseException as exc:
        dispatcher.fail_attach(exc)
        await dispatcher.close()
        if isinstance(exc, ConfigError):
            raise config.locate(exc, f"bindings.{settings.name}") from None
        raise
    dispatcher.attach(runtime.binding)
    runtime.status = "running"


def _check_capabilities(settings: BindingSettings, binder: Binder) -> None:
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


def _dead_letter_destination(
    settings: BindingSettings, binder: Binder, config: Settings
) -> str | None:
    """``dead_letter`` as configured: off, a destination, or the binder's default."""
    if settings.dead_letter is False:
        return None
    if isinstance(settings.dead_letter, str):
        return settings.dead_letter
    try:
        return binder.dead_letter_destination(settings.destination, settings.group)
    except ConfigError as exc:
        raise config.locate(exc, f"bindings.{settings.name}.dead_letter") from None


async def stop_consumers(consumers: Iterable[BindingRuntime], drain_timeout: float) -> None:
    """Stop every binding's intake, then drain and close them all concurrently.

    Draining (in-flight handlers and their unconfirmed outputs) and closing each
    binding are each bounded by ``drain_timeout`` seconds.
    """
    consumers = list(consumers)
    for runtime in consumers:
        if runtime.dispatcher is not None:
            runtime.dispatcher.stop_intake()
    await asyncio.gather(*(_stop_consumer(r, drain_timeout) for r in consumers))


async def _stop_consumer(runtime: BindingRuntime, drain_timeout: float) -> None:
    """Drain the binding's engine (handlers and unconfirmed outputs), then close it."""
    dispatcher = runtime.dispatcher
    if dispatcher is not None:
        runtime.status = "stopping"
        await dispatcher.drain(drain_timeout)
    if runtime.binding is not None:
        what = f"closing consumer {runtime.settings.name}"
        await bounded(what, settle(runtime.binding.close()), drain_timeout)
    if dispatcher is not None:
        await dispatcher.close()
    runtime.status = "stopped"
