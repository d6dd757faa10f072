"""Running an app inside another asyncio program: ``async with app.run(...)``.

``binder run`` is the command-line form of the same thing (it adds signals,
``--duration`` and ``--max-messages``); a web server, a notebook or a test runs an app
through :meth:`binder.app.App.run` instead::

    async with app.run(config="binder.yaml") as runtime:
        await app.send("orders", {"id": 1})   # from anywhere in the program
        ...                                   # the bindings run until the block ends

Entering starts every binding (waiting for unreachable brokers unless ``fail_fast``),
leaving stops them gracefully: no more intake, in-flight handlers finish and their
outputs are confirmed, bindings and connections close.
"""

from __future__ import annotations

import types
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from binder.app import App, register_runner

if TYPE_CHECKING:
    from binder.management import ManagementServer
    from binder.plugins import BinderRegistry
    from binder.runtime import Runtime

__all__ = ["AppRun"]


class AppRun:
    """What :meth:`App.run` returns: an async context manager yielding the running
    :class:`~binder.runtime.Runtime` (also reachable as ``app.runtime``).

    ``config``: a file path, a mapping, or None for ``./binder.yaml`` (or
    ``$EVENTBINDER_CONFIG``; none: the in-memory binder). ``environ``: where
    ``EVENTBINDER_*`` overrides come from (default: ``os.environ``; ``{}``: none).
    ``http``: ``HOST:PORT`` of the management endpoint (health, bindings, metrics),
    overriding the configuration's ``management.http``; see docs/operations.md.
    """

    def __init__(
        self,
        app: App,
        config: str | Path | Mapping[str, Any] | None = None,
        *,
        environ: Mapping[str, str] | None = None,
        registry: BinderRegistry | None = None,
        fail_fast: bool = False,
        max_messages: int | None = None,
        http: str | None = None,
        drain_timeout: float = 30.0,
    ) -> None:
        from binder.config import load_settings
        from binder.plugins import load_registry
        from binder.runtime import Runtime

        self.app = app
        registry = registry or load_registry()
        settings = load_settings(config, registry=registry, environ=environ)
        self.runtime: Runtime = Runtime(
            app,
            settings,
            registry,
            fail_fast=fail_fast,
            max_messages=max_messages,
            drain_timeout=drain_timeout,
        )
        self._http = http if http is not None else settings.management.get("http")
        self._token: str | None = settings.management.get("token")
        self._server: ManagementServer | None = None

    @classmethod
    def of(cls, runtime: Runtime, *, http: str | None = None) -> AppRun:
        """Run an already built runtime (tools such as ``binder tail`` build their own)."""
        run = cls.__new__(cls)
        run.app, run.runtime = runtime.app, runtime
        run._http = http if http is not None else runtime.settings.management.get("http")
        run._token = runtime.settings.management.get("token")
        run._server = None
        return run

    @property
    def management(self) -> ManagementServer | None:
        """The management endpoint while it is served (``.url``, ``.port``), else None."""
        return self._server

    async def start(self) -> Runtime:
        """Start the management endpoint (if asked for), then every binding."""
        if self._http:
            from binder.management import ManagementServer

            self._server = ManagementServer(self.runtime, self._http, token=self._token)
            await self._server.start()
        try:
            await self.runtime.start()
        except BaseException:
            await self.stop()
            raise
        return self.runtime

    async def stop(self) -> None:
        """Stop every binding gracefully, then the management endpoint."""
        try:
            await self.runtime.stop()
        finally:
            if self._server is not None:
                await self._server.stop()
                self._server = None

    async def __aenter__(self) -> Runtime:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: types.TracebackType | None,
    ) -> None:
        await self.stop()


register_runner(AppRun)
