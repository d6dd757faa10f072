"""Function-pipeline throughput: eventbinder beside the plain client and FastStream.

What is measured (identical for every implementation and broker): a producer publishes
N (default 20,000) JSON dicts of ~100 bytes, ``{"id": i, "pad": "xxx..."}``, to a
source destination ``in``, with concurrent publishes held at most ``--window`` (2,000)
ahead of the sink (the producer waits while ``published - distinct ids at the sink >=
window``); a function consumes ``in`` as consumer group ``fn``, decodes the JSON,
returns the dict unchanged and publishes it to ``out``; a sink consumes ``out`` as
group ``sink`` and counts distinct ids (duplicates are counted and reported apart).
The clock runs from the first publish to the N-th distinct id at the sink; connecting,
declaring, group joins and shutdown are outside it.  The three parts run in one process
(on one asyncio loop where the library is asyncio).  Every case uses fresh destination
names and deletes what it created afterwards: RabbitMQ queues and exchanges and Kafka
topics (the parent, after each case, even a failed one); the plain MQTT case ends its
persistent sessions (eventbinder's MQTT group sessions stay until their default
expiry: this benchmark does not configure or reach into eventbinder).

Implementations (``--impl``, repeatable; default all but ``eventbinder-async``):

* ``eventbinder``: ``@app.function(input=IN, output=OUT, group="fn")`` and
  ``@app.consumer(OUT, group="sink")``, plain ``def`` handlers, run by
  ``binder.testing.run_app(app, config, record=False)`` with nothing but the broker
  address configured (default settings: no concurrency, prefetch or other tuning);
  the producer is concurrent ``await app.send(IN, dict)`` calls.
* ``eventbinder-async``: the same with ``async def`` handlers.
* ``plain``: the client library doing the same work with the same guarantees.
  Kafka, aiokafka: one producer (acks=all, idempotence, linger_ms=5, 16 KiB batches:
  the eventbinder Kafka binder's defaults), one consumer per group without auto
  commit; the function sends a ``getmany`` batch without awaiting each record, awaits
  the batch's acks, then commits it; 1-partition topics.  RabbitMQ, aio-pika: a topic
  exchange per destination, durable queue ``<dest>.<group>`` bound with ``#``,
  persistent messages, publisher confirms, prefetch ``--rabbit-prefetch``; the function
  acks each input only after its output was confirmed, with many publishes in flight.
  MQTT, paho-mqtt: MQTT 5, QoS 1, three clients (producer; function on
  ``$share/fn/<in>``; sink on ``$share/sink/<out>``), the function and the sink with
  persistent sessions like eventbinder's group consumers, manual acks: the function
  acks an input only once the PUBACK of its output arrived; in flight / receive
  maximum ``--mqtt-inflight`` / ``--mqtt-receive-maximum``; paho driven by the asyncio
  loop through its external-loop API, as eventbinder does (twice as fast here as
  paho's own network threads).  Memory: two ``asyncio.Queue`` hops with the same JSON
  decode and encode.
* ``faststream`` and ``faststream-ack`` (Kafka and RabbitMQ): FastStream 0.7.x at its
  defaults, the second with ``ack_policy=AckPolicy.ACK`` (ack after the handler):
  ``@broker.publisher(OUT)`` over ``@broker.subscriber(IN, group_id="fn")`` on an
  ``async def`` returning the dict (FastStream's own idiom), a subscriber on OUT as the
  sink, the broker run with ``async with broker`` + ``broker.start()``.  Only what the
  pipeline needs is set: Kafka ``auto_offset_reset="earliest"`` (FastStream's default,
  "latest", is not the same guarantee for a group); RabbitMQ the same durable topology
  as the others.  Everything else stays FastStream's default, which differs from the
  others: on Kafka acks=1, no idempotence, linger 0 and, without ``-ack``, auto commit
  (commit before the handler ran); on RabbitMQ transient messages (``persist=False``)
  and unlimited prefetch (there FastStream's default already acks after the handler,
  so the two cases differ only on errors); and it logs every message at INFO.

FastStream, and aio-pika for the plain RabbitMQ case, run from a cached virtualenv,
``~/.cache/eventbinder-bench/faststream-venv``, created on first use with
``pip install 'faststream[kafka,rabbit]==0.7.*'`` (the project's aiokafka version
pinned when FastStream accepts it), so the project's own client versions never change.

Each (broker, implementation, run) is a subprocess of its own, so its peak memory
(the child's own high-water mark, ``VmHWM``; see ``_harness.peak_rss_mib`` for why not
``ru_maxrss``) is that case's alone.  Runs are interleaved (``for run: for impl``),
so slow drift of the machine affects every side alike.  All figures come from the same
brokers in the same run; compare them with each other, not with other machines.

    scripts/brokers up
    python benchmarks/pipeline_throughput.py --broker all            # 20,000 msgs, 3 runs
    python benchmarks/pipeline_throughput.py --broker kafka -n 5000 --repeat 1
    python benchmarks/pipeline_throughput.py --broker rabbit --impl plain --impl faststream
    python benchmarks/pipeline_throughput.py --broker all --json results.json

Printed per broker: msg/s per implementation (median over ``--repeat`` runs, and every
run), peak RSS (highest run), duplicates, and the ratios eventbinder / plain and
eventbinder / FastStream per run and their median.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import traceback
import uuid
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import _harness
from _pipeline_common import (
    ALL_IMPLS,
    BENCH_VENV,
    BROKERS,
    CLIENT_PACKAGES,
    DEFAULT_IMPLS,
    FASTSTREAM_SPEC,
    KAFKA,
    MQTT_HOST,
    MQTT_PORT,
    PLAIN_CLIENT,
    RABBIT_URL,
    Case,
    InFlight,
    Tally,
    available,
    drive,
    payload,
    uses_bench_venv,
)
from _pipeline_faststream import run_faststream_kafka, run_faststream_rabbit
from _pipeline_plain import run_plain_kafka, run_plain_memory, run_plain_mqtt, run_plain_rabbit

# ----------------------------------------------------------------------- eventbinder


def eventbinder_config(broker: str) -> dict[str, Any]:
    """Only the broker address: every other setting at eventbinder's default."""
    if broker == "kafka":
        return {"binders": {"b": {"type": "kafka", "bootstrap_servers": KAFKA}}}
    if broker == "rabbit":
        return {"binders": {"b": {"type": "rabbit", "url": RABBIT_URL}}}
    if broker == "mqtt":
        return {"binders": {"b": {"type": "mqtt", "host": MQTT_HOST, "port": MQTT_PORT}}}
    return {}  # the default in-memory binder


