"""MQTT throughput: an eventbinder function binding side by side with plain paho-mqtt.

Same Mosquitto, same run, same QoS on every hop, 100-byte JSON payloads, end to end:
a producer publishes N messages to ``in``; a function consumes ``in``, decodes the JSON,
encodes it again and publishes it to ``out``; a sink consumes ``out`` and records every
id.  The producer is held at most ``--window`` (500) messages ahead of the sink.  The
run fails unless the sink saw every id (duplicates, which QoS 1 allows, are counted).

* eventbinder: ``@app.function`` + ``@app.consumer`` (``async def``) through the full
  runtime and its delivery engine (codecs, retries, dead letters, pipelined settlement:
  an input is acknowledged once its output's PUBACK arrived), group consumers (shared
  subscriptions, persistent sessions, manual acks), ``--concurrency`` function calls at
  once and a ``prefetch`` (the consumers' receive maximum) of ``--inflight``; the
  producer a binder producer binding whose ``publish`` queues at once and returns a
  future, so up to ``--window`` publishes are in flight.
* plain paho: three paho clients (producer, relay, sink) with their network threads;
  the relay publishes from ``on_message`` and paho acknowledges automatically.

Both publish with the same in-flight limit (``--inflight``, Mosquitto's receive maximum
in our config is 100).  Each (implementation, QoS) runs in its own subprocess so the
peak memory (``ru_maxrss``) belongs to that run alone.

    scripts/brokers up mqtt
    python benchmarks/mqtt_throughput.py              # 20,000 messages, QoS 0 and 1
    python benchmarks/mqtt_throughput.py -n 5000 --qos 1 --repeat 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import threading
import time
import uuid
from typing import Any

HOST = os.environ.get("EVENTBINDER_MQTT_HOST", "127.0.0.1")
PORT = int(os.environ.get("EVENTBINDER_MQTT_PORT", "1883"))
IMPLS = ("paho", "eventbinder")


def payload(n: int) -> bytes:
    """A 100-byte JSON object."""
    head = json.dumps({"id": n, "pad": ""}, separators=(",", ":"))
    return json.dumps({"id": n, "pad": "x" * (100 - len(head))}, separators=(",", ":")).encode()


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Tally:
    """Ids seen by the sink; thread-safe; wakes the producer's window."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.seen = bytearray(count)
        self.unique = 0
        self.total = 0
        self.lock = threading.Lock()
        self.done = threading.Event()

    def add(self, n: int) -> bool:
        """Record id ``n``; True when it is new."""
        with self.lock:
            self.total += 1
            if self.seen[n]:
                return False
            self.seen[n] = 1
            self.unique += 1
            if self.unique == self.count:
                self.done.set()
            return True


# ------------------------------------------------------------------------------ paho


