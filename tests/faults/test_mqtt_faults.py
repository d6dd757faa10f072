"""Network faults between an app and Mosquitto, made by Toxiproxy (``scripts/brokers up
toxiproxy``): a proxy 127.0.0.1:31883 -> 127.0.0.1:1883 carries every connection of
the app (its function binding, its sink's consumer, ``app.send``), QoS 1 throughout.

The binder's keepalive is 2 s: paho sends a PINGREQ after 2 s without traffic and
drops the connection when the PINGRESP is a keepalive overdue (Mosquitto drops its side
after 1.5 keepalives of silence), so a blackhole is noticed within about 2 keepalives.
A QoS 1 publish waits for its PUBACK across reconnects (paho sends it again) for at most
``publish_timeout`` (8 s here); while the connection is down at most ``max_queued``
publishes wait, and one more fails at once.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
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

pytestmark = [pytest.mark.broker("mqtt"), pytest.mark.broker("toxiproxy")]

LISTEN, UPSTREAM = 31883, 1883
KEEPALIVE = 2
CONNECT_TIMEOUT = 3.0
RECONNECT_MAX = 1.0
PUBLISH_TIMEOUT = 8.0
BLACKHOLE = 10.0


def _config(**overrides: Any) -> dict[str, Any]:
    settings = {
        "type": "mqtt",
        "url": f"mqtt://127.0.0.1:{LISTEN}",
        "client_id": f"eb-faults-{uuid.uuid4().hex[:8]}",
        "session_expiry": 60,
        "keepalive": KEEPALIVE,
        "connect_timeout": CONNECT_TIMEOUT,
        "reconnect_min_delay": 0.2,
        "reconnect_max_delay": RECONNECT_MAX,
        "publish_timeout": PUBLISH_TIMEOUT,
        **overrides,
    }
    return {"binders": {"mqtt": settings}, "default_binder": "mqtt"}


def fresh(prefix: str) -> str:
    return f"ebtest/faults-{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def tp() -> Iterator[Proxy]:
    with proxy("eventbinder-mqtt", LISTEN, UPSTREAM) as p:
        yield p


def _app(name: str, pad: int = 0) -> tuple[App, dict[str, Any]]:
    """An app relaying ``source`` to ``sink`` (function binding) and recording ``sink``;
    the flow is made once the loop runs (``holder['flow']``)."""
    source, sink = fresh(f"{name}-in"), fresh(f"{name}-out")
    app, holder = relay_app(name, source, sink)
    holder["pad"] = pad
    return app, holder


def _lines(caplog: pytest.LogCaptureFixture, text: str) -> list[logging.LogRecord]:
    return log_lines(caplog.records, "binders.mqtt", text)


async def test_latency_200ms_each_way_loses_nothing(tp: Proxy) -> None:
    app, holder = _app("latency")
    await latency_case(app, holder, _config(), tp, "mqtt", within=20)


async def test_a_10s_blackhole_is_detected_and_recovered_from(
    tp: Proxy, caplog: pytest.LogCaptureFixture
) -> None:
    """Sends go on every 20 ms, without a window, before, during and after a 10 s
    blackhole (connections open, no data either way).  The binder notices within its
    keepalive bound, it reconnects once the blackhole ends, the sends made during it
    wait (QoS 1, sent again after the reconnect) for at most ``publish_timeout``, and
    every confirmed message arrives."""
    caplog.set_level(logging.INFO)
    app, holder = _app("blackhole")
    async with run_app(app, _config()):
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

        loop.call_later(BLACKHOLE, lift)
        await wait_until(lambda: _lines(caplog, "lost its connection"), 15, "a loss line")
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
        await all_arrive(flow, 20)
        rss_after = rss_mb()
    first_loss = _lines(caplog, "lost its connection")[0].getMessage()
    detect = state["detected"] - state["start"]
    recover = state["recovered"] - state["end"]
    failed = flow.failed()
    print(
        f"\nmqtt blackhole: detected after {detect:.2f}s, reconnected {recover:.2f}s after "
        f"it ended; {len(flow.confirmed())} confirmed, {len(failed)} failed "
        f"({sorted(set(failed.values()))[:3]}), {len(flow.lost())} lost; longest wait "
        f"{flow.longest_unsettled():.2f}s, at most {flow.max_pending} pending; "
        f"RSS {rss_before:.0f} -> {rss_after:.0f} MB\n  first loss line: {first_loss}"
    )
    assert not flow.lost(), "a confirmed message was lost"
    assert detect <= 2 * KEEPALIVE + 2.5, f"blackhole noticed after {detect:.1f}s"
    assert recover <= CONNECT_TIMEOUT + RECONNECT_MAX + 3, f"reconnected {recover:.1f}s late"
    assert flow.longest_unsettled() <= PUBLISH_TIMEOUT + 1.5, "a send waited past its timeout"
    assert all("publish_timeout" in error for error in failed.values()), set(failed.values())
    assert rss_after - rss_before < 100


async def test_a_reset_mid_publish_loses_nothing_reported_sent(
    tp: Proxy, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    app, holder = _app("reset")
    await reset_case(
        app, holder, _config(), tp, "mqtt", caplog, loss="lost its connection", within=20
    )


async def test_while_disconnected_at_most_max_queued_publishes_wait(
    tp: Proxy, caplog: pytest.LogCaptureFixture
) -> None:
    """With the broker out of reach, ``max_queued`` publishes wait (and are sent after
    the reconnect); more fail at once, naming the setting."""
    caplog.set_level(logging.INFO)
    app, holder = _app("queued")
    async with run_app(app, _config(max_queued=30)):
        flow = holder["flow"] = Flow(app, holder["source"], holder["sink"])
        await flow.send_windowed(5, window=5)
        await all_arrive(flow, 10)
        tp.disable()  # connections closed, nothing listens
        await wait_until(lambda: _lines(caplog, "lost its connection"), 10, "a loss line")
        for _ in range(40):
            flow.send_one()
        # The relay's own outputs may still wait for their PUBACKs on the same
        # connection, so at least 10 of the 40 fail.
        await wait_until(lambda: len(flow.failed()) >= 10, 5, "the sends past max_queued failed")
        waiting = flow.pending()
        assert waiting <= 30 and waiting + len(flow.failed()) == 40
        tp.enable()
        await all_arrive(flow, 20)
    failed = flow.failed()
    reasons = sorted(set(failed.values()))[:1]
    print(f"\nmqtt max_queued: {waiting} waited, {len(failed)} failed: {reasons}")
    assert all("(max_queued)" in error for error in failed.values()), set(failed.values())
    assert len(flow.confirmed()) == 5 + waiting and set(flow.received) == flow.confirmed()


async def test_bandwidth_50kbps_delivers_everything_slower(tp: Proxy) -> None:
    app, holder = _app("bandwidth", pad=1000)
    await bandwidth_case(app, holder, _config(), tp, "mqtt", within=25)
