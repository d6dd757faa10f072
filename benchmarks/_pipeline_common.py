"""What every implementation of the pipeline benchmark shares: settings, the case, the
sink's tally and the producer's drive loop (see ``pipeline_throughput.py``).

Standard library only: FastStream cases import it under another interpreter.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

KAFKA = os.environ.get("EVENTBINDER_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
RABBIT_URL = os.environ.get("EVENTBINDER_RABBIT_URL", "amqp://guest:guest@127.0.0.1:5672//")
MQTT_HOST = os.environ.get("EVENTBINDER_MQTT_HOST", "127.0.0.1")
MQTT_PORT = int(os.environ.get("EVENTBINDER_MQTT_PORT", "1883"))

BROKERS = ("kafka", "rabbit", "mqtt", "memory")
ALL_IMPLS = ("eventbinder", "eventbinder-async", "plain", "faststream", "faststream-ack")
DEFAULT_IMPLS = ("eventbinder", "plain", "faststream", "faststream-ack")
FASTSTREAM_BROKERS = ("kafka", "rabbit")
PLAIN_CLIENT = {"kafka": "aiokafka", "rabbit": "aio-pika", "mqtt": "paho-mqtt", "memory": "asyncio"}
CLIENT_PACKAGES = {
    "kafka": ("aiokafka",),
    "rabbit": ("kombu", "amqp"),
    "mqtt": ("paho-mqtt",),
    "memory": (),
}

# The eventbinder Kafka binder's producer defaults (binders/kafka/settings.py); the
# plain aiokafka producer uses the same values, everything else at aiokafka's defaults.
KAFKA_PRODUCER = {
    "acks": "all",
    "enable_idempotence": True,
    "linger_ms": 5,
    "max_batch_size": 16384,
}
# Consumer timeouts as the binder sets them (they only affect group joins, not timing).
KAFKA_CONSUMER = {"session_timeout_ms": 10000, "heartbeat_interval_ms": 500}
# Session of eventbinder's MQTT group consumers: clean start off, this expiry.
MQTT_GROUP_SESSION_EXPIRY = 86400

BENCH_VENV = Path.home() / ".cache" / "eventbinder-bench" / "faststream-venv"
FASTSTREAM_SPEC = "faststream[kafka,rabbit]==0.7.*"

_HEAD = len(json.dumps({"id": 10_000, "pad": ""}))
PAD = "x" * (100 - _HEAD)


def payload(i: int) -> dict[str, Any]:
    """The message: ~100 bytes once encoded as JSON."""
    return {"id": i, "pad": PAD}


def encode(obj: Any) -> bytes:
    """JSON as every plain implementation writes it."""
    return json.dumps(obj).encode()


def uses_bench_venv(broker: str, impl: str) -> bool:
    """FastStream, and aio-pika for plain RabbitMQ, live in the cached virtualenv."""
    return impl.startswith("faststream") or (broker == "rabbit" and impl == "plain")


def available(broker: str, impl: str) -> bool:
    """Whether ``impl`` has a case on ``broker`` (FastStream: Kafka and RabbitMQ)."""
    return not impl.startswith("faststream") or broker in FASTSTREAM_BROKERS


@dataclass(frozen=True, slots=True)
class Case:
    """One measured run, as the child process sees it."""

    broker: str
    impl: str
    count: int
    window: int
    tag: str
    timeout: float
    rabbit_prefetch: int
    mqtt_inflight: int
    mqtt_receive_maximum: int

    @property
    def names(self) -> tuple[str, str]:
        """Fresh source and sink destinations (MQTT topics use ``/`` levels)."""
        if self.broker == "mqtt":
            return f"bench/in-{self.tag}", f"bench/out-{self.tag}"
        return f"bench-in-{self.tag}", f"bench-out-{self.tag}"


# ------------------------------------------------------------------------- the sink


class Tally:
    """Distinct ids seen by the sink; the producer waits on it for room in the window.

    ``add`` may be called from any thread (a plain ``def`` sink handler may run in a
    worker thread): it uses only operations that are atomic in CPython (``set.add``,
    ``list.append``, ``len``) and wakes the asyncio loop with ``call_soon_threadsafe``,
    and only when the producer waits and the sink caught up by a quarter of the window
    (so the harness adds no wake-up per message), or when the last id arrived.
    """

    def __init__(self, count: int) -> None:
        self.count = count
        self.seen: set[int] = set()
        self._arrivals: list[int] = []
        self.finished_at: float | None = None
        self.error: BaseException | None = None
        self.waiting = False  # the producer waits for room: wake it on progress
        self.wake_at = 0  # ... once this many distinct ids arrived
        self.room = asyncio.Event()
        self.done = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._thread = threading.get_ident()

    @property
    def unique(self) -> int:
        return len(self.seen)

    @property
    def duplicates(self) -> int:
        return len(self._arrivals) - len(self.seen)

    def add(self, i: int) -> None:
        """Record id ``i`` at the sink."""
        self._arrivals.append(i)
        self.seen.add(i)
        if len(self.seen) >= self.count and self.finished_at is None:
            self.finished_at = time.perf_counter()
            self._signal()
        elif self.waiting and len(self.seen) >= self.wake_at:
            self.waiting = False
            self._signal()

    def fail(self, exc: BaseException) -> None:
        """A stage failed: stop waiting and report ``exc``."""
        if self.error is None:
            self.error = exc
        self._signal()

    def _signal(self) -> None:
        if threading.get_ident() == self._thread:
            self._wake()
        else:  # a sink handler in a worker thread
            with contextlib.suppress(RuntimeError):  # loop closed: nobody waits any more
                self._loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        self.room.set()
        if self.finished_at is not None or self.error is not None:
            self.done.set()

    async def wait_for_room(self, published: int, window: int) -> None:
        """Return once ``published - distinct ids`` is at most three quarters of
        ``window`` (or a stage failed): the producer then runs a quarter window ahead."""
        target = published - window + max(1, window // 4)
        while len(self.seen) < target and self.error is None:
            self.room.clear()
            self.wake_at = target
            self.waiting = True
            if len(self.seen) >= target:
                break
            await self.room.wait()
        self.waiting = False


class InFlight:
    """Publishes running as tasks; a failure is reported to the tally at once."""

    def __init__(self, tally: Tally) -> None:
        self.tally = tally
        self.tasks: set[asyncio.Future[Any]] = set()

    def add(self, work: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(work)
        self.tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Future[Any]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.tally.fail(task.exception())  # type: ignore[arg-type]

    async def drain(self) -> None:
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def drive(case: Case, tally: Tally, publish: Callable[[int], Awaitable[None]]) -> float:
    """Publish ids 0..N-1 through ``publish`` within the window; return elapsed seconds."""

    async def run() -> float:
        start = time.perf_counter()
        for i in range(case.count):
            if i - len(tally.seen) >= case.window:
                await tally.wait_for_room(i, case.window)
            if tally.error is not None:
                break
            await publish(i)
        await tally.done.wait()
        return start

    try:
        start = await asyncio.wait_for(run(), case.timeout)
    except TimeoutError:
        raise RuntimeError(
            f"only {tally.unique} of {case.count} distinct ids within {case.timeout:.0f}s"
        ) from None
    if tally.error is not None:
        raise tally.error
    assert tally.finished_at is not None
    return tally.finished_at - start


def failing(tally: Tally, work: Awaitable[None]) -> asyncio.Task[None]:
    """Run a stage as a task; its exception fails the case instead of vanishing."""

    async def guarded() -> None:
        try:
            await work
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            tally.fail(exc)

    return asyncio.ensure_future(guarded())
