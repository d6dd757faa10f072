"""Kafka throughput: an eventbinder consumer function side by side with plain aiokafka.

Same broker, same run, same client settings (acks=all, idempotence, linger 5 ms,
16 KiB batches, manual commits), 100-byte JSON payloads, end to end: a producer
publishes N messages to a fresh topic; a consumer in a fresh group decodes each one and
counts its id.  The clock runs from the first publish to the last message consumed.
The producer is held at most ``--window`` messages ahead of the consumer and publishes
in concurrent chunks of ``--chunk`` messages, each chunk awaited for its acknowledgements.

* eventbinder: a ``@app.consumer`` handler taking a ``dict`` through the full runtime
  (codec, retry and dead-letter middleware) on the Kafka binder, which commits offsets
  only after handlers succeeded; the producer is a Kafka binder producer binding.
* plain aiokafka: ``AIOKafkaProducer.send`` + ``AIOKafkaConsumer.getmany`` with
  ``json.loads`` per record and a commit every 0.5 s.

Each implementation runs in its own subprocess so its peak memory (``ru_maxrss``) is
its own.  The run fails unless every id arrived.

    scripts/brokers up kafka
    python benchmarks/kafka_throughput.py                    # 50,000 messages
    python benchmarks/kafka_throughput.py --messages 200000 --partitions 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BOOTSTRAP = "127.0.0.1:9092"
PRODUCER_SETTINGS: dict[str, Any] = {
    "acks": "all",
    "enable_idempotence": True,
    "linger_ms": 5,
    "max_batch_size": 16384,
}


def payload(i: int) -> bytes:
    """A 100-byte JSON order (for ids below 10**6)."""
    body = {"id": i, "item": "coffee-beans-1kg", "qty": 1 + i % 5, "note": ""}
    body["note"] = "x" * (100 - len(json.dumps(body)))
    return json.dumps(body).encode()


class Tally:
    """Ids seen by the consumer; duplicates are counted, completion is all ids once."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.seen = bytearray(count)
        self.unique = 0
        self.duplicates = 0
        self.done = asyncio.Event()
        self.progress = asyncio.Event()

    def add(self, i: int) -> None:
        if self.seen[i]:
            self.duplicates += 1
            return
        self.seen[i] = 1
        self.unique += 1
        self.progress.set()
        if self.unique == self.count:
            self.done.set()


async def publish_all(
    publish_chunk: Any, tally: Tally, count: int, chunk: int, window: int
) -> None:
    """Publish ids 0..count-1 in chunks, at most ``window`` ahead of the consumer."""
    for start in range(0, count, chunk):
        while start - tally.unique > window:
            tally.progress.clear()
            await tally.progress.wait()
        await publish_chunk(range(start, min(start + chunk, count)))


async def create_topic(topic: str, partitions: int) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        await admin.close()


