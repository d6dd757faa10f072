"""``App`` and its decorators: declaration only, no I/O happens here."""

from __future__ import annotations

import inspect
import math
import os
import types
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

from binder.bindings import BINDING_SCHEMA, input_binding_name, output_binding_name
from binder.errors import ConfigError, NotRunningError
from binder.invoker import Invoker
from binder.schema import did_you_mean, validate_section

__all__ = ["App", "AppRunner", "AppRuntime", "BindingDecl", "HandlerDecl", "register_runner"]

F = TypeVar("F", bound=Callable[..., Any])
HandlerKind = Literal["consumer", "function", "supplier"]
Hook = Callable[[], Any | Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class BindingDecl:
    """A binding as the code declares it; configuration may override every value."""

    name: str
    destination: str
    options: Mapping[str, Any] = field(default_factory=dict)
    """The decorator's binding options (and ``group``), validated, only those written."""
    source: str = "<decorator>"
    """The file of the decorator that declared the binding."""
    line: int | None = None
    """The line of that decorator in :attr:`source`."""

    def error(self, message: str, key: str) -> ConfigError:
        """A :class:`ConfigError` about the option ``key``, located at the decorator."""
        return ConfigError(
            message, source=self.source, key=f"bindings.{self.name}.{key}", line=self.line
        )


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


#: Binding keys a decorator takes as arguments of their own, not as ``**options``.
_OWN_ARGUMENTS = {
    "destination": " (the decorator's destination argument sets it)",
    "group": " (only a consumer binding has a group: the group= argument)",
}
_OPTIONS = tuple(key for key in BINDING_SCHEMA if key not in _OWN_ARGUMENTS)

#: Where a decorator was called: (file, line).
_Where = tuple[str, int | None]


def _decorator_call() -> _Where:
    """The file and line of the code that called the decorator (``@app.consumer(...)``)."""
    frame = inspect.currentframe()
    try:
        # _decorator_call <- App.consumer/function/supplier <- the decorator line
        caller = frame.f_back.f_back if frame is not None and frame.f_back else None
        if caller is None:
            return "<decorator>", None
        path = caller.f_code.co_filename
        line = caller.f_lineno
    finally:
        del frame
    try:
        relative = os.path.relpath(path)
    except ValueError:  # another drive (Windows)
        relative = path
    return (path if relative.startswith("..") else relative), line


def _place(where: _Where) -> str:
    path, line = where
    return f"{path}, line {line}" if line is not None else path


def _require_destination(decorator: str, role: str, value: object, where: _Where) -> None:
    """Refuse ``@app.consumer`` without parentheses (``value`` is then the function)
    at decoration time; other wrong types are the schema's business."""
    if callable(value):
        name = getattr(value, "__name__", "the handler")
        raise TypeError(
            f"{_place(where)}: @app.{decorator} needs its {role} destination: write "
            f'@app.{decorator}("<destination>", ...) above {name}, with parentheses'
        )


def _check_supplier_signature(function: Callable[..., Any], where: _Where) -> None:
    """A supplier is called without arguments: every parameter needs a default."""
    place = _place(where)
    for param in inspect.signature(function).parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        if param.default is param.empty:
            raise TypeError(
                f"{place}: supplier {function.__name__} is called without arguments, "
                f"but its parameter {param.name!r} has no default"
            )


def _declare(
    name: str,
    destination: str,
    group: str | None,
    options: Mapping[str, Any],
    where: _Where,
) -> BindingDecl:
    """Validate a decorator's binding arguments exactly as a file's ``bindings.<name>``.

    Errors are :class:`ConfigError` located at the decorator (``app.py, line 12, key
    'bindings.bill-in-0.max_attempts': expected int, got str 'three'``); the options
    kept are those written (so a configuration's ``bindings.default`` still applies to
    the others).
    """
    decl = BindingDecl(name, destination, {}, *where)
    for key in options:
        if key not in _OPTIONS:
            hint = _OWN_ARGUMENTS.get(key) or did_you_mean(str(key), _OPTIONS)
            raise decl.error(f"unknown key '{key}'{hint}; allowed: {', '.join(_OPTIONS)}", key)
    if destination is None:  # a file's null means "the decorator's"; here there is none
        raise decl.error("expected str, got NoneType None", "destination")
    written = {"destination": destination, **options}
    if group is not None:
        written["group"] = group
    try:
        checked = validate_section(written, BINDING_SCHEMA)
    except ConfigError as exc:
        raise decl.error(exc.reason, exc.key or "") from None
    kept = {key: checked[key] for key in options}
    if group is not None:
        kept["group"] = checked["group"]
    return BindingDecl(name, destination, kept, *where)


class AppRunner(Protocol):
    """What :meth:`App.run` returns (:class:`binder.running.AppRun`): an async context
    manager running the app, with :meth:`start` and :meth:`stop` for hosts that prefer
    calls."""

    async def start(self) -> AppRuntime:
        """Start every binding; return the runtime."""
        ...

    async def stop(self) -> None:
        """Stop every binding gracefully."""
        ...

    async def __aenter__(self) -> AppRuntime: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: types.TracebackType | None,
    ) -> None: ...


