"""A small client for Toxiproxy's HTTP API (``scripts/brokers up toxiproxy``: API on
127.0.0.1:8474): proxies between the app and a broker, and the toxics that make faults.

Toxics used here (attributes as the API names them; times in milliseconds, rates in
KB/s; ``stream`` is ``upstream``, app -> broker, or ``downstream``, broker -> app):

* ``latency`` {latency, jitter}: every chunk of data waits that long;
* ``timeout`` {timeout}: a blackhole, no data passes (it is dropped, not held); with
  ``timeout: 0`` the connection stays open until the toxic is removed;
* ``reset_peer`` {timeout}: the connection is reset (RST) after that long;
* ``bandwidth`` {rate}: at most ``rate`` KB/s.

Calls are blocking (urllib): from async tests, use them through ``asyncio.to_thread``
or accept a few milliseconds of blocking on loopback (these do the latter).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

API = "http://127.0.0.1:8474"
HOST = "127.0.0.1"


class ToxiproxyError(Exception):
    """The API answered with an error status (its message in the text)."""


def _call(method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        API + path, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            text = response.read()
    except urllib.error.HTTPError as e:
        detail = e.read().decode(errors="replace")
        raise ToxiproxyError(f"{method} {path}: HTTP {e.code}: {detail}") from None
    return json.loads(text) if text.strip() else None


class Proxy:
    """One proxy: ``listen`` (127.0.0.1:port) forwards to ``upstream``."""

    def __init__(self, name: str, listen_port: int, upstream_port: int) -> None:
        self.name = name
        self.port = listen_port
        self.listen = f"{HOST}:{listen_port}"
        self.upstream = f"{HOST}:{upstream_port}"

    # ------------------------------------------------------------------ the proxy
    def create(self) -> Proxy:
        """Create it (replacing a leftover proxy of the same name)."""
        self.delete()
        body = {"name": self.name, "listen": self.listen, "upstream": self.upstream}
        _call("POST", "/proxies", {**body, "enabled": True})
        return self

    def delete(self) -> None:
        with suppress(ToxiproxyError):
            _call("DELETE", f"/proxies/{self.name}")

    def enable(self, enabled: bool = True) -> None:
        """Disabled: listening stops and every connection through it is closed."""
        _call("POST", f"/proxies/{self.name}", {"enabled": enabled})

    def disable(self) -> None:
        self.enable(False)

    # ------------------------------------------------------------------ toxics
    def add(
        self, kind: str, *, stream: str = "downstream", name: str | None = None, **attributes: int
    ) -> str:
        """Add a toxic of type ``kind`` on ``stream``; returns its name."""
        toxic = name or f"{kind}_{stream}"
        body = {
            "name": toxic,
            "type": kind,
            "stream": stream,
            "toxicity": 1.0,
            "attributes": attributes,
        }
        _call("POST", f"/proxies/{self.name}/toxics", body)
        return toxic

    def remove(self, toxic: str) -> None:
        _call("DELETE", f"/proxies/{self.name}/toxics/{toxic}")

    def toxics(self) -> list[dict[str, Any]]:
        return list(_call("GET", f"/proxies/{self.name}/toxics") or [])

    def clear(self) -> None:
        for toxic in self.toxics():
            self.remove(toxic["name"])

    def latency(self, ms: int, jitter: int = 0) -> list[str]:
        """``ms`` more each way (both streams)."""
        return [
            self.add("latency", stream=s, latency=ms, jitter=jitter)
            for s in ("upstream", "downstream")
        ]

    def blackhole(self) -> list[str]:
        """No data either way; connections stay open (``timeout: 0``) until removed."""
        return [self.add("timeout", stream=s, timeout=0) for s in ("upstream", "downstream")]

    def reset_peer(self, after_ms: int = 0, stream: str = "upstream") -> str:
        return self.add("reset_peer", stream=stream, timeout=after_ms)

    def bandwidth(self, kb_per_s: int) -> list[str]:
        return [self.add("bandwidth", stream=s, rate=kb_per_s) for s in ("upstream", "downstream")]


@contextmanager
def proxy(name: str, listen_port: int, upstream_port: int) -> Iterator[Proxy]:
    """A fresh proxy for one test, deleted (its connections closed) afterwards."""
    p = Proxy(name, listen_port, upstream_port).create()
    try:
        yield p
    finally:
        p.delete()


# ---------------------------------------------------------------------------- the flow
class Flow:
    """Messages ``{"n": N, "pad": ...}`` sent with ``app.send`` to ``source``, relayed by a
    function binding to ``sink``, recorded by a consumer of ``sink``: all through the
    proxy.  ``outcome[n]`` is None once the send was confirmed, else the error text;
    ``received[n]`` when ``n`` first arrived; ``pending()`` the sends not settled yet."""

    def __init__(self, app: Any, source: str, sink: str, *, pad: int = 0) -> None:
        import asyncio

        self.app, self.source, self.sink, self.pad = app, source, sink, "x" * pad
        self.loop = asyncio.get_running_loop()
        self.outcome: dict[int, str | None] = {}
        self.sent_at: dict[int, float] = {}
        self.settled_at: dict[int, float] = {}
        self.received: dict[int, float] = {}
        self.tasks: list[Any] = []
        self.settled = asyncio.Event()  # set whenever a send settles
        self.next = 0
        self.max_pending = 0

    def record(self, payload: dict[str, Any]) -> None:
        self.received.setdefault(payload["n"], self.loop.time())

    def pending(self) -> int:
        return len(self.tasks) - len(self.outcome)

    def send_one(self) -> None:
        import asyncio

        from binder.errors import describe_error

        n, self.next = self.next, self.next + 1
        self.sent_at[n] = self.loop.time()

        async def send() -> None:
            try:
                await self.app.send(self.source, {"n": n, "pad": self.pad})
            except Exception as exc:
                self.outcome[n] = describe_error(exc)
            else:
                self.outcome[n] = None
            self.settled_at[n] = self.loop.time()
            self.settled.set()

        self.tasks.append(asyncio.create_task(send()))
        self.max_pending = max(self.max_pending, self.pending())

    async def send_windowed(self, count: int, window: int) -> None:
        """``count`` sends, at most ``window`` unsettled at once."""

        from binder.testing import wait_until

        for _ in range(count):
            await wait_until(
                lambda: self.pending() < window, 60, "room in the send window", changed=self.settled
            )
            self.send_one()

    async def send_paced(self, until: Any, interval: float) -> None:
        """One send every ``interval`` s (no window: nothing waits for the broker) until
        ``until()`` is true."""
        import asyncio

        while not until():
            self.send_one()
            await asyncio.sleep(interval)  # the send rate, not a synchronisation

    def confirmed(self) -> set[int]:
        return {n for n, error in self.outcome.items() if error is None}

    def failed(self) -> dict[int, str]:
        return {n: error for n, error in self.outcome.items() if error is not None}

    def lost(self) -> set[int]:
        return self.confirmed() - self.received.keys()

    def longest_unsettled(self) -> float:
        """The longest any send has waited to be settled (those still waiting: so far)."""
        now = self.loop.time()
        return max((self.settled_at.get(n, now) - t for n, t in self.sent_at.items()), default=0.0)


def rss_mb() -> float:
    """This process's resident memory (MB)."""
    import os

    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


