"""Every plugin hook of eventbinder, in one module.

Hooks are synchronous; asynchronous work happens on the objects they return.
A plugin is a module (or object) with functions marked ``@binder.plugins.hookimpl``,
registered through the entry-point group ``binder.binders``; the built-in binders load
through that same path.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

import pluggy

from binder.app import AppRuntime

if TYPE_CHECKING:
    from binder.app import App
    from binder.bindings import BindingSettings
    from binder.config import Settings
    from binder.consumers import BindingRuntime
    from binder.spi import Binder, BinderType

PROJECT = "binder"
hookspec = pluggy.HookspecMarker(PROJECT)

__all__ = [
    "PROJECT",
    "PluginRuntime",
    "binder_consumer_middleware",
    "binder_runtime_started",
    "binder_runtime_stopping",
    "binder_types",
    "hookspec",
]


class PluginRuntime(AppRuntime, Protocol):
    """The running runtime the ``binder_runtime_*`` hooks receive.

    It is a :class:`binder.runtime.Runtime`; this names what plugins may rely on.
    """

    @property
    def app(self) -> App:
        """The app it runs."""
        ...

    @property
    def settings(self) -> Settings:
        """The app's validated configuration."""
        ...

    @property
    def bindings(self) -> Mapping[str, BindingSettings]:
        """Every declared binding's effective settings, by binding name."""
        ...

    @property
    def binders(self) -> Mapping[str, Binder]:
        """The binder instances, by the names under ``binders:``."""
        ...

    @property
    def consumers(self) -> Mapping[str, BindingRuntime]:
        """The consumer bindings at run time, by binding name."""
        ...


@hookspec
def binder_types() -> list[BinderType]:  # type: ignore[empty-body]
    """Return the binder types this plugin provides.

    Called once when the plugin manager is built.  All results are combined; two
    plugins registering the same type name is a configuration error naming both.
    A binder type must import its client library only in ``create``.
    """


@hookspec
def binder_consumer_middleware(binding: BindingRuntime) -> Any:
    """Return a ``Handler -> Handler`` wrapper for one consumer binding, or None.

    Called for every consumer binding when the runtime binds it.  All non-None results
    are applied in pluggy's call order, so the most recently registered plugin's
    wrapper is the outermost.  Wrappers sit inside the delivery engine's retries: they
    see every attempt, and must re-raise failures they do not handle.
    """


@hookspec
def binder_runtime_started(runtime: PluginRuntime) -> None:
    """Called once every binding is bound and suppliers are scheduled.

    Results are ignored; an exception here aborts the start.
    """


@hookspec
def binder_runtime_stopping(runtime: PluginRuntime) -> None:
    """Called when the runtime begins to stop, before consumers are drained.

    Results are ignored; an exception is logged and neither stops the shutdown nor
    keeps the other plugins' implementations from being called.
    """
