"""Soak: a million messages through a function binding, watching for growth and loss.

What runs (per broker, each in a fresh child process): the pipeline of
``pipeline_throughput.py`` at eventbinder's defaults -- a producer sends N (default
1,000,000) JSON dicts of ~100 bytes with ``app.send`` to ``in``, at most ``--window``
ahead of the sink; ``@app.function(input=in, output=out, group="fn")`` returns each
dict; ``@app.consumer(out, group="sink")`` marks its id in a bitmap.  While it runs the
child samples, every 5 % of the way, its resident memory (VmRSS), open file
descriptors, asyncio tasks and threads.  The report gives each at the first sample
after warm-up (10 %), at the end and at its highest, plus the ids lost (never seen at
the sink) and seen twice.  Nothing is asserted: the figures go to docs/reliability.md.

    python benchmarks/soak.py [--broker memory|rabbit|kafka|mqtt|all] [-n 1000000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import format_table
from _pipeline_common import BROKERS, payload
from pipeline_throughput import CLEANUP, SETUP, eventbinder_config

SAMPLES = 20
WARM_UP = 2  # samples (10 %) before the reference sample


def _rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


@dataclass
class Sample:
    """Resources at one point of the run."""

    received: int
    rss_mib: float
    fds: int
    tasks: int
    threads: int


@dataclass
class Sink:
    """Ids seen at the sink, as a bitmap (a set of a million ints would be the growth)."""

    count: int
    seen: bytearray = field(init=False)
    distinct: int = 0
    duplicates: int = 0
    done: asyncio.Event = field(default_factory=asyncio.Event)
    progress: asyncio.Event = field(default_factory=asyncio.Event)
    waiting: bool = False
    wake_at: int = 0
    loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.get_running_loop)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.seen = bytearray(self.count)

    def add(self, i: int) -> None:
        with self._lock:
            if self.seen[i]:
                self.duplicates += 1
                return
            self.seen[i] = 1
            self.distinct += 1
            distinct = self.distinct
        if distinct == self.count or (self.waiting and distinct >= self.wake_at):
            self.waiting = False
            self.loop.call_soon_threadsafe(self._signal, distinct == self.count)

    def _signal(self, finished: bool) -> None:
        self.progress.set()
        if finished:
            self.done.set()


async def soak(broker: str, count: int, window: int, tag: str) -> dict[str, Any]:
    """Run the pipeline once; return the samples and the tally."""
    from binder import App
    from binder.testing import run_app

    if broker == "mqtt":
        source, sink_topic = f"soak/in-{tag}", f"soak/out-{tag}"
    else:
        source, sink_topic = f"bench-in-{tag}", f"bench-out-{tag}"
    sink = Sink(count)
    app = App("soak")

    @app.function(input=source, output=sink_topic, group="fn")
    def relay(order: dict[str, Any]) -> dict[str, Any]:
        return order

    @app.consumer(sink_topic, group="sink")
    def collect(order: dict[str, Any]) -> None:
        sink.add(order["id"])

    samples: list[Sample] = []
    step = max(1, count // SAMPLES)

    def sample() -> None:
        samples.append(
            Sample(
                sink.distinct,
                _rss_mib(),
                len(os.listdir("/proc/self/fd")),
                len(asyncio.all_tasks()),
                threading.active_count(),
            )
        )

    failures: list[BaseException] = []

    def sent(future: asyncio.Future[None]) -> None:
        if not future.cancelled() and future.exception() is not None:
            failures.append(future.exception())  # type: ignore[arg-type]

    started = time.perf_counter()
    async with run_app(app, eventbinder_config(broker), record=False):
        next_sample = step
        for i in range(count):
            if i - sink.distinct >= window:
                target = i - window + max(1, window // 4)
                while sink.distinct < target:
                    sink.progress.clear()
                    sink.wake_at = target
                    sink.waiting = True
                    if sink.distinct >= target:  # arrived before the flag was seen
                        break
                    await asyncio.wait_for(sink.progress.wait(), 120)
                sink.waiting = False
            if sink.distinct >= next_sample:
                sample()
                next_sample += step
            asyncio.ensure_future(app.send(source, payload(i))).add_done_callback(sent)
        await asyncio.wait_for(sink.done.wait(), 300)
        sample()
    return {
        "broker": broker,
        "count": count,
        "seconds": time.perf_counter() - started,
        "lost": count - sink.distinct,
        "duplicates": sink.duplicates,
        "publish_failures": len(failures),
        "samples": [vars(s) for s in samples],
    }


def _child(broker: str, count: int, window: int) -> int:
    tag = f"soak{uuid.uuid4().hex[:8]}"
    if broker in SETUP:
        SETUP[broker](tag)
    try:
        result = asyncio.run(soak(broker, count, window, tag))
    finally:
        if broker in CLEANUP:
            CLEANUP[broker](tag)
    print(json.dumps(result))
    return 0


def _report(result: dict[str, Any]) -> list[str]:
    samples = [Sample(**s) for s in result["samples"]]
    reference = samples[min(WARM_UP, len(samples) - 1)]
    last = samples[-1]

    def trio(name: str, fmt: str) -> str:
        values = [getattr(s, name) for s in samples]
        return "/".join(
            format(v, fmt) for v in (getattr(reference, name), getattr(last, name), max(values))
        )

    return [
        result["broker"],
        f"{result['count']:,}",
        f"{result['count'] / result['seconds']:,.0f}",
        trio("rss_mib", ".1f"),
        trio("fds", "d"),
        trio("tasks", "d"),
        trio("threads", "d"),
        str(result["lost"]),
        str(result["duplicates"]),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--broker", choices=(*BROKERS, "all"), default="all")
    parser.add_argument("-n", "--count", type=int, default=1_000_000)
    parser.add_argument("--window", type=int, default=2000)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return _child(args.broker, args.count, args.window)
    brokers = BROKERS if args.broker == "all" else (args.broker,)
    rows = []
    for broker in brokers:
        done = subprocess.run(
            [
                sys.executable,
                __file__,
                "--child",
                "--broker",
                broker,
                "-n",
                str(args.count),
                "--window",
                str(args.window),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            print(f"{broker}: failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
            continue
        rows.append(_report(json.loads(done.stdout.strip().splitlines()[-1])))
        print(f"{broker}: done", file=sys.stderr)
    header = [
        "broker",
        "messages",
        "msg/s",
        "RSS MiB ref/end/max",
        "fds ref/end/max",
        "tasks ref/end/max",
        "threads ref/end/max",
        "lost",
        "dups",
    ]
    print(format_table(header, rows))
    print("ref: the sample at 10 % of the run (after warm-up); end: after the last message")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
