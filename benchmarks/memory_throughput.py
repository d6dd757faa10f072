"""End-to-end throughput of the in-memory binder, side by side with a plain asyncio loop.

eventbinder path: publish -> ``orders`` queue -> function binding (decode JSON, call the
handler, encode the result) -> ``invoices`` queue -> a receiving consumer binding.
Plain path: the same handler called in an asyncio loop on the same payloads, with the
same JSON decode and encode.  Both run in this process, one after the other, and the
ratio is printed.  Memory: resident set size sampled while the stream runs; it must stay
flat (no per-message growth).

    python benchmarks/memory_throughput.py                 # 200,000 messages
    python benchmarks/memory_throughput.py --messages 1000000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from typing import Any

from binder import App, Message
from binder.spi import ConsumerSpec
from binder.testing import consume, run_app
from binders.memory.binder import MemoryBinder

WINDOW = 1000  # messages the publisher may run ahead of the receiver


def price(order: dict) -> dict:
    """The handler under test: a little arithmetic on a decoded order."""
    return {"order_id": order["id"], "item": order["item"], "total": order["qty"] * 2.5}


async def price_async(order: dict) -> dict:
    """The same handler as a coroutine function."""
    return {"order_id": order["id"], "item": order["item"], "total": order["qty"] * 2.5}


#: ``def`` handlers run in a worker thread by default; ``loop`` is ``threaded=False``.
HANDLERS = ("def", "async", "loop")


def payloads(count: int) -> list[bytes]:
    """~100-byte JSON orders, as they would arrive from a broker."""
    return [
        json.dumps(
            {"id": i, "item": "coffee-beans-1kg", "qty": 1 + i % 5, "note": "x" * 40}
        ).encode()
        for i in range(min(count, 10_000))
    ]


def rss_mib() -> float:
    """Current resident set size in MiB (Linux)."""
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


async def plain(count: int, data: list[bytes]) -> float:
    """The plain loop: decode, call, encode; yields to the loop like a consumer would."""
    start = time.perf_counter()
    n = len(data)
    for i in range(count):
        result = price(json.loads(data[i % n]))
        json.dumps(result).encode()
        if i % WINDOW == 0:
            await asyncio.sleep(0)
    return count / (time.perf_counter() - start)


async def framework(
    count: int, data: list[bytes], handler: str = "def"
) -> tuple[float, list[float]]:
    """The eventbinder path; returns msg/s and RSS samples taken along the way."""
    app = App("bench")
    declare = app.function(
        input="orders", output="invoices", group="pricing", threaded=handler != "loop"
    )
    declare(price_async if handler == "async" else price)
    # record=False: the harness watches nothing, the app runs as under `binder run`.
    async with run_app(app, record=False) as harness:
        memory = harness.binder  # the in-memory binder the app runs on
        assert isinstance(memory, MemoryBinder)
        return await _measure(memory, count, data)


async def _measure(
    memory: MemoryBinder, count: int, data: list[bytes]
) -> tuple[float, list[float]]:
    """Publish ``count`` orders straight to the broker, read the invoices back."""
    received = 0
    caught_up = asyncio.Event()

    async def receive(message: Message) -> None:
        nonlocal received
        received += 1
        if received % WINDOW == 0 or received == count:
            caught_up.set()

    await consume(
        memory, ConsumerSpec(binding="bench-in", destination="invoices", group="receiver"), receive
    )
    broker, n = memory.broker, len(data)
    samples: list[float] = []
    start = time.perf_counter()
    for i in range(count):
        broker.publish(
            "orders", Message(data[i % n], {}, None, "application/json", "", 0.0, 1, "orders")
        )
        if i - received >= WINDOW:
            caught_up.clear()
            await caught_up.wait()
        if i % (count // 10 or 1) == 0:
            samples.append(rss_mib())
    while received < count:
        caught_up.clear()
        await caught_up.wait()
    rate = count / (time.perf_counter() - start)
    samples.append(rss_mib())
    return rate, samples


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run both sides and print a small report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument(
        "--handler",
        choices=HANDLERS,
        default="def",
        help="def (a worker thread, the default for plain functions), async, or loop "
        "(threaded=False)",
    )
    args = parser.parse_args(argv)
    data = payloads(args.messages)
    asyncio.run(plain(min(args.messages, 20_000), data))  # warm-up
    plain_rate = asyncio.run(plain(args.messages, data))
    ours, samples = asyncio.run(framework(args.messages, data, args.handler))
    report = {
        "messages": args.messages,
        "handler": args.handler,
        "plain_msgs_per_s": round(plain_rate),
        "plain_us_per_msg": round(1e6 / plain_rate, 2),
        "eventbinder_msgs_per_s": round(ours),
        "eventbinder_us_per_msg": round(1e6 / ours, 2),
        "ratio": round(ours / plain_rate, 3),
        "rss_mib_first_last_max": [
            round(samples[0], 1),
            round(samples[-1], 1),
            round(max(samples), 1),
        ],
    }
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
