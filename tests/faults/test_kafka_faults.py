"""Network faults between an app and Kafka, made by Toxiproxy (``scripts/brokers up
toxiproxy``): a proxy 127.0.0.1:19192 -> 127.0.0.1:19092, the broker's FAULTS listener,
which advertises 127.0.0.1:19192; clients that bootstrap from the proxy are sent back
to it for every request, so it carries every connection of the app (the producer, the
consumers of its function binding and its sink, their group coordinator).

Kafka clients notice a silent connection when a request goes unanswered for
``request_timeout_ms`` (5 s here): they close it, reconnect and send again (the
idempotent producer's retries keep order and add no duplicates). The broker evicts a
consumer whose heartbeats stop for ``session_timeout_ms`` (6 s here); after the fault the
consumer rejoins its group and goes on from the last committed offsets.
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

pytestmark = [pytest.mark.broker("kafka"), pytest.mark.broker("toxiproxy")]

LISTEN, UPSTREAM = 19192, 19092
REQUEST_TIMEOUT = 5.0
SESSION_TIMEOUT = 6.0
DELIVERY_TIMEOUT = 8.0
BLACKHOLE = 10.0
SETTINGS: dict[str, Any] = {
    "type": "kafka",
    "bootstrap_servers": f"127.0.0.1:{LISTEN}",
    "request_timeout_ms": int(REQUEST_TIMEOUT * 1000),
    "session_timeout_ms": int(SESSION_TIMEOUT * 1000),
    "delivery_timeout_ms": int(DELIVERY_TIMEOUT * 1000),
}
CONFIG = {"binders": {"kafka": SETTINGS}, "default_binder": "kafka"}


@pytest.fixture
def tp() -> Iterator[Proxy]:
    with proxy("eventbinder-kafka", LISTEN, UPSTREAM) as p:
        yield p


def _lines(caplog: pytest.LogCaptureFixture, text: str) -> list[logging.LogRecord]:
    return log_lines(caplog.records, "binders.kafka", text)


def _app(name: str) -> tuple[App, dict[str, Any]]:
    suffix = uuid.uuid4().hex[:10]
    return relay_app(name, f"faults-{name}-in-{suffix}", f"faults-{name}-out-{suffix}")


async def test_latency_200ms_each_way_loses_nothing(tp: Proxy) -> None:
    app, holder = _app("latency")
    await latency_case(app, holder, CONFIG, tp, "kafka", within=30)


async def test_a_10s_blackhole_is_detected_and_recovered_from(
    tp: Proxy, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    app, holder = _app("blackhole")
    async with run_app(app, CONFIG):
        flow = holder["flow"] = Flow(app, holder["source"], holder["sink"])
        loop = flow.loop
        state: dict[str, float] = {}
        sending = asyncio.create_task(flow.send_paced(lambda: "stop" in state, 0.02))
        await wait_until(lambda: len(flow.received) >= 50, 20, "50 relayed before")
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
        await wait_until(lambda: _lines(caplog, "reconnected"), 30, "a 'reconnected' line")
        state["reconnected"] = loop.time()
        after = flow.next
        await wait_until(lambda: any(n >= after for n in flow.received), 60, "a later send relayed")
        state["recovered"] = loop.time()
        state["stop"] = loop.time()
        await sending
        await all_arrive(flow, 60)
        rss_after = rss_mb()
    recover = state["recovered"] - state["end"]
    detect = state["detected"] - state["start"]
    reconnect = state["reconnected"] - state["end"]
    failed = flow.failed()
    print(
        f"\nkafka blackhole: detected after {detect:.2f}s, reconnected {reconnect:.2f}s and "
        f"stream resumed {recover:.2f}s after it ended; "
        f"{len(flow.confirmed())} confirmed, {len(failed)} failed "
        f"({sorted(set(failed.values()))[:3]}), {len(flow.lost())} lost; longest wait "
        f"{flow.longest_unsettled():.2f}s, at most {flow.max_pending} pending; "
        f"RSS {rss_before:.0f} -> {rss_after:.0f} MB"
    )
    assert not flow.lost(), "a confirmed message was lost"
    assert detect <= REQUEST_TIMEOUT + 2, f"blackhole noticed after {detect:.1f}s"
    assert reconnect <= 3, f"reconnected {reconnect:.1f}s after the blackhole"
    assert recover <= REQUEST_TIMEOUT + 3, f"the stream resumed {recover:.1f}s late"
    assert flow.longest_unsettled() <= DELIVERY_TIMEOUT + 1.5, "a send waited past its timeout"
    # A send fails with one of two sentences: not taken (the partition's queue stood
    # still for request_timeout_ms), or not acknowledged within delivery_timeout_ms.
    assert all("_timeout_ms" in error for error in failed.values()), set(failed.values())
    assert rss_after - rss_before < 100
    # One line for the loss and one for the reconnect per binder (the app's and the
    # test harness's), instead of aiokafka's dozens.
    assert len(_lines(caplog, "lost its connection")) <= 2
    noisy = [r for r in caplog.records if r.name.startswith("aiokafka")]
    assert not [r for r in noisy if "KafkaConnectionError" in r.getMessage()], noisy[:3]


async def test_a_reset_mid_publish_loses_nothing_reported_sent(
    tp: Proxy, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    app, holder = _app("reset")
    await reset_case(
        app, holder, CONFIG, tp, "kafka", caplog, loss="lost its connection", within=60
    )


async def test_bandwidth_50kbps_delivers_everything_slower(tp: Proxy) -> None:
    app, holder = _app("bandwidth")
    await bandwidth_case(app, holder, CONFIG, tp, "kafka", within=30)