# ------------------------------------------------------------------ shared by the tests
def relay_app(name: str, source: str, sink: str) -> tuple[Any, dict[str, Any]]:
    """An app relaying ``source`` to ``sink`` (function binding) and recording ``sink``;
    the flow is made once the loop runs (``holder['flow']``)."""
    from binder.app import App

    app = App(name)
    holder: dict[str, Any] = {"source": source, "sink": sink}

    @app.function(source, sink, group="relay")
    def relay(payload: dict[str, Any]) -> dict[str, Any]:
        return payload

    @app.consumer(sink, group="check", concurrency=4)
    def check(payload: dict[str, Any]) -> None:
        holder["flow"].record(payload)

    return app, holder


def log_lines(records: list[Any], logger: str, text: str) -> list[Any]:
    """The records of ``logger`` (and its children) whose message holds ``text``."""
    return [r for r in records if r.name.startswith(logger) and text in r.getMessage()]


async def all_arrive(flow: Flow, timeout: float) -> None:
    """Wait until every send settled and every confirmed message arrived."""
    from binder.testing import wait_until

    await wait_until(lambda: flow.pending() == 0, timeout, "every send settled")
    await wait_until(
        lambda: not flow.lost(),
        timeout,
        "every confirmed message received",
        detail=lambda: f"missing {sorted(flow.lost())[:20]}",
    )


