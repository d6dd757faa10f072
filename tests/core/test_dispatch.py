"""binder.dispatch: the delivery engine, driven with fake deliveries and a fake producer."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Hashable
from typing import Any

import pytest

from binder.bindings import BindingSettings
from binder.dispatch import (
    Dispatcher,
    DispatchPlan,
    HandlerCall,
    LoopDispatcher,
    OutputFailed,
    RawCall,
    RetryPolicy,
    ThreadDispatcher,
    create_dispatcher,
)
from binder.dispatch.engine import FINISHED
from binder.errors import PermanentError
from binder.invoker import Invoker
from binder.message import Message
from binder.output import OutputPort
from binder.spi import Delivery, Failure
from binder.testing import wait_until

NO_WAIT = RetryPolicy(max_attempts=3, backoff_initial=0.0, backoff_max=0.0)


class Recorded(Delivery):
    """A delivery that records how the engine settled it."""

    __slots__ = ("log", "n")

    def __init__(self, n: int, lane: Hashable | None, log: list[tuple[str, int]]) -> None:
        super().__init__(Message(str(n).encode(), content_type="text/plain"), lane)
        self.n = n
        self.log = log

    def ack(self) -> None:
        self.log.append(("ack", self.n))

    def nack(self) -> None:
        self.log.append(("nack", self.n))

    def release(self) -> None:
        self.log.append(("release", self.n))


class Producer:
    """A producer whose confirmations the test gives (or refuses) one by one."""

    def __init__(
        self,
        *,
        confirm_at_once: bool = False,
        failures: int = 0,
        error: Exception | None = None,
    ) -> None:
        self.sent: list[Message] = []
        self.pending: list[asyncio.Future[None]] = []
        self.confirm_at_once = confirm_at_once
        self.failures = failures
        self.error = error or ConnectionError("broker said no")

    def publish(self, message: Message) -> asyncio.Future[None]:
        self.sent.append(message)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.failures:
            self.failures -= 1
            future.set_exception(self.error)
        elif self.confirm_at_once:
            future.set_result(None)
        else:
            self.pending.append(future)
        return future

    def confirm(self, index: int) -> None:
        self.pending[index].set_result(None)

    async def close(self) -> None:
        pass


class Binding:
    """Stands in for a bound consumer: collects dead letters."""

    def __init__(self, fail: bool = False) -> None:
        self.dead: list[tuple[Delivery, Failure]] = []
        self.fail = fail

    async def dead_letter(self, delivery: Delivery, failure: Failure) -> None:
        if self.fail:
            raise ConnectionError("dead-letter store down")
        self.dead.append((delivery, failure))

    async def close(self) -> None:
        pass


def port(producer: Producer) -> OutputPort:
    settings = BindingSettings(
        name="f-out-0", direction="producer", destination="out", binder="memory"
    )
    return OutputPort(settings, producer)  # type: ignore[arg-type]


def plan(
    function: Callable[..., Any],
    *,
    output: OutputPort | None = None,
    threaded: bool = True,
    retry: RetryPolicy = NO_WAIT,
    **kwargs: Any,
) -> DispatchPlan:
    kwargs.setdefault("dead_letter", "in.g.dlq")
    return DispatchPlan(
        binding="f-in-0",
        destination="in",
        group="g",
        call=HandlerCall(Invoker(function, threaded=threaded), output),
        retry=retry,
        threaded=threaded,
        **kwargs,
    )


async def started(dispatch_plan: DispatchPlan, binding: Binding | None = None) -> Dispatcher:
    dispatcher = create_dispatcher(dispatch_plan)
    dispatcher.attach(binding or Binding())  # type: ignore[arg-type]
    return dispatcher


async def stop(dispatcher: Dispatcher) -> None:
    await dispatcher.drain(5.0)
    await dispatcher.close()


# -- which dispatcher ------------------------------------------------------------------


async def test_plain_def_handlers_run_in_worker_threads_and_coroutines_on_the_loop() -> None:
    where: dict[str, int] = {}

    def sync(payload: str) -> None:
        where["sync"] = threading.get_ident()

    async def coroutine(payload: str) -> None:
        where["async"] = threading.get_ident()

    def on_loop(payload: str) -> None:
        where["loop"] = threading.get_ident()

    log: list[tuple[str, int]] = []
    dispatchers = [
        await started(plan(sync)),
        await started(plan(coroutine)),
        await started(plan(on_loop, threaded=False)),
    ]
    assert isinstance(dispatchers[0], ThreadDispatcher)
    assert isinstance(dispatchers[1], LoopDispatcher)
    assert isinstance(dispatchers[2], LoopDispatcher)
    for n, dispatcher in enumerate(dispatchers):
        dispatcher.deliver(Recorded(n, None, log))
    await wait_until(lambda: len(log) == 3, 5, "three settlements")
    assert where["sync"] != threading.get_ident()
    assert where["async"] == where["loop"] == threading.get_ident()
    for dispatcher in dispatchers:
        await stop(dispatcher)


# -- order, concurrency, pipelining ----------------------------------------------------


@pytest.mark.parametrize("flavour", ["def", "async def"])
async def test_lanes_keep_order_and_concurrency_stays_bounded(flavour: str) -> None:
    lock = threading.Lock()
    state = {"now": 0, "max": 0}
    seen: dict[Hashable, list[int]] = {}

    def enter(message: Message) -> None:
        with lock:
            state["now"] += 1
            state["max"] = max(state["max"], state["now"])
            lane, n = message.key, int(message.payload)
            seen.setdefault(lane, []).append(n)

    def leave() -> None:
        with lock:
            state["now"] -= 1

    if flavour == "def":

        def handler(message: Message) -> None:
            enter(message)
            time.sleep(0.001)  # handler work
            leave()

    else:

        async def handler(message: Message) -> None:  # type: ignore[misc]
            enter(message)
            await asyncio.sleep(0.001)  # handler work
            leave()

    log: list[tuple[str, int]] = []
    dispatcher = await started(plan(handler, concurrency=3, window=1000))
    lanes = ["a", "b", "c", "d", None]
    for n in range(200):
        lane = lanes[n % len(lanes)]
        delivery = Recorded(n, lane, log)
        delivery.message.key = lane
        dispatcher.deliver(delivery)
    await wait_until(lambda: len(log) == 200, 10, "200 settlements")
    assert 1 < state["max"] <= 3
    for lane in ("a", "b", "c", "d"):
        assert seen[lane] == sorted(seen[lane]), f"lane {lane} out of order"
        acked = [n for verdict, n in log if verdict == "ack" and lanes[n % 5] == lane]
        assert acked == sorted(acked), f"lane {lane} settled out of order"
    await stop(dispatcher)


@pytest.mark.parametrize("threaded", [True, False])
async def test_next_message_starts_before_the_output_is_confirmed(threaded: bool) -> None:
    producer = Producer()
    calls: list[int] = []

    def relay(payload: str) -> str:
        calls.append(int(payload))
        return payload

    log: list[tuple[str, int]] = []
    dispatcher = await started(plan(relay, output=port(producer), threaded=threaded))
    deliveries = [Recorded(n, "lane", log) for n in range(3)]
    for delivery in deliveries:
        dispatcher.deliver(delivery)
    await wait_until(lambda: len(producer.sent) == 3, 5, "three outputs in flight")
    assert calls == [0, 1, 2], "each handler ran without waiting for the previous confirm"
    assert [m.json() for m in producer.sent] == ["0", "1", "2"], "outputs in order"
    assert log == [], "nothing settled before its output is confirmed"
    producer.confirm(1)
    producer.confirm(2)
    await wait_until(
        lambda: all(d._state == FINISHED for d in deliveries[1:]),
        5,
        "the engine to see both confirmations",
    )
    assert log == [], "a later confirm does not settle past an unconfirmed one"
    producer.confirm(0)
    await wait_until(lambda: len(log) == 3, 5, "settlement")
    assert log == [("ack", 0), ("ack", 1), ("ack", 2)]
    await stop(dispatcher)


async def test_lane_less_deliveries_settle_as_soon_as_their_output_is_confirmed() -> None:
    producer = Producer()
    log: list[tuple[str, int]] = []
    dispatcher = await started(plan(lambda payload: payload, output=port(producer)))
    for n in range(2):
        dispatcher.deliver(Recorded(n, None, log))
    await wait_until(lambda: len(producer.pending) == 2, 5, "two outputs")
    producer.confirm(1)
    await wait_until(lambda: log == [("ack", 1)], 5, "the second settled first")
    producer.confirm(0)
    await wait_until(lambda: len(log) == 2, 5, "both settled")
    await stop(dispatcher)


async def test_outputs_carry_the_correlation_id_of_their_input() -> None:
    producer = Producer(confirm_at_once=True)
    log: list[tuple[str, int]] = []
    dispatcher = await started(plan(lambda payload: payload, output=port(producer)))
    delivery = Recorded(1, None, log)
    dispatcher.deliver(delivery)
    await wait_until(lambda: log, 5, "settlement")
    assert producer.sent[0].correlation_id == delivery.message.message_id
    await stop(dispatcher)


# -- failures --------------------------------------------------------------------------


@pytest.mark.parametrize("threaded", [True, False])
async def test_failing_handler_is_retried_in_place_then_dead_lettered(threaded: bool) -> None:
    attempts: list[tuple[int, int]] = []

    def handler(payload: str, message: Message) -> None:
        attempts.append((int(payload), message.delivery_attempt))
        if payload == "0":
            raise ValueError("payment service said no")

    binding = Binding()
    log: list[tuple[str, int]] = []
    dispatcher = await started(plan(handler, threaded=threaded), binding)
    dispatcher.deliver(Recorded(0, "lane", log))
    dispatcher.deliver(Recorded(1, "lane", log))
    await wait_until(lambda: len(log) == 2, 5, "both settled")
    assert attempts == [(0, 1), (0, 2), (0, 3), (1, 1)], "the lane waited for the retries"
    assert log == [("ack", 0), ("ack", 1)]
    [(dead, failure)] = binding.dead
    assert dead.message.payload == b"0"
    assert failure.exception_type == "builtins.ValueError"
    assert failure.attempts == 3
    assert (failure.destination, failure.group) == ("in", "g")
    assert dispatcher.stats.dead_lettered == 1
    await stop(dispatcher)


async def test_permanent_errors_and_bad_payloads_are_dead_lettered_at_once() -> None:
    calls: list[str] = []

    def handler(payload: dict) -> None:
        calls.append("called")
        raise PermanentError("no use retrying")

    binding = Binding()
    log: list[tuple[str, int]] = []
    dispatcher = await started(plan(handler), binding)
    good = Recorded(0, None, log)
    good.message = Message(b'{"a": 1}', content_type="application/json")
    bad = Recorded(1, None, log)
    bad.message = Message(b"{not json", content_type="application/json")
    dispatcher.deliver(good)
    dispatcher.deliver(bad)
    await wait_until(lambda: len(log) == 2, 5, "both settled")
    assert calls == ["called"]
    types = sorted(f.exception_type for _, f in binding.dead)
    assert types == ["binder.errors.DecodeError", "binder.errors.PermanentError"]
    assert all(f.attempts == 1 for _, f in binding.dead)
    await stop(dispatcher)


async def test_a_dead_letter_that_cannot_be_stored_is_nacked() -> None:
    def handler(payload: str) -> None:
        raise ValueError("boom")

    log: list[tuple[str, int]] = []
    dispatcher = await started(plan(handler, retry=RetryPolicy(1)), Binding(fail=True))
    dispatcher.deliver(Recorded(0, None, log))
    await wait_until(lambda: log, 5, "settlement")
    assert log == [("nack", 0)]
    assert dispatcher.stats.failed == 1
    await stop(dispatcher)


async def test_with_dead_letters_off_a_failed_message_is_logged_and_dropped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def handler(payload: str) -> None:
        raise ValueError("boom")

    log: list[tuple[str, int]] = []
    binding = Binding()
    dispatcher = create_dispatcher(plan(handler, retry=RetryPolicy(1), dead_letter=None))
    dispatcher.attach(binding)  # type: ignore[arg-type]
    dispatcher.deliver(Recorded(0, None, log))
    await wait_until(lambda: log, 5, "settlement")
    assert log == [("ack", 0)]
    assert binding.dead == []
    assert any(
        r.levelno == logging.ERROR and "dropped (dead_letter is off)" in r.getMessage()
        for r in caplog.records
    )
    await stop(dispatcher)


async def test_a_refused_output_is_published_again_then_acked() -> None:
    producer = Producer(confirm_at_once=True, failures=2)
    log: list[tuple[str, int]] = []
    dispatcher = await started(plan(lambda payload: payload, output=port(producer)))
    dispatcher.deliver(Recorded(0, None, log))
    await wait_until(lambda: log, 5, "settlement")
    assert log == [("ack", 0)]
    assert len(producer.sent) == 3, "two refusals, then accepted"
    await stop(dispatcher)


async def test_an_output_refused_every_time_dead_letters_its_input() -> None:
    producer = Producer(confirm_at_once=True, failures=99)
    binding = Binding()
    log: list[tuple[str, int]] = []
    dispatcher = await started(plan(lambda payload: payload, output=port(producer)), binding)
    dispatcher.deliver(Recorded(0, None, log))
    await wait_until(lambda: log, 5, "settlement")
    assert log == [("ack", 0)]
    assert len(producer.sent) == 3  # max_attempts
    [(_, failure)] = binding.dead
    assert failure.exception_type == f"{OutputFailed.__module__}.OutputFailed"
    assert "broker said no" in failure.exception_message
    await stop(dispatcher)


async def test_an_output_refused_for_good_dead_letters_its_input_at_once() -> None:
    producer = Producer(confirm_at_once=True, failures=99, error=PermanentError("too large"))
    binding = Binding()
    log: list[tuple[str, int]] = []
    dispatcher = await started(plan(lambda payload: payload, output=port(producer)), binding)
    dispatcher.deliver(Recorded(0, None, log))
    await wait_until(lambda: log, 5, "settlement")
    assert log == [("ack", 0)]
    assert len(producer.sent) == 1, "a PermanentError is not published again"
    [(_, failure)] = binding.dead
    assert failure.exception_message == "the broker did not accept the output: too large"
    await stop(dispatcher)


async def test_a_return_value_that_cannot_be_encoded_fails_the_attempt() -> None:
    producer = Producer(confirm_at_once=True)
    binding = Binding()
    log: list[tuple[str, int]] = []
    dispatcher = await started(plan(lambda payload: object(), output=port(producer)), binding)
    dispatcher.deliver(Recorded(0, None, log))
    await wait_until(lambda: log, 5, "settlement")
    assert producer.sent == []
    [(_, failure)] = binding.dead
    assert failure.exception_type == "builtins.TypeError"
    await stop(dispatcher)


# -- stopping, window, revocation ------------------------------------------------------


@pytest.mark.parametrize("threaded", [True, False])
async def test_stopping_releases_what_did_not_start_and_waits_for_what_did(
    threaded: bool,
) -> None:
    release = threading.Event()
    started_calls: list[int] = []

    def handler(payload: str) -> None:
        started_calls.append(int(payload))
        if threaded:
            release.wait(5)

    gate = asyncio.Event()

    async def coroutine(payload: str) -> None:
        started_calls.append(int(payload))
        await gate.wait()

    log: list[tuple[str, int]] = []
    dispatcher = await started(plan(handler if threaded else coroutine))
    for n in range(5):
        dispatcher.deliver(Recorded(n, None, log))
    await wait_until(lambda: started_calls, 5, "the first call")
    draining = asyncio.ensure_future(dispatcher.drain(5.0))
    await wait_until(lambda: len(log) == 4, 5, "the others released")
    assert sorted(log) == [("release", n) for n in range(1, 5)]
    assert not draining.done(), "drain waits for the running handler"
    release.set()
    gate.set()
    assert await draining
    assert log[-1] == ("ack", 0)
    dispatcher.deliver(Recorded(9, None, log))  # after stopping: handed straight back
    assert log[-1] == ("release", 9)
    await dispatcher.close()


@pytest.mark.parametrize("threaded", [True, False])
async def test_stopping_interrupts_a_retry_backoff_without_dead_lettering(
    threaded: bool,
) -> None:
    failed = threading.Event()

    def handler(payload: str) -> None:
        failed.set()
        raise ValueError("down")

    binding = Binding()
    log: list[tuple[str, int]] = []
    slow = RetryPolicy(max_attempts=5, backoff_initial=60.0, backoff_max=60.0)
    dispatcher = await started(plan(handler, threaded=threaded, retry=slow), binding)
    dispatcher.deliver(Recorded(0, None, log))
    await wait_until(failed.is_set, 5, "the first failure")
    assert await dispatcher.drain(5.0)
    assert log == [("release", 0)]
    assert binding.dead == []
    await dispatcher.close()


async def test_room_counts_unsettled_deliveries_and_wait_for_room_wakes_on_settlement() -> None:
    gate = asyncio.Event()

    async def handler(message: Message) -> None:
        await gate.wait()

    log: list[tuple[str, int]] = []
    dispatcher = create_dispatcher(
        DispatchPlan("b", "d", None, RawCall(handler), RetryPolicy(1), window=3)
    )
    assert dispatcher.room == 3
    for n in range(3):
        dispatcher.deliver(Recorded(n, "lane", log))
    assert dispatcher.room == 0
    waiting = asyncio.ensure_future(dispatcher.wait_for_room(2))
    await asyncio.sleep(0)  # one loop turn
    assert not waiting.done()
    gate.set()
    await asyncio.wait_for(waiting, 5)
    assert dispatcher.room >= 2
    await stop(dispatcher)
    assert dispatcher.room == 0, "no room once stopped"


async def test_revoke_releases_queued_deliveries_and_waits_for_started_ones() -> None:
    gate = asyncio.Event()
    calls: list[int] = []

    async def handler(message: Message) -> None:
        calls.append(int(message.payload))
        await gate.wait()

    log: list[tuple[str, int]] = []
    dispatcher = create_dispatcher(DispatchPlan("b", "d", None, RawCall(handler), RetryPolicy(1)))
    for n in range(3):
        dispatcher.deliver(Recorded(n, "p0", log))
    dispatcher.deliver(Recorded(3, "p1", log))
    await wait_until(lambda: calls == [0], 5, "the first call of p0")
    revoking = asyncio.ensure_future(dispatcher.revoke(["p0"]))
    await asyncio.sleep(0)  # one loop turn
    assert not revoking.done(), "p0's running delivery is not settled yet"
    gate.set()
    await asyncio.wait_for(revoking, 5)
    assert [entry for entry in log if entry[1] < 3] == [("ack", 0), ("release", 1), ("release", 2)]
    await wait_until(lambda: ("ack", 3) in log, 5, "the other lane")
    await stop(dispatcher)


async def test_discard_skips_deliveries_already_queued_in_a_worker_thread() -> None:
    release = threading.Event()
    calls: list[int] = []

    def handler(payload: str) -> None:
        calls.append(int(payload))
        release.wait(5)

    log: list[tuple[str, int]] = []
    dispatcher = await started(plan(handler))
    for n in range(4):
        dispatcher.deliver(Recorded(n, "p0", log))
    await wait_until(lambda: calls == [0], 5, "the first call")
    dispatcher.discard(["p0"])
    release.set()
    await wait_until(lambda: len(log) == 4, 5, "all settled")
    assert calls == [0], "queued deliveries of a discarded lane never run"
    assert log == [("ack", 0), ("release", 1), ("release", 2), ("release", 3)]
    await stop(dispatcher)


# -- plugin middleware -----------------------------------------------------------------


async def test_plugin_middleware_sees_every_attempt_of_a_threaded_handler() -> None:
    seen: list[int] = []
    threads: list[int] = []

    def wrap(handler: Any) -> Any:
        async def observed(message: Message) -> None:
            seen.append(message.delivery_attempt)
            await handler(message)

        return observed

    def flaky(payload: str, message: Message) -> None:
        threads.append(threading.get_ident())
        if message.delivery_attempt < 2:
            raise ValueError("first time")

    log: list[tuple[str, int]] = []
    dispatcher = await started(plan(flaky, middleware=(wrap,)))
    assert isinstance(dispatcher, LoopDispatcher)
    dispatcher.deliver(Recorded(0, None, log))
    await wait_until(lambda: log, 5, "settlement")
    assert seen == [1, 2]
    assert threading.get_ident() not in threads, "still in a worker thread"
    assert log == [("ack", 0)]
    await stop(dispatcher)