def run_paho(qos: int, count: int, window: int, inflight: int) -> tuple[float, Tally]:
    """Plain paho: producer -> in -> relay -> out -> sink; return (seconds, tally)."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    tag = uuid.uuid4().hex[:8]
    source, sink = f"bench/in-{tag}", f"bench/out-{tag}"
    tally = Tally(count)
    slots = threading.Semaphore(window)

    def client(name: str) -> Any:
        c = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"bench-{name}-{tag}", protocol=mqtt.MQTTv5
        )
        c.max_inflight_messages_set(inflight)
        c.max_queued_messages_set(0)
        return c

    def subscribed(c: Any, topic: str) -> None:
        ready = threading.Event()
        c.on_subscribe = lambda *_: ready.set()
        c.connect(HOST, PORT)
        c.loop_start()
        c.subscribe(topic, qos)
        if not ready.wait(10):
            raise RuntimeError(f"no SUBACK for {topic}")

    relay_out = client("relay-out")
    relay_out.connect(HOST, PORT)
    relay_out.loop_start()
    relay = client("relay")

    def on_relay(_c: Any, _u: Any, msg: Any) -> None:
        relay_out.publish(sink, json.dumps(json.loads(msg.payload)).encode(), qos)

    relay.on_message = on_relay
    subscribed(relay, source)
    sink_client = client("sink")

    def on_sink(_c: Any, _u: Any, msg: Any) -> None:
        if tally.add(json.loads(msg.payload)["id"]):
            slots.release()

    sink_client.on_message = on_sink
    subscribed(sink_client, sink)
    producer = client("producer")
    producer.connect(HOST, PORT)
    producer.loop_start()
    data = [payload(n) for n in range(count)]
    start = time.perf_counter()
    for n in range(count):
        slots.acquire()
        producer.publish(source, data[n], qos)
    if not tally.done.wait(300):
        raise RuntimeError(f"paho: only {tally.unique} of {count} messages arrived")
    elapsed = time.perf_counter() - start
    for c in (producer, relay, relay_out, sink_client):
        c.disconnect()
        c.loop_stop()
    return elapsed, tally


# ----------------------------------------------------------------------- eventbinder


async def _eventbinder(
    qos: int, count: int, window: int, inflight: int, concurrency: int
) -> tuple[float, Tally]:
    from binder.app import App
    from binder.message import Message
    from binder.spi import ProducerSpec
    from binder.testing import run_app
    from binders.mqtt.plugin import MqttBinderType

    tag = uuid.uuid4().hex[:8]
    source, sink = f"bench/in-{tag}", f"bench/out-{tag}"
    tally = Tally(count)
    slots = asyncio.Semaphore(window)
    app = App("bench")

    @app.function(input=source, output=sink, group="fn")
    async def relay(order: dict) -> dict:
        return order

    @app.consumer(sink, group="sink")
    async def collect(order: dict) -> None:
        if tally.add(order["id"]):
            slots.release()

    mqtt = {"qos": qos}
    config = {
        "binders": {
            "mqtt": {
                "type": "mqtt",
                "host": HOST,
                "port": PORT,
                "client_id": f"bench-{tag}",
                "max_inflight": inflight,
                "session_expiry": 60,
            }
        },
        "default_binder": "mqtt",
        "bindings": {
            "relay-in-0": {"concurrency": concurrency, "prefetch": inflight, "mqtt": mqtt},
            "relay-out-0": {"mqtt": mqtt},
            "collect-in-0": {"prefetch": inflight, "mqtt": mqtt},
        },
    }
    # record=False: the harness watches nothing, the app runs as under `binder run`.
    async with run_app(app, config, record=False) as harness:
        producer = await harness.runtime.binders["mqtt"].bind_producer(
            ProducerSpec(
                "src-out-0",
                source,
                options=MqttBinderType().validate_binding_options(mqtt, "producer"),
            )
        )
        data = [payload(n) for n in range(count)]
        pending: set[asyncio.Future[None]] = set()
        start = time.perf_counter()
        for n in range(count):
            await slots.acquire()
            # Queued at once; the future resolves on the PUBACK (QoS 1) or is already
            # resolved (QoS 0): many publishes in flight, in order.
            confirmed = producer.publish(Message(data[n], content_type="application/json"))
            if not confirmed.done():
                pending.add(confirmed)
                confirmed.add_done_callback(pending.discard)
        deadline = time.monotonic() + 300
        while not tally.done.is_set():
            if time.monotonic() > deadline:
                raise RuntimeError(f"eventbinder: only {tally.unique} of {count} arrived")
            await asyncio.sleep(0.005)
        elapsed = time.perf_counter() - start
        await asyncio.gather(*pending)
        return elapsed, tally


# ---------------------------------------------------------------------------- driver


def child(args: argparse.Namespace) -> None:
    """Run one case in this process and print a JSON result line."""
    if args.impl == "paho":
        elapsed, tally = run_paho(args.qos, args.count, args.window, args.inflight)
    else:
        elapsed, tally = asyncio.run(
            _eventbinder(args.qos, args.count, args.window, args.inflight, args.concurrency)
        )
    print(
        json.dumps(
            {
                "impl": args.impl,
                "qos": args.qos,
                "count": args.count,
                "received_unique": tally.unique,
                "duplicates": tally.total - tally.unique,
                "lost": args.count - tally.unique,
                "seconds": round(elapsed, 3),
                "msg_per_s": round(args.count / elapsed),
                "peak_rss_mb": round(peak_rss_mb(), 1),
            }
        ),
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    """Run every case in a fresh subprocess and print a table with ratios."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--count", type=int, default=20_000)
    parser.add_argument("--window", type=int, default=500, help="producer lead over the sink")
    parser.add_argument("--inflight", type=int, default=100, help="QoS 1 in flight per client")
    parser.add_argument("--concurrency", type=int, default=64, help="eventbinder function")
    parser.add_argument("--qos", type=int, choices=(0, 1), action="append")
    parser.add_argument("--impl", choices=IMPLS, action="append")
    parser.add_argument("--repeat", type=int, default=1, help="runs per case (medians shown)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        args.impl, args.qos = args.impl[0], args.qos[0]
        child(args)
        return 0

    results: dict[tuple[int, str], list[dict[str, Any]]] = {}
    for qos in args.qos or (0, 1):
        for _ in range(args.repeat):
            for impl in args.impl or IMPLS:
                cmd = [
                    sys.executable,
                    __file__,
                    "--child",
                    f"--impl={impl}",
                    f"--qos={qos}",
                    f"--count={args.count}",
                    f"--window={args.window}",
                    f"--inflight={args.inflight}",
                    f"--concurrency={args.concurrency}",
                ]
                out = subprocess.run(cmd, capture_output=True, text=True, check=False)
                if out.returncode != 0:
                    print(out.stdout, out.stderr, file=sys.stderr)
                    return 1
                row = json.loads(out.stdout.strip().splitlines()[-1])
                print(json.dumps(row), flush=True)
                if row["lost"]:
                    print(f"LOST {row['lost']} message(s): {row}", file=sys.stderr)
                    return 1
                results.setdefault((qos, impl), []).append(row)

    print()
    print(
        f"{'qos':<4} {'paho msg/s':>11} {'eventbinder':>12} {'ratio':>6} {'paho MiB':>9}"
        f" {'eb MiB':>7} {'lost':>5} {'eb dups':>8}  ratio per run"
    )
    for qos in args.qos or (0, 1):
        paho, eb = results.get((qos, "paho")), results.get((qos, "eventbinder"))
        if not paho or not eb:
            continue
        p_rate = statistics.median(r["msg_per_s"] for r in paho)
        e_rate = statistics.median(r["msg_per_s"] for r in eb)
        per_run = " ".join(
            f"{e['msg_per_s'] / p['msg_per_s']:.2f}" for p, e in zip(paho, eb, strict=False)
        )
        print(
            f"{qos:<4} {p_rate:>11,.0f} {e_rate:>12,.0f} {e_rate / p_rate:>6.2f}"
            f" {max(r['peak_rss_mb'] for r in paho):>9.1f}"
            f" {max(r['peak_rss_mb'] for r in eb):>7.1f}"
            f" {sum(r['lost'] for r in paho + eb):>5} {sum(r['duplicates'] for r in eb):>8}"
            f"  {per_run}"
        )
    print("(msg/s and ratio: medians over the runs; MiB: peak RSS, highest run)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