async def run_eventbinder(case: Case, *, coroutines: bool) -> tuple[float, Tally]:
    """The pipeline as a new user writes it, through the public API only."""
    from binder import App
    from binder.testing import run_app

    source, sink_topic = case.names
    tally = Tally(case.count)
    app = App("bench")
    if coroutines:

        @app.function(input=source, output=sink_topic, group="fn")
        async def relay(order: dict) -> dict:
            return order

        @app.consumer(sink_topic, group="sink")
        async def sink(order: dict) -> None:
            tally.add(order["id"])

    else:

        @app.function(input=source, output=sink_topic, group="fn")
        def relay(order: dict) -> dict:
            return order

        @app.consumer(sink_topic, group="sink")
        def sink(order: dict) -> None:
            tally.add(order["id"])

    inflight = InFlight(tally)

    async def publish(i: int) -> None:
        inflight.add(app.send(source, payload(i)))

    # record=False: the harness watches nothing, the app runs as under `binder run`.
    async with run_app(app, eventbinder_config(case.broker), record=False):
        elapsed = await drive(case, tally, publish)
        await inflight.drain()
        return elapsed, tally


# --------------------------------------------------------------------------- child


def _versions(case: Case) -> dict[str, str]:
    if case.impl.startswith("faststream"):
        names: tuple[str, ...] = (
            "faststream",
            "aiokafka" if case.broker == "kafka" else "aio-pika",
        )
    elif case.impl == "plain":
        names = {
            "kafka": ("aiokafka",),
            "rabbit": ("aio-pika", "aiormq"),
            "mqtt": ("paho-mqtt",),
        }.get(case.broker, ())
    else:
        names = ("eventbinder", *CLIENT_PACKAGES[case.broker])
    found = {}
    for name in names:
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[name] = metadata.version(name)
    found["python"] = sys.version.split()[0]
    return found