# ------------------------------------------------------- the cases every broker runs
async def latency_case(
    app: Any, holder: dict[str, Any], config: Any, proxy: Proxy, label: str, within: float
) -> None:
    """200 messages through 200 ms more each way: every one confirmed and relayed."""
    from binder.testing import run_app

    async with run_app(app, config):
        flow = holder["flow"] = Flow(app, holder["source"], holder["sink"])
        proxy.latency(200)
        t0 = flow.loop.time()
        await flow.send_windowed(200, window=50)
        await all_arrive(flow, within)
        took = flow.loop.time() - t0
    print(f"\n{label} latency: 200 messages in {took:.2f}s through 200 ms each way")
    assert not flow.failed(), sorted(set(flow.failed().values()))[:3]
    assert flow.confirmed() == set(range(200))
    assert set(flow.received) == set(range(200))
    assert took > 0.4  # the latency applied


async def reset_case(
    app: Any,
    holder: dict[str, Any],
    config: Any,
    proxy: Proxy,
    label: str,
    caplog: Any,
    loss: str,
    within: float,
) -> None:
    """400 sends, the connections reset after 100 confirmed (until binder ``label``
    logs ``loss``): nothing confirmed is lost, every send settles."""
    import asyncio

    from binder.testing import run_app, wait_until

    async with run_app(app, config):
        flow = holder["flow"] = Flow(app, holder["source"], holder["sink"])
        sending = asyncio.create_task(flow.send_windowed(400, window=50))
        await wait_until(lambda: len(flow.confirmed()) >= 100, 20, "100 confirmed")
        toxic = proxy.reset_peer(0)
        await wait_until(
            lambda: log_lines(caplog.records, f"binders.{label}", loss), 10, f"a {loss!r} line"
        )
        proxy.remove(toxic)
        await asyncio.wait_for(sending, within)
        await all_arrive(flow, within)
    failed = flow.failed()
    print(
        f"\n{label} reset: {len(flow.confirmed())} confirmed, {len(failed)} failed "
        f"({sorted(set(failed.values()))[:3]}), {len(flow.lost())} lost, "
        f"{len(flow.received)} received"
    )
    assert not flow.lost(), "a confirmed message was lost"
    assert len(flow.outcome) == 400


async def bandwidth_case(
    app: Any, holder: dict[str, Any], config: Any, proxy: Proxy, label: str, within: float
) -> None:
    """150 messages of 1 KB through 50 KB/s each way: all arrive, slower."""
    from binder.testing import run_app

    async with run_app(app, config):
        flow = holder["flow"] = Flow(app, holder["source"], holder["sink"], pad=1000)
        proxy.bandwidth(50)
        t0 = flow.loop.time()
        await flow.send_windowed(150, window=20)
        await all_arrive(flow, within)
        took = flow.loop.time() - t0
    print(f"\n{label} bandwidth: 150 x 1 KB in {took:.2f}s at 50 KB/s")
    assert not flow.failed(), sorted(set(flow.failed().values()))[:3]
    assert flow.confirmed() == set(range(150))
    assert set(flow.received) == set(range(150))
    # Each message crosses the proxy upstream twice (send, relay): ~300 KB at 50 KB/s.
    assert took > 3
