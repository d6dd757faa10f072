"""The management HTTP endpoint (aiohttp): health, bindings and Prometheus metrics.

Read-only routes, served on the app's event loop::

    GET /health/live     200 while the process answers
    GET /health/ready    200 when every binder is connected and every binding bound,
    GET /health          else 503; JSON in Spring Boot's actuator shape
    GET /bindings        every binding: direction, destination, group, binder, state,
                         and a consumer's counters
    GET /bindings/NAME   one of them (404 if there is none)
    POST /bindings/NAME/ACTION
                         ACTION stop, start, pause or resume a consumer binding (as
                         Spring's bindings endpoint); with ``management.token`` set,
                         only with ``Authorization: Bearer TOKEN``
    GET /metrics         Prometheus text format
"""

from __future__ import annotations

import hmac
import logging
from typing import TYPE_CHECKING, Any

from binder.errors import (
    BindingNotFound,
    ConfigError,
    MissingDependency,
    NotRunningError,
    UnsupportedFeature,
)
from binder.management.health import UP, liveness, readiness

if TYPE_CHECKING:
    from aiohttp import web

    from binder.runtime import Runtime

__all__ = ["ManagementServer", "parse_address"]

log = logging.getLogger("binder.management")


def parse_address(address: str) -> tuple[str, int]:
    """``HOST:PORT`` (``:PORT``: 127.0.0.1) as (host, port); port 0 picks a free one."""
    host, sep, port = address.strip().rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ConfigError(
            f"expected HOST:PORT for the management endpoint (e.g. 127.0.0.1:8080), "
            f"got {address!r}",
            key="management.http",
        )
    return host.strip("[]") or "127.0.0.1", int(port)


class ManagementServer:
    """Serves the routes above for ``runtime`` on ``address`` (``HOST:PORT``)."""

    def __init__(self, runtime: Runtime, address: str, token: str | None = None) -> None:
        self.runtime = runtime
        self.host, self._port = parse_address(address)
        self._token = token
        self._runner: web.AppRunner | None = None
        self._registry: Any = None

    @property
    def port(self) -> int:
        """The port listened on (the one chosen, when 0 was asked)."""
        return self._port

    @property
    def url(self) -> str:
        """``http://HOST:PORT``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self._port}"

    async def start(self) -> None:
        """Listen; raises :class:`MissingDependency` without ``eventbinder[http]``."""
        try:
            from aiohttp import web
            from prometheus_client import CollectorRegistry
        except ImportError as exc:
            raise MissingDependency(
                f"the management endpoint needs {exc.name}: pip install 'eventbinder[http]'"
            ) from None
        from binder.management.metrics import RuntimeCollector

        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(RuntimeCollector(self.runtime))
        app = web.Application()
        app.add_routes(
            [
                web.get("/health", self._ready),
                web.get("/health/live", self._live),
                web.get("/health/ready", self._ready),
                web.get("/bindings", self._bindings),
                web.get("/bindings/{name}", self._binding),
                web.post("/bindings/{name}/{action}", self._control),
                web.get("/metrics", self._metrics),
            ]
        )
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self._port)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise ConfigError(
                f"cannot serve the management endpoint on {self.host}:{self._port}: "
                f"{exc.strerror or exc}",
                key="management.http",
            ) from None
        server = getattr(site, "_server", None)
        sockets = getattr(server, "sockets", None) or []
        if sockets:
            self._port = int(sockets[0].getsockname()[1])
        self._runner = runner
        log.info("management endpoint on %s (health, bindings, metrics)", self.url)

    async def stop(self) -> None:
        """Stop listening; idempotent."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    # -- routes -----------------------------------------------------------------------

    async def _live(self, request: web.Request) -> web.Response:
        from aiohttp import web

        return web.json_response(liveness())

    async def _ready(self, request: web.Request) -> web.Response:
        from aiohttp import web

        body = readiness(self.runtime)
        return web.json_response(body, status=200 if body["status"] == UP else 503)

    async def _bindings(self, request: web.Request) -> web.Response:
        from aiohttp import web

        return web.json_response([self._describe(name) for name in self.runtime.bindings])

    async def _binding(self, request: web.Request) -> web.Response:
        from aiohttp import web

        name = request.match_info["name"]
        if name not in self.runtime.bindings:
            known = ", ".join(sorted(self.runtime.bindings)) or "none"
            return web.json_response(
                {"error": f"no binding {name!r}; the app's bindings: {known}"}, status=404
            )
        return web.json_response(self._describe(name))

    async def _control(self, request: web.Request) -> web.Response:
        from aiohttp import web

        if self._token is not None:
            given = request.headers.get("Authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {self._token}".encode()):
                return web.json_response(
                    {"error": "this route needs Authorization: Bearer <management.token>"},
                    status=401,
                    headers={"WWW-Authenticate": "Bearer"},
                )
        name, action = request.match_info["name"], request.match_info["action"]
        try:
            await self.runtime.control(name, action)
        except BindingNotFound as exc:
            return web.json_response({"error": str(exc)}, status=404)
        except UnsupportedFeature as exc:
            return web.json_response({"error": str(exc)}, status=400)
        except NotRunningError as exc:
            return web.json_response({"error": str(exc)}, status=503)
        return web.json_response(self._describe(name))

    async def _metrics(self, request: web.Request) -> web.Response:
        from aiohttp import web
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        response = web.Response(body=generate_latest(self._registry))
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    def _describe(self, name: str) -> dict[str, Any]:
        runtime = self.runtime
        binding = runtime.bindings[name]
        described: dict[str, Any] = {
            "name": name,
            "direction": binding.direction,
            "destination": binding.destination,
            "group": binding.group,
            "binder": binding.binder,
            "state": runtime.status().get(name, "pending"),
        }
        consumer = runtime.consumers.get(name)
        if consumer is not None:
            stats = consumer.stats
            dispatcher = consumer.dispatcher
            described["counters"] = {
                "received": stats.received,
                "handled": stats.handled - stats.dead_lettered,
                "dead_lettered": stats.dead_lettered,
                "returned": stats.failed,
                "attempts_failed": stats.attempts_failed,
                "retried": stats.retried,
                "in_flight": dispatcher.in_flight if dispatcher is not None else 0,
            }
        return described