def run(case: Case) -> tuple[float, Tally]:
    """Run ``case`` in this process."""
    if case.impl.startswith("eventbinder"):
        return asyncio.run(run_eventbinder(case, coroutines=case.impl == "eventbinder-async"))
    if case.impl.startswith("faststream"):
        runner = run_faststream_kafka if case.broker == "kafka" else run_faststream_rabbit
        return asyncio.run(runner(case, ack=case.impl == "faststream-ack"))
    plain = {
        "kafka": run_plain_kafka,
        "rabbit": run_plain_rabbit,
        "mqtt": run_plain_mqtt,
        "memory": run_plain_memory,
    }
    return asyncio.run(plain[case.broker](case))


def child(case: Case) -> int:
    """Run one case and print its result line (an ``error`` key when it failed)."""
    row: dict[str, Any] = {"broker": case.broker, "impl": case.impl, "count": case.count}
    try:
        elapsed, tally = run(case)
    except Exception as exc:
        traceback.print_exc()
        row["error"] = f"{type(exc).__name__}: {exc}"
    else:
        row.update(
            seconds=round(elapsed, 3),
            msg_per_s=round(case.count / elapsed),
            unique=tally.unique,
            duplicates=tally.duplicates,
        )
    row["peak_rss_mib"] = round(_harness.peak_rss_mib(), 1)
    row["versions"] = _versions(case)
    _harness.emit(row)
    return 0 if "error" not in row else 1


# -------------------------------------------------------------------------- parent