async def run_plain(topic: str, count: int, chunk: int, window: int) -> dict[str, Any]:
    """Plain aiokafka producer and consumer."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    await create_topic(topic, ARGS.partitions)
    tally = Tally(count)
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, **PRODUCER_SETTINGS)
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=BOOTSTRAP,
        group_id=f"bench-{uuid.uuid4().hex[:8]}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=500,
        session_timeout_ms=10000,
        heartbeat_interval_ms=500,
    )
    await producer.start()
    await consumer.start()
    while not consumer.assignment():
        await asyncio.sleep(0.01)
    for tp in consumer.assignment():
        await consumer.position(tp)

    async def consume() -> None:
        last_commit = time.monotonic()
        while not tally.done.is_set():
            batch = await consumer.getmany(timeout_ms=100, max_records=500)
            for records in batch.values():
                for record in records:
                    tally.add(json.loads(record.value)["id"])
            if time.monotonic() - last_commit > 0.5:
                await consumer.commit()
                last_commit = time.monotonic()
        await consumer.commit()

    async def publish_chunk(ids: range) -> None:
        futures = [
            await producer.send(topic, payload(i), headers=[("contentType", b"application/json")])
            for i in ids
        ]
        await asyncio.gather(*futures)

    started = time.perf_counter()
    consuming = asyncio.create_task(consume())
    await publish_all(publish_chunk, tally, count, chunk, window)
    published = time.perf_counter() - started
    await consuming
    elapsed = time.perf_counter() - started
    await consumer.stop()
    await producer.stop()
    return {
        "seconds": elapsed,
        "publish_seconds": published,
        "duplicates": tally.duplicates,
        "unique": tally.unique,
    }


async def run_eventbinder(topic: str, count: int, chunk: int, window: int) -> dict[str, Any]:
    """A consumer function through the eventbinder runtime on the Kafka binder."""
    from binder import App, Message
    from binder.spi import ProducerSpec
    from binder.testing import run_app

    await create_topic(topic, ARGS.partitions)
    tally = Tally(count)
    app = App("bench")

    @app.consumer(topic, group=f"bench-{uuid.uuid4().hex[:8]}")
    async def count_order(order: dict) -> None:
        tally.add(order["id"])

    config = {
        "binders": {
            "kafka": {"type": "kafka", "bootstrap_servers": BOOTSTRAP, **PRODUCER_SETTINGS}
        },
        "default_binder": "kafka",
        "bindings": {"count_order-in-0": {"concurrency": ARGS.partitions}},
    }
    # record=False: the harness watches nothing, the app runs as under `binder run`.
    async with run_app(app, config, record=False) as harness:
        producer = await harness.runtime.binders["kafka"].bind_producer(
            ProducerSpec(binding="bench-out", destination=topic)
        )

        async def publish_chunk(ids: range) -> None:
            await asyncio.gather(
                *(
                    producer.publish(Message(payload(i), content_type="application/json"))
                    for i in ids
                )
            )

        started = time.perf_counter()
        await publish_all(publish_chunk, tally, count, chunk, window)
        published = time.perf_counter() - started
        await tally.done.wait()
        elapsed = time.perf_counter() - started
    return {
        "seconds": elapsed,
        "publish_seconds": published,
        "duplicates": tally.duplicates,
        "unique": tally.unique,
    }


def child(kind: str) -> None:
    """Run one implementation and print its result as JSON."""
    topic = f"bench-{kind}-{uuid.uuid4().hex[:8]}"
    runner = run_plain if kind == "plain" else run_eventbinder
    result = asyncio.run(runner(topic, ARGS.messages, ARGS.chunk, ARGS.window))
    result["rate"] = ARGS.messages / result["seconds"]
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


def parent() -> None:
    """Run each implementation ``--rounds`` times in fresh subprocesses and compare."""
    results: dict[str, list[dict[str, Any]]] = {"plain": [], "eventbinder": []}
    for _ in range(ARGS.rounds):
        for kind in ("plain", "eventbinder"):
            argv = [sys.executable, __file__, "--child", kind]
            argv += ["--messages", str(ARGS.messages), "--chunk", str(ARGS.chunk)]
            argv += ["--window", str(ARGS.window), "--partitions", str(ARGS.partitions)]
            done = subprocess.run(argv, capture_output=True, text=True, timeout=600)
            if done.returncode != 0:
                sys.exit(f"{kind} run failed:\n{done.stdout}\n{done.stderr}")
            result = json.loads(done.stdout.strip().splitlines()[-1])
            if result["unique"] != ARGS.messages:
                sys.exit(f"{kind} lost messages: {result}")
            results[kind].append(result)
    size = len(payload(ARGS.messages - 1))
    print(
        f"{ARGS.messages} messages of ~{size} bytes JSON, {ARGS.partitions} partition(s), "
        f"{ARGS.rounds} round(s), median shown"
    )
    medians = {}
    for kind, runs in results.items():
        runs.sort(key=lambda r: r["rate"])
        mid = runs[len(runs) // 2]
        medians[kind] = mid
        peak = max(r["peak_rss_mib"] for r in runs)
        dups = sum(r["duplicates"] for r in runs)
        rates = ", ".join(f"{r['rate']:.0f}" for r in runs)
        print(
            f"  {kind:12s} {mid['rate']:9.0f} msg/s  ({rates})  "
            f"peak RSS {peak:6.1f} MiB  duplicates {dups}"
        )
    ratio = medians["eventbinder"]["rate"] / medians["plain"]["rate"]
    print(f"  ratio eventbinder / plain aiokafka: {ratio:.2f}")


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--chunk", type=int, default=1000)
    parser.add_argument("--window", type=int, default=10_000)
    parser.add_argument("--partitions", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", choices=("plain", "eventbinder"))
    return parser.parse_args()


ARGS = parse() if __name__ == "__main__" else argparse.Namespace()

if __name__ == "__main__":
    if ARGS.child:
        child(ARGS.child)
    else:
        parent()
