"""``App`` and its decorators: declaration only, no I/O happens here."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeVar

from binder.bindings import BINDING_SCHEMA, input_binding_name, output_binding_name
from binder.errors import NotRunningError
from binder.invoker import Invoker
from binder.schema import did_you_mean

__all__ = ["App", "AppRuntime", "BindingDecl", "HandlerDecl"]

F = TypeVar("F", bound=Callable[..., Any])
HandlerKind = Literal["consumer", "function", "supplier"]
Hook = Callable[[], Any | Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class BindingDecl:
    """A binding as the code declares it; configuration may override every value."""

    name: str
    destination: str
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class HandlerDecl:
    """One decorated function and its bindings."""

    kind: HandlerKind
    name: str
    invoker: Invoker
    input: BindingDecl | None = None
    output: BindingDecl | None = None
    every: float | None = None


class AppRuntime(Protocol):
    """The runtime running an :class:`App`, as :attr:`App.runtime` returns it.

    Enough to send (:meth:`App.send` forwards here) and to see how the app is doing.
    :class:`binder.runtime.Runtime` is the runtime eventbinder provides, with more
    than this.
    """

    @property
    def handled(self) -> int:
        """Messages the consumer bindings finished (handled or dead-lettered)."""
        ...

    def status(self) -> dict[str, str]:
        """Each binding's state: "pending", "running", "stopped", ..."""
        ...

    def send(
        self,
        destination: str,
        payload: Any,
        *,
        headers: Mapping[str, str] | None = None,
        key: str | None = None,
        content_type: str | None = None,
    ) -> Awaitable[None]:
        """Publish to ``destination``; the awaitable completes once it is confirmed."""
        ...


def _check_options(function: str, options: Mapping[str, Any]) -> dict[str, Any]:
    for key in options:
        if key not in BINDING_SCHEMA or key in ("destination", "group"):
            allowed = [k for k in BINDING_SCHEMA if k not in ("destination", "group")]
            raise TypeError(
                f"{function}: unknown binding option {key!r}{did_you_mean(key, allowed)}"
            )
    return dict(options)


class App:
    """An event-driven service: a name plus decorated handlers.

    >>> app = App("billing")
    >>> @app.consumer("invoices", group="mailer")
    ... def mail(invoice: dict) -> None: ...
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.handlers: dict[str, HandlerDecl] = {}
        self.startup_hooks: list[Hook] = []
        self.shutdown_hooks: list[Hook] = []
        self._runtime: AppRuntime | None = None

    def _add(self, decl: HandlerDecl) -> None:
        if decl.name in self.handlers:
            raise ValueError(f"app {self.name!r} already has a handler named {decl.name!r}")
        self.handlers[decl.name] = decl

    def consumer(
        self, input: str, *, group: str | None = None, threaded: bool = True, **options: Any
    ) -> Callable[[F], F]:
        """Declare a handler for ``input``: binding ``<fn>-in-0``.

        ``group`` makes instances compete for messages; without it every instance gets
        its own copy.  ``options`` are binding settings such as ``max_attempts``.  A
        plain ``def`` handler runs in a worker thread, so it may block;
        ``threaded=False`` runs it on the event loop instead (only for tiny functions
        that never block).  ``async def`` handlers always run on the event loop.
        """

        def register(function: F) -> F:
            name = function.__name__
            opts = _check_options(name, options)
            if group is not None:
                opts["group"] = group
            self._add(
                HandlerDecl(
                    "consumer",
                    name,
                    Invoker(function, threaded=threaded),
                    input=BindingDecl(input_binding_name(name), input, opts),
                )
            )
            return function

        return register

    def function(
        self,
        input: str,
        output: str,
        *,
        group: str | None = None,
        threaded: bool = True,
        **options: Any,
    ) -> Callable[[F], F]:
        """Declare a handler whose return value is published to ``output``.

        Bindings ``<fn>-in-0`` and ``<fn>-out-0``.  Returning ``None`` publishes
        nothing; returning a :class:`binder.Message` sets headers and key yourself.
        ``threaded`` as for :meth:`consumer`.
        """

        def register(function: F) -> F:
            name = function.__name__
            opts = _check_options(name, options)
            self._add(
                HandlerDecl(
                    "function",
                    name,
                    Invoker(function, threaded=threaded),
                    input=BindingDecl(
                        input_binding_name(name),
                        input,
                        {**opts, "group": group} if group is not None else opts,
                    ),
                    output=BindingDecl(output_binding_name(name), output, opts),
                )
            )
            return function

        return register

    def supplier(
        self, output: str, *, every: float, threaded: bool = True, **options: Any
    ) -> Callable[[F], F]:
        """Declare a function polled every ``every`` seconds; binding ``<fn>-out-0``.

        Each non-``None`` return value is published to ``output``.  A plain ``def``
        supplier runs in a worker thread of its own unless ``threaded=False``.
        """
        if not (isinstance(every, int | float) and math.isfinite(every) and every > 0):
            raise ValueError(f"supplier interval must be positive, got {every!r}")

        def register(function: F) -> F:
            name = function.__name__
            opts = _check_options(name, options)
            self._add(
                HandlerDecl(
                    "supplier",
                    name,
                    Invoker(function, threaded=threaded),
                    output=BindingDecl(output_binding_name(name), output, opts),
                    every=every,
                )
            )
            return function

        return register

    def on_startup(self, hook: F) -> F:
        """Run ``hook`` (sync or async) before any binding starts."""
        self.startup_hooks.append(hook)
        return hook

    def on_shutdown(self, hook: F) -> F:
        """Run ``hook`` (sync or async) after every binding stopped."""
        self.shutdown_hooks.append(hook)
        return hook

    @property
    def runtime(self) -> AppRuntime:
        """The running runtime; raises :class:`NotRunningError` when not running."""
        if self._runtime is None:
            raise NotRunningError(f"app {self.name!r} is not running")
        return self._runtime

    def send(
        self,
        destination: str,
        payload: Any,
        *,
        headers: Mapping[str, str] | None = None,
        key: str | None = None,
        content_type: str | None = None,
    ) -> Awaitable[None]:
        """Publish to any destination, from a handler or from outside one.

        Like Spring's StreamBridge: a binding named ``destination`` in the config may
        choose the binder, the real destination and the content type.  Returns an
        awaitable that completes once the broker confirmed the message (``await
        app.send(...)``); messages sent one after another without awaiting each go out
        in that order, many in flight at once.  Raises :class:`NotRunningError` at
        once when the app is not running.
        """
        return self.runtime.send(
            destination, payload, headers=headers, key=key, content_type=content_type
        )