def _kafka_setup(tag: str) -> None:
    """Both topics up front with 1 partition, the same for every implementation."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    async def create() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA)
        await admin.start()
        try:
            await admin.create_topics(
                [NewTopic(f"bench-{side}-{tag}", 1, 1) for side in ("in", "out")]
            )
        finally:
            await admin.close()

    asyncio.run(create())


def _kafka_cleanup(tag: str) -> None:
    """Delete every topic of this case (including dead-letter topics, if any)."""
    from aiokafka.admin import AIOKafkaAdminClient

    async def delete() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA)
        await admin.start()
        try:
            topics = [t for t in await admin.list_topics() if tag in t]
            if topics:
                await admin.delete_topics(topics)
        finally:
            await admin.close()

    asyncio.run(delete())


def _rabbit_cleanup(tag: str) -> None:
    """Delete the case's exchanges and queues: durable leftovers slow the broker's boot."""
    from urllib.parse import unquote, urlsplit

    import amqp

    url = urlsplit(RABBIT_URL)
    vhost = unquote(url.path[1:]) or "/"
    conn = amqp.Connection(
        f"{url.hostname}:{url.port or 5672}",
        userid=unquote(url.username or "guest"),
        password=unquote(url.password or "guest"),
        virtual_host=vhost,
    )
    conn.connect()
    try:
        channel = conn.channel()
        for name in (f"bench-in-{tag}", f"bench-out-{tag}"):
            for group in ("fn", "sink"):
                channel.queue_delete(f"{name}.{group}")
                channel.queue_delete(f"{name}.{group}.dlq")
            channel.exchange_delete(name)
    finally:
        conn.close()


SETUP: dict[str, Callable[[str], None]] = {"kafka": _kafka_setup}
CLEANUP: dict[str, Callable[[str], None]] = {"kafka": _kafka_cleanup, "rabbit": _rabbit_cleanup}


def _around_case(broker: str, tag: str, when: str) -> None:
    """Set up before / clean up after one case (in the parent: a killed child too)."""
    action = (SETUP if when == "setup" else CLEANUP).get(broker)
    if action is None:
        return
    try:
        action(tag)
    except Exception as exc:
        print(f"  {broker} {when} of {tag} failed: {type(exc).__name__}: {exc}", file=sys.stderr)


def _bench_python() -> Path:
    """The cached virtualenv with FastStream (and aio-pika), created on first use."""
    candidates: list[list[str]] = []
    with contextlib.suppress(metadata.PackageNotFoundError):
        # The same aiokafka as the project, when FastStream accepts it.
        candidates.append([FASTSTREAM_SPEC, f"aiokafka=={metadata.version('aiokafka')}"])
    candidates += [[FASTSTREAM_SPEC], ["faststream[kafka,rabbit]"]]
    return _harness.ensure_venv(BENCH_VENV, candidates)


def _label(broker: str, impl: str) -> str:
    return f"plain {PLAIN_CLIENT[broker]}" if impl == "plain" else impl


def _summary(
    rows: list[dict[str, Any]], brokers: list[str], plan: dict[str, list[str]], repeat: int
) -> dict[str, Any]:
    """Print the table per broker; return the medians and ratios for the JSON file."""
    summary: dict[str, Any] = {}
    for broker in brokers:
        impls = plan[broker]
        if not impls:
            continue
        rates: dict[str, list[float | None]] = {}
        table = []
        summary[broker] = {"impls": {}, "ratios": {}}
        for impl in impls:
            mine = sorted(
                (r for r in rows if r["broker"] == broker and r["impl"] == impl),
                key=lambda r: r["run"],
            )
            per_run: list[float | None] = [None] * repeat
            for r in mine:
                if "error" not in r:
                    per_run[r["run"]] = r["msg_per_s"]
            rates[impl] = per_run
            ok = [r for r in mine if "error" not in r]
            med = _harness.median([r["msg_per_s"] for r in ok])
            peak = max((r["peak_rss_mib"] for r in ok), default=None)
            dups = sum(r.get("duplicates", 0) for r in ok)
            failed = len(mine) - len(ok)
            summary[broker]["impls"][impl] = {
                "label": _label(broker, impl),
                "median_msg_per_s": med,
                "msg_per_s": per_run,
                "peak_rss_mib": peak,
                "duplicates": dups,
                "failed_runs": failed,
                "versions": ((ok or mine)[0] if mine else {}).get("versions", {}),
            }
            table.append(
                [
                    _label(broker, impl),
                    f"{med:,.0f}" if med is not None else "-",
                    " ".join(f"{v:,.0f}" if v is not None else "fail" for v in per_run),
                    f"{peak:.1f}" if peak is not None else "-",
                    str(dups),
                    str(failed),
                ]
            )
        print(f"\n{broker} (msg/s: median of {repeat} run(s), then each run)")
        print(
            _harness.format_table(
                ["implementation", "msg/s", "per run", "peak RSS MiB", "dups", "failed"],
                table,
                indent="  ",
            )
        )
        for impl in impls:
            versions = summary[broker]["impls"][impl]["versions"]
            listed = ", ".join(f"{k} {v}" for k, v in versions.items())
            print(f"  {_label(broker, impl)}: {listed or 'no versions (failed)'}")
        ratio_rows = []
        for ours in (i for i in impls if i.startswith("eventbinder")):
            for theirs in (i for i in impls if not i.startswith("eventbinder")):
                ratios = _harness.paired_ratios(rates[ours], rates[theirs])
                med = _harness.median(ratios)
                name = f"{ours} / {_label(broker, theirs)}"
                summary[broker]["ratios"][name] = {"median": med, "per_run": ratios}
                ratio_rows.append(
                    [
                        name,
                        f"{med:.2f}" if med is not None else "-",
                        " ".join(f"{x:.2f}" for x in ratios) or "-",
                    ]
                )
        if ratio_rows:
            print()
            print(_harness.format_table(["ratio", "median", "per run"], ratio_rows, indent="  "))
    return summary


def main(argv: list[str] | None = None) -> int:
    """Run every case in a subprocess of its own, interleaved, and print the table."""
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--broker", choices=(*BROKERS, "all"), default="all")
    parser.add_argument(
        "--impl",
        choices=ALL_IMPLS,
        action="append",
        help=f"repeatable; default {', '.join(DEFAULT_IMPLS)}",
    )
    parser.add_argument("-n", "--count", type=int, default=20_000, help="messages per run")
    parser.add_argument("--repeat", type=int, default=3, help="runs per case (medians shown)")
    parser.add_argument("--window", type=int, default=2000, help="producer lead over the sink")
    parser.add_argument(
        "--rabbit-prefetch", type=int, default=256, help="prefetch of the plain aio-pika consumers"
    )
    parser.add_argument(
        "--mqtt-inflight", type=int, default=100, help="plain paho: unconfirmed QoS 1 publishes"
    )
    parser.add_argument(
        "--mqtt-receive-maximum",
        type=int,
        default=100,
        help="plain paho group sessions' receive maximum",
    )
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per run")
    parser.add_argument("--json", type=Path, help="also write all runs and medians here")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--tag", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        return child(
            Case(
                broker=args.broker,
                impl=args.impl[0],
                count=args.count,
                window=args.window,
                tag=args.tag,
                timeout=args.timeout,
                rabbit_prefetch=args.rabbit_prefetch,
                mqtt_inflight=args.mqtt_inflight,
                mqtt_receive_maximum=args.mqtt_receive_maximum,
            )
        )

    brokers = list(BROKERS) if args.broker == "all" else [args.broker]
    wanted = list(dict.fromkeys(args.impl or DEFAULT_IMPLS))
    plan = {b: [i for i in wanted if available(b, i)] for b in brokers}
    bench_python: Path | None = None
    if any(uses_bench_venv(b, i) for b in brokers for i in plan[b]):
        bench_python = _bench_python()

    print(
        f"pipeline producer -> in -> function (group fn) -> out -> sink (group sink):"
        f" {args.count:,} messages of ~100 bytes JSON, window {args.window:,},"
        f" {args.repeat} run(s) per case, interleaved",
        flush=True,
    )
    rows: list[dict[str, Any]] = []
    for broker in brokers:
        for run_index in range(args.repeat):
            for impl in plan[broker]:
                tag = uuid.uuid4().hex[:8]
                python = bench_python if uses_bench_venv(broker, impl) else Path(sys.executable)
                argv_child = [
                    str(python),
                    str(Path(__file__).resolve()),
                    "--child",
                    f"--broker={broker}",
                    f"--impl={impl}",
                    f"--count={args.count}",
                    f"--window={args.window}",
                    f"--tag={tag}",
                    f"--timeout={args.timeout}",
                    f"--rabbit-prefetch={args.rabbit_prefetch}",
                    f"--mqtt-inflight={args.mqtt_inflight}",
                    f"--mqtt-receive-maximum={args.mqtt_receive_maximum}",
                ]
                _around_case(broker, tag, "setup")
                try:
                    row, stderr = _harness.run_case(argv_child, args.timeout + 120)
                finally:
                    _around_case(broker, tag, "cleanup")
                row.update(broker=broker, impl=impl, run=run_index, count=args.count)
                rows.append(row)
                head = f"[{broker} run {run_index + 1}/{args.repeat}] {_label(broker, impl):<20}"
                if "error" in row:
                    print(f"{head} FAILED: {row['error']}", flush=True)
                    if stderr:
                        print("  " + stderr.replace("\n", "\n  "), file=sys.stderr, flush=True)
                else:
                    print(
                        f"{head} {row['msg_per_s']:>8,} msg/s  {row['seconds']:7.2f} s"
                        f"  peak RSS {row['peak_rss_mib']:6.1f} MiB  dups {row['duplicates']}",
                        flush=True,
                    )
    skipped = [f"{i} on {b}" for b in brokers for i in wanted if not available(b, i)]
    if skipped:
        print(f"\nnot available: {', '.join(skipped)} (FastStream: Kafka and RabbitMQ only)")
    summary = _summary(rows, brokers, plan, args.repeat)
    print(
        "\nmsg/s: median over the runs; ratio: eventbinder / other per run (runs paired by"
        " index), then their median; peak RSS: highest run; all from the same brokers in"
        " this run."
    )
    if args.json:
        report = {
            "count": args.count,
            "repeat": args.repeat,
            "window": args.window,
            "rabbit_prefetch": args.rabbit_prefetch,
            "mqtt_inflight": args.mqtt_inflight,
            "mqtt_receive_maximum": args.mqtt_receive_maximum,
            "runs": rows,
            "summary": summary,
        }
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
