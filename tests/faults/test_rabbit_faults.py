"""Network faults between an app and RabbitMQ, made by Toxiproxy (``scripts/brokers up
toxiproxy``): a proxy 127.0.0.1:30672 -> 127.0.0.1:5672 carries every connection of
the app (its function binding, its sink's consumer, ``app.send``).

The binder's heartbeat is 2 s, so a blackhole is noticed within about two heartbeats
(py-amqp gives up after two silent intervals; RabbitMQ does the same on its side);
publishes not confirmed within ``publish_timeout`` (8 s) fail, within a second of it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from binder.app import App
from binder.testing import run_app, wait_until
from tests.faults.toxiproxy import (
    Flow,
    Proxy,
    all_arrive,
    bandwidth_case,
    latency_case,
    log_lines,
    proxy,
    relay_app,
    reset_case,
    rss_mb,
)
from tests.rabbit.support import delete_later, delete_tracked, fresh

pytestmark = [pytest.mark.broker("rabbit"), pytest.mark.broker("toxiproxy")]

# Not 25672 (RabbitMQ's distribution port) and below 32768, where the kernel picks the
# local ports of outgoing connections (a proxy there may find its port taken).
LISTEN, UPSTREAM = 30672, 5672
HEARTBEAT = 2.0
PUBLISH_TIMEOUT = 8.0
CONNECT_TIMEOUT = 3.0
RECONNECT_MAX = 1.0
SETTINGS: dict[str, Any] = {
    "type": "rabbit",
    "url": f"amqp://guest:guest@127.0.0.1:{LISTEN}//",
    "heartbeat": HEARTBEAT,
    "publish_timeout": PUBLISH_TIMEOUT,
    "connect_timeout": CONNECT_TIMEOUT,
    "reconnect_initial": 0.2,
    "reconnect_max": RECONNECT_MAX,
}
CONFIG = {"binders": {"rabbit": SETTINGS}, "default_binder": "rabbit"}


@pytest.fixture
def tp() -> Iterator[Proxy]:
    with proxy("eventbinder-rabbit", LISTEN, UPSTREAM) as p:
        yield p
    delete_tracked()


def _app(name: str, pad: int = 0) -> tuple[App, dict[str, Any]]:
    """An app relaying ``source`` to ``sink`` (function binding) and recording ``sink``;
    the flow is made once the loop runs (``holder['flow']``)."""
    source, sink = fresh(f"{name}-in"), fresh(f"{name}-out")
    delete_later(
        exchanges=(source, sink),
        queues=(f"{source}.relay", f"{source}.relay.dlq", f"{sink}.check", f"{sink}.check.dlq"),
    )
    app, holder = relay_app(name, source, sink)
    holder["pad"] = pad
    return app, holder


def _lines(caplog: pytest.LogCaptureFixture, text: str) -> list[logging.LogRecord]:
    return log_lines(caplog.records, "binders.rabbit", text)


async def test_latency_200ms_each_way_loses_nothing(tp: Proxy) -> None:
    app, holder = _app("latency")
    await latency_case(app, holder, CONFIG, tp, "rabbit", within=20)


async def test_a_10s_blackhole_is_detected_and_recovered_from(
    tp: Proxy, caplog: pytest.LogCaptureFixture
) -> None:
    """Sends go on every 20 ms, without a window, before, during and after a 10 s
    blackhole (connections open, no data either way).  The binder notices within its
    heartbeat bound, sends during it fail by ``publish_timeout`` (none waits longer),
    it reconnects once the blackhole ends, and every confirmed message arrives."""
    caplog.set_level(logging.INFO)
    app, holder = _app("blackhole")
    async with run_app(app, CONFIG):
        flow = holder["flow"] = Flow(app, holder["source"], holder["sink"])
        loop = flow.loop
        state: dict[str, float] = {}
        sending = asyncio.create_task(flow.send_paced(lambda: "stop" in state, 0.02))
        await wait_until(lambda: len(flow.confirmed()) >= 50, 10, "50 confirmed before")
        rss_before = rss_mb()
        toxics = tp.blackhole()
        state["start"] = loop.time()

        def lift() -> None:
            for toxic in toxics:
                tp.remove(toxic)
            state["end"] = loop.time()

        loop.call_later(10, lift)
        await wait_until(lambda: _lines(caplog, "connection lost"), 15, "a 'connection lost' line")
        state["detected"] = loop.time()
        await wait_until(lambda: "end" in state, 15, "the blackhole's end")
        await wait_until(lambda: _lines(caplog, "reconnected"), 15, "a 'reconnected' line")
        state["recovered"] = loop.time()
        after = flow.next
        await wait_until(
            lambda: {n for n in flow.confirmed() if n >= after} and len(flow.confirmed()) > 0,
            10,
            "a send after the reconnect confirmed",
        )
        state["stop"] = loop.time()
        await sending
        await all_arrive(flow, PUBLISH_TIMEOUT + 10)
        rss_after = rss_mb()
    first_loss = _lines(caplog, "connection lost")[0].getMessage()
    detect = state["detected"] - state["start"]
    recover = state["recovered"] - state["end"]
    failed = flow.failed()
    print(
        f"\nrabbit blackhole: detected after {detect:.2f}s, reconnected {recover:.2f}s after "
        f"it ended; {len(flow.confirmed())} confirmed, {len(failed)} failed "
        f"({sorted(set(failed.values()))[:3]}), {len(flow.lost())} lost; longest wait "
        f"{flow.longest_unsettled():.2f}s, at most {flow.max_pending} pending; "
        f"RSS {rss_before:.0f} -> {rss_after:.0f} MB\n  first loss line: {first_loss}"
    )
    assert not flow.lost(), "a confirmed message was lost"
    assert detect <= 2 * HEARTBEAT + 2.5, f"blackhole noticed after {detect:.1f}s"
    assert recover <= CONNECT_TIMEOUT + RECONNECT_MAX + 3, f"reconnected {recover:.1f}s late"
    # The I/O thread fails a send at publish_timeout; held up in a reconnect, the
    # event loop does, a second later.
    assert flow.longest_unsettled() <= PUBLISH_TIMEOUT + 1.5, "a send waited past its timeout"
    assert all("publish_timeout" in error for error in failed.values()), set(failed.values())
    assert rss_after - rss_before < 100


async def test_a_reset_mid_publish_loses_nothing_reported_sent(
    tp: Proxy, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    app, holder = _app("reset")
    await reset_case(
        app,
        holder,
        CONFIG,
        tp,
        "rabbit",
        caplog,
        loss="connection lost",
        within=PUBLISH_TIMEOUT + 10,
    )


async def test_bandwidth_50kbps_delivers_everything_slower(tp: Proxy) -> None:
    app, holder = _app("bandwidth", pad=1000)
    await bandwidth_case(app, holder, CONFIG, tp, "rabbit", within=25)