#: Makes what :meth:`App.run` returns; :mod:`binder.running` registers it when the
#: ``binder`` package is imported. A registration rather than an import: running an app
#: needs the runtime, and the runtime needs this module.
_runner: Callable[..., AppRunner] | None = None


def register_runner(factory: Callable[..., AppRunner]) -> None:
    """Set what :meth:`App.run` calls (done once, by :mod:`binder.running`)."""
    global _runner
    _runner = factory


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

        ``group`` and ``options`` are validated as the configuration file's keys are:
        a :class:`~binder.errors.ConfigError` naming this decorator's file and line.
        """
        where = _decorator_call()
        _require_destination("consumer", "input", input, where)

        def register(function: F) -> F:
            name = function.__name__
            binding = _declare(input_binding_name(name), input, group, options, where)
            self._add(
                HandlerDecl("consumer", name, Invoker(function, threaded=threaded), input=binding)
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
        ``threaded`` as for :meth:`consumer`; ``group`` applies to the input, the other
        ``options`` to both bindings (validated as for :meth:`consumer`).
        """
        where = _decorator_call()
        _require_destination("function", "input", input, where)

        def register(function: F) -> F:
            name = function.__name__
            source = _declare(input_binding_name(name), input, group, options, where)
            sink = _declare(output_binding_name(name), output, None, options, where)
            self._add(
                HandlerDecl(
                    "function",
                    name,
                    Invoker(function, threaded=threaded),
                    input=source,
                    output=sink,
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
        where = _decorator_call()
        _require_destination("supplier", "output", output, where)
        if not (isinstance(every, int | float) and math.isfinite(every) and every > 0):
            raise ValueError(
                f"{_place(where)}: @app.supplier: every= must be a positive number of "
                f"seconds, got {every!r}"
            )

        def register(function: F) -> F:
            _check_supplier_signature(function, where)
            name = function.__name__
            binding = _declare(output_binding_name(name), output, None, options, where)
            self._add(
                HandlerDecl(
                    "supplier",
                    name,
                    Invoker(function, threaded=threaded),
                    output=binding,
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

    def run(
        self,
        config: str | Path | Mapping[str, Any] | None = None,
        *,
        environ: Mapping[str, str] | None = None,
        fail_fast: bool = False,
        max_messages: int | None = None,
        http: str | None = None,
        drain_timeout: float = 30.0,
    ) -> AppRunner:
        """Run this app inside the caller's asyncio program::

            async with app.run(config="binder.yaml") as runtime:
                ...  # bindings run; app.send works from anywhere

        Entering connects (waiting for unreachable brokers unless ``fail_fast``) and
        starts every binding; leaving stops them gracefully (no more intake, in-flight
        handlers finish, outputs are confirmed, connections close). ``config`` is a
        file, a mapping, or None for ``./binder.yaml`` / ``$EVENTBINDER_CONFIG``;
        ``environ`` is where ``EVENTBINDER_*`` overrides come from (default
        ``os.environ``); ``http`` serves the management endpoint on ``HOST:PORT``.
        ``binder run`` runs apps the same way. See :class:`binder.running.AppRun`.
        """
        if _runner is None:  # pragma: no cover - the binder package registers it
            raise RuntimeError("binder.running is not imported")
        return _runner(
            self,
            config,
            environ=environ,
            fail_fast=fail_fast,
            max_messages=max_messages,
            http=http,
            drain_timeout=drain_timeout,
        )

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
