"""RabbitMQ throughput: eventbinder's rabbit binder side by side with plain kombu.

Same broker, same run, same settings on both sides, 100-byte JSON payloads:

* ``stream``: a producer publishes N messages to a topic exchange, a consumer of the
  group queue receives and acks them; time from the first publish to the last ack.
* ``function``: the producer feeds ``in``; a function consumes ``in``, decodes the
  JSON, encodes it again and publishes it to ``out``, then acks; a sink consumes
  ``out``.  eventbinder runs this as an ``@app.function`` plus an ``@app.consumer``
  through the full runtime (codecs and the delivery engine, which acks an input only
  once its output was confirmed); plain kombu runs it as three threads with their own
  connections.

Two delivery settings: ``persistent`` (delivery_mode 2 and publisher confirms, a
publish counts only once confirmed) and ``transient`` (delivery_mode 1, no confirms).
Plain kombu confirms with ``confirm_publish=True`` (one confirm wait per publish, the
kombu way); eventbinder pipelines confirms, with up to ``--window`` publishes in flight.
Both consumers use the same prefetch (eventbinder's is the binding's core ``prefetch``).
The eventbinder stream consumer is bound with ``binder.testing.consume`` (the delivery
engine with an ``async def`` handler, no runtime).

Each (implementation, scenario, mode) runs in its own subprocess so the reported peak
memory (``ru_maxrss``) belongs to that run alone.

    scripts/brokers up rabbit
    python benchmarks/rabbit_throughput.py            # 20,000 messages, all cases
    python benchmarks/rabbit_throughput.py -n 5000 --scenario stream
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import threading
import time
import uuid
from typing import Any

URL = os.environ.get("EVENTBINDER_RABBIT_URL", "amqp://guest:guest@127.0.0.1:5672//")
MODES = ("persistent", "transient")
SCENARIOS = ("stream", "function")
IMPLS = ("kombu", "eventbinder")
EXTRA_IMPLS = ("naive",)  # asyncio over kombu with a thread hop per message


def payload(n: int) -> bytes:
    """A 100-byte JSON object."""
    head = json.dumps({"id": n, "pad": ""}, separators=(",", ":"))
    return json.dumps({"id": n, "pad": "x" * (100 - len(head))}, separators=(",", ":")).encode()


_DESTINATIONS: list[str] = []


def _names() -> tuple[str, str]:
    """Fresh source and sink destination names, deleted (with their queues) at exit."""
    tag = uuid.uuid4().hex[:8]
    names = (f"bench-in-{tag}", f"bench-out-{tag}")
    _DESTINATIONS.extend(names)
    return names


def _delete_topology() -> None:
    """Delete the benchmark's exchanges and queues: durable leftovers slow the broker's boot."""
    import amqp

    conn = amqp.Connection("127.0.0.1:5672", userid="guest", password="guest")
    conn.connect()
    try:
        channel = conn.channel()
        for name in _DESTINATIONS:
            for queue in (f"{name}.sink", f"{name}.fn", f"{name}.sink.dlq", f"{name}.fn.dlq"):
                channel.queue_delete(queue)
            channel.exchange_delete(name)
    finally:
        conn.close()


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB: Linux's ``VmHWM``.

    Not ``ru_maxrss`` where ``/proc`` has the figure: Linux carries the pre-``exec``
    high-water mark over ``exec``, so a child's ``ru_maxrss`` is at least what its
    parent had when it was spawned.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ----------------------------------------------------------------------------- kombu


def _kombu_conn(persistent: bool) -> Any:
    import kombu

    return kombu.Connection(URL, transport_options={"confirm_publish": persistent})


def _kombu_topology(names: list[tuple[str, str]]) -> None:
    import kombu

    with _kombu_conn(False) as conn:
        for exchange_name, queue_name in names:
            exchange = kombu.Exchange(exchange_name, "topic", durable=True)
            kombu.Queue(queue_name, exchange, routing_key="#", durable=True)(
                conn.default_channel
            ).declare()


def _kombu_produce(exchange_name: str, count: int, persistent: bool) -> None:
    import kombu

    with _kombu_conn(persistent) as conn:
        producer = conn.Producer()
        exchange = kombu.Exchange(exchange_name, "topic", durable=True)
        mode = 2 if persistent else 1
        for n in range(count):
            producer.publish(
                payload(n),
                exchange=exchange,
                routing_key=exchange_name,
                content_type="application/json",
                content_encoding="utf-8",
                delivery_mode=mode,
                retry=False,
            )


def _kombu_consume(
    queue_name: str,
    count: int,
    prefetch: int,
    done: threading.Event,
    on_message: Any = None,
) -> None:
    import kombu

    received = 0
    with _kombu_conn(False) as conn:
        queue = kombu.Queue(queue_name, no_declare=True)

        def callback(body: Any, message: Any) -> None:
            nonlocal received
            if on_message is not None:
                on_message(body)
            message.ack()
            received += 1

        with conn.Consumer(queue, callbacks=[callback], accept=["json"], prefetch_count=prefetch):
            while received < count:
                try:
                    conn.drain_events(timeout=1)
                except TimeoutError:
                    continue
    done.set()


def run_kombu(scenario: str, persistent: bool, count: int, prefetch: int) -> float:
    """Run one plain-kombu case; return elapsed seconds."""
    import kombu

    source, sink = _names()
    if scenario == "stream":
        _kombu_topology([(source, f"{source}.sink")])
        done = threading.Event()
        consumer = threading.Thread(
            target=_kombu_consume, args=(f"{source}.sink", count, prefetch, done)
        )
        start = time.perf_counter()
        consumer.start()
        _kombu_produce(source, count, persistent)
        done.wait()
        elapsed = time.perf_counter() - start
        consumer.join()
        return elapsed

    _kombu_topology([(source, f"{source}.fn"), (sink, f"{sink}.sink")])
    local = threading.local()
    out_exchange = kombu.Exchange(sink, "topic", durable=True)
    mode = 2 if persistent else 1

    def function(body: Any) -> None:
        if not hasattr(local, "producer"):
            local.conn = _kombu_conn(persistent)
            local.producer = local.conn.Producer()
        local.producer.publish(
            json.dumps(body).encode(),
            exchange=out_exchange,
            routing_key=sink,
            content_type="application/json",
            content_encoding="utf-8",
            delivery_mode=mode,
            retry=False,
        )

    fn_done, sink_done = threading.Event(), threading.Event()
    threads = [
        threading.Thread(
            target=_kombu_consume, args=(f"{source}.fn", count, prefetch, fn_done, function)
        ),
        threading.Thread(target=_kombu_consume, args=(f"{sink}.sink", count, prefetch, sink_done)),
    ]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    _kombu_produce(source, count, persistent)
    sink_done.wait()
    elapsed = time.perf_counter() - start
    for thread in threads:
        thread.join()
    return elapsed


# ----------------------------------------------------------------------- eventbinder


async def _publish_all(producer: Any, count: int, window: int) -> None:
    """Publish ``count`` messages with at most ``window`` publishes in flight.

    ``publish`` queues the message at once and returns a future that the broker's
    confirm resolves, so the window is kept with a done-callback per future.
    """
    from binder.message import Message

    slots = asyncio.Semaphore(window)
    errors: list[BaseException] = []

    def finished(future: asyncio.Future[None]) -> None:
        slots.release()
        if not future.cancelled() and future.exception() is not None:
            errors.append(future.exception())  # type: ignore[arg-type]

    for n in range(count):
        await slots.acquire()
        confirmed = producer.publish(Message(payload(n), content_type="application/json"))
        confirmed.add_done_callback(finished)
    for _ in range(window):  # wait for the tail
        await slots.acquire()
    if errors:
        raise errors[0]


async def _eventbinder_stream(persistent: bool, count: int, prefetch: int, window: int) -> float:
    from binder.spi import ConsumerSpec, ProducerSpec
    from binder.testing import consume
    from binders.rabbit.binder import RabbitBinder
    from binders.rabbit.settings import validate_binding_options, validate_settings

    destination, _ = _names()
    binder = RabbitBinder("bench", validate_settings({"url": URL}))
    await binder.start()
    received = 0
    done = asyncio.Event()

    async def handler(message: Any) -> None:
        nonlocal received
        received += 1
        if received == count:
            done.set()

    produce_options = {"persistent": persistent, "confirms": persistent}
    consumer = None
    try:
        consumer = await consume(
            binder,
            ConsumerSpec(
                "sink-in-0",
                destination,
                "sink",
                prefetch=prefetch,
                options=validate_binding_options({}, "consumer"),
            ),
            handler,
        )
        producer = await binder.bind_producer(
            ProducerSpec(
                "src-out-0",
                destination,
                options=validate_binding_options(produce_options, "producer"),
            )
        )
        start = time.perf_counter()
        await _publish_all(producer, count, window)
        await done.wait()
        return time.perf_counter() - start
    finally:
        if consumer is not None:
            await consumer.close()
        await binder.close()


async def _eventbinder_function(
    persistent: bool, count: int, prefetch: int, window: int, concurrency: int
) -> float:
    from binder.app import App
    from binder.spi import ProducerSpec
    from binder.testing import run_app
    from binders.rabbit.binder import RabbitBinder
    from binders.rabbit.settings import validate_binding_options, validate_settings

    source, sink = _names()
    app = App("bench")
    received = 0
    done = asyncio.Event()

    @app.function(input=source, output=sink, group="fn")
    def fn(order: dict) -> dict:
        return order

    @app.consumer(sink, group="sink")
    def collect(order: dict) -> None:
        nonlocal received
        received += 1
        if received == count:
            done.set()

    produce = {"persistent": persistent, "confirms": persistent}
    config = {
        "binders": {"rabbit": {"type": "rabbit", "url": URL}},
        "default_binder": "rabbit",
        "bindings": {
            "fn-in-0": {"concurrency": concurrency, "prefetch": prefetch},
            "fn-out-0": {"rabbit": produce},
            "collect-in-0": {"prefetch": prefetch},
        },
    }
    # record=False: the harness watches nothing, the app runs as under `binder run`.
    async with run_app(app, config, record=False):
        # The source has its own binder (own connection), like the kombu producer thread.
        feeder = RabbitBinder("feeder", validate_settings({"url": URL}))
        await feeder.start()
        try:
            producer = await feeder.bind_producer(
                ProducerSpec(
                    "src-out-0", source, options=validate_binding_options(produce, "producer")
                )
            )
            start = time.perf_counter()
            await _publish_all(producer, count, window)
            await done.wait()
            return time.perf_counter() - start
        finally:
            await feeder.close()


def run_eventbinder(
    scenario: str, persistent: bool, count: int, prefetch: int, window: int, concurrency: int
) -> float:
    """Run one eventbinder case; return elapsed seconds."""
    if scenario == "stream":
        return asyncio.run(_eventbinder_stream(persistent, count, prefetch, window))
    return asyncio.run(_eventbinder_function(persistent, count, prefetch, window, concurrency))


# -------------------------------------------------------- naive bridge (for contrast)


async def _naive_stream(persistent: bool, count: int, prefetch: int) -> float:
    """The bridge the binder avoids: a thread hop per message in each direction.

    Publishing awaits ``run_in_executor`` per message on a kombu producer with
    ``confirm_publish`` (one confirm at a time); the consumer thread hands each
    delivery to the loop with ``run_coroutine_threadsafe`` and waits before acking.
    """
    from concurrent.futures import ThreadPoolExecutor

    import kombu

    loop = asyncio.get_running_loop()
    source, _ = _names()
    queue_name = f"{source}.sink"
    _kombu_topology([(source, queue_name)])
    received = 0
    done = asyncio.Event()

    async def handler(body: Any) -> None:
        nonlocal received
        received += 1
        if received == count:
            done.set()

    stop = threading.Event()

    def consume() -> None:
        with _kombu_conn(False) as conn:

            def callback(body: Any, message: Any) -> None:
                asyncio.run_coroutine_threadsafe(handler(body), loop).result()
                message.ack()

            queue = kombu.Queue(queue_name, no_declare=True)
            with conn.Consumer(
                queue, callbacks=[callback], accept=["json"], prefetch_count=prefetch
            ):
                while not stop.is_set():
                    try:
                        conn.drain_events(timeout=0.2)
                    except TimeoutError:
                        continue

    pool = ThreadPoolExecutor(1)
    conn = _kombu_conn(persistent)
    producer = await loop.run_in_executor(pool, conn.Producer)
    exchange = kombu.Exchange(source, "topic", durable=True)
    mode = 2 if persistent else 1

    def publish(n: int) -> None:
        producer.publish(
            payload(n),
            exchange=exchange,
            routing_key=source,
            content_type="application/json",
            content_encoding="utf-8",
            delivery_mode=mode,
            retry=False,
        )

    consumer = threading.Thread(target=consume)
    consumer.start()
    try:
        start = time.perf_counter()
        for n in range(count):
            await loop.run_in_executor(pool, publish, n)
        await done.wait()
        return time.perf_counter() - start
    finally:
        stop.set()
        await asyncio.to_thread(consumer.join)
        await loop.run_in_executor(pool, conn.release)
        pool.shutdown()


# ---------------------------------------------------------------------------- driver


def _run_case(args: argparse.Namespace, persistent: bool) -> float:
    if args.impl == "kombu":
        return run_kombu(args.scenario, persistent, args.count, args.prefetch)
    if args.impl == "naive":
        if args.scenario != "stream":
            raise SystemExit("the naive bridge is measured for the stream scenario only")
        return asyncio.run(_naive_stream(persistent, args.count, args.prefetch))
    return run_eventbinder(
        args.scenario, persistent, args.count, args.prefetch, args.window, args.concurrency
    )


def child(args: argparse.Namespace) -> None:
    """Run one case in this process and print a JSON result line."""
    persistent = args.mode == "persistent"
    try:
        elapsed = _run_case(args, persistent)
    finally:
        _delete_topology()
    print(
        json.dumps(
            {
                "impl": args.impl,
                "scenario": args.scenario,
                "mode": args.mode,
                "count": args.count,
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
    parser.add_argument("--prefetch", type=int, default=256)
    parser.add_argument("--window", type=int, default=256, help="eventbinder publishes in flight")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=1,
        help="eventbinder function (1, the default setting: outputs are pipelined anyway)",
    )
    parser.add_argument("--scenario", choices=SCENARIOS, action="append")
    parser.add_argument("--mode", choices=MODES, action="append")
    parser.add_argument("--impl", choices=IMPLS + EXTRA_IMPLS, action="append")
    parser.add_argument("--repeat", type=int, default=1, help="runs per case (best is kept)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        args.impl, args.scenario, args.mode = args.impl[0], args.scenario[0], args.mode[0]
        child(args)
        return 0

    results: dict[tuple[str, str, str], dict[str, Any]] = {}
    for scenario in args.scenario or SCENARIOS:
        for mode in args.mode or MODES:
            for _ in range(args.repeat):
                for impl in args.impl or IMPLS:
                    cmd = [
                        sys.executable,
                        __file__,
                        "--child",
                        f"--impl={impl}",
                        f"--scenario={scenario}",
                        f"--mode={mode}",
                        f"--count={args.count}",
                        f"--prefetch={args.prefetch}",
                        f"--window={args.window}",
                        f"--concurrency={args.concurrency}",
                    ]
                    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
                    if out.returncode != 0:
                        print(out.stdout, out.stderr, file=sys.stderr)
                        return 1
                    row = json.loads(out.stdout.strip().splitlines()[-1])
                    print(json.dumps(row), flush=True)
                    key = (scenario, mode, impl)
                    if key not in results or row["msg_per_s"] > results[key]["msg_per_s"]:
                        results[key] = row

    print()
    print(
        f"{'scenario':<9} {'mode':<11} {'kombu msg/s':>12} {'eventbinder':>12} {'ratio':>6}"
        f" {'kombu MiB':>10} {'eb MiB':>7}"
    )
    for scenario in args.scenario or SCENARIOS:
        for mode in args.mode or MODES:
            plain = results.get((scenario, mode, "kombu"))
            ours = results.get((scenario, mode, "eventbinder"))
            if not plain or not ours:
                continue
            ratio = ours["msg_per_s"] / plain["msg_per_s"]
            print(
                f"{scenario:<9} {mode:<11} {plain['msg_per_s']:>12} {ours['msg_per_s']:>12}"
                f" {ratio:>6.2f} {plain['peak_rss_mb']:>10} {ours['peak_rss_mb']:>7}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
