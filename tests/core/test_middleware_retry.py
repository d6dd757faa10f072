"""binder.middleware.retry: in-process attempts with backoff, without real delays."""

import asyncio
import importlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from binder.errors import DecodeError, PermanentError
from binder.message import Message
from binder.middleware.retry import Exhausted, RetryPolicy, ShutdownInterrupt, retry

# the package re-exports the function ``retry`` under the module's name
retry_module = importlib.import_module("binder.middleware.retry")
NO_WAIT = RetryPolicy(max_attempts=3, backoff_initial=0.0, backoff_multiplier=2.0, backoff_max=0.0)


class Flaky:
    """A handler failing ``failures`` times (forever with None), recording attempts."""

    def __init__(self, failures: int | None = None, error: type[Exception] = ValueError) -> None:
        self.failures = failures
        self.error = error
        self.attempts: list[int] = []
        self.messages: list[Message] = []
        self.called = asyncio.Event()

    async def __call__(self, message: Message) -> None:
        self.attempts.append(message.delivery_attempt)
        self.messages.append(message)
        self.called.set()
        if self.failures is None or len(self.attempts) <= self.failures:
            raise self.error(f"failure {len(self.attempts)}")


class RecordingAsyncio:
    """Stands in for the ``asyncio`` module inside retry: records backoff waits, waits 0 s."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(asyncio, name)

    async def wait_for(self, awaitable: Awaitable[Any], timeout: float) -> Any:
        self.delays.append(timeout)
        return await asyncio.wait_for(awaitable, 0)


def wrap(
    handler: Callable[[Message], Awaitable[None]],
    policy: RetryPolicy = NO_WAIT,
    stopping: asyncio.Event | None = None,
) -> Callable[[Message], Awaitable[None]]:
    return retry(policy, stopping or asyncio.Event(), "h-in-0")(handler)


def test_policy_delays_grow_exponentially_up_to_the_maximum() -> None:
    policy = RetryPolicy(
        max_attempts=9, backoff_initial=1.0, backoff_multiplier=2.0, backoff_max=10
    )
    assert [policy.delay(n) for n in range(1, 7)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    flat = RetryPolicy(backoff_initial=0.5, backoff_multiplier=1.0, backoff_max=10)
    assert [flat.delay(n) for n in (1, 2, 3)] == [0.5, 0.5, 0.5]


async def test_success_on_first_attempt_calls_once() -> None:
    handler = Flaky(failures=0)
    await wrap(handler)(Message(b"{}"))
    assert handler.attempts == [1]


async def test_retries_until_success_with_increasing_delivery_attempt() -> None:
    handler = Flaky(failures=2)
    original = Message(b"{}")
    await wrap(handler)(original)
    assert handler.attempts == [1, 2, 3]
    assert original.delivery_attempt == 1, "the caller's message is not mutated"
    assert {m.message_id for m in handler.messages} == {original.message_id}


async def test_gives_up_after_max_attempts_with_exhausted_carrying_attempts_and_cause() -> None:
    handler = Flaky()
    with pytest.raises(Exhausted) as info:
        await wrap(handler, RetryPolicy(4, 0.0, 2.0, 0.0))(Message(b"{}"))
    assert handler.attempts == [1, 2, 3, 4]
    assert info.value.attempts == 4
    assert isinstance(info.value.cause, ValueError)
    assert str(info.value.cause) == "failure 4"
    assert info.value.__cause__ is info.value.cause


async def test_max_attempts_one_means_no_retry() -> None:
    handler = Flaky()
    with pytest.raises(Exhausted) as info:
        await wrap(handler, RetryPolicy(1, 0.0, 2.0, 0.0))(Message(b"{}"))
    assert handler.attempts == [1]
    assert info.value.attempts == 1


async def test_redelivered_message_gets_a_fresh_set_of_attempts() -> None:
    # delivery_attempt keeps counting from the broker's number; max_attempts is per delivery
    handler = Flaky()
    with pytest.raises(Exhausted) as info:
        await wrap(handler)(Message(b"{}", delivery_attempt=3))
    assert handler.attempts == [3, 4, 5]
    assert info.value.attempts == 3


@pytest.mark.parametrize("error", [DecodeError, PermanentError])
async def test_decode_and_permanent_errors_are_not_retried(error: type[Exception]) -> None:
    handler = Flaky(error=error)
    with pytest.raises(Exhausted) as info:
        await wrap(handler, RetryPolicy(5, 0.0, 2.0, 0.0))(Message(b"{}"))
    assert handler.attempts == [1]
    assert info.value.attempts == 1
    assert isinstance(info.value.cause, error)


async def test_backoff_waits_follow_the_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = RecordingAsyncio()
    monkeypatch.setattr(retry_module, "asyncio", fake)
    handler = Flaky()
    policy = RetryPolicy(max_attempts=5, backoff_initial=1.0, backoff_multiplier=3.0, backoff_max=5)
    with pytest.raises(Exhausted):
        await wrap(handler, policy)(Message(b"{}"))
    assert handler.attempts == [1, 2, 3, 4, 5]
    assert fake.delays == [1.0, 3.0, 5.0, 5.0]


async def test_each_retry_is_logged_with_its_delay(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="binder.retry")
    handler = Flaky(failures=1)
    await wrap(handler, RetryPolicy(3, 0.001, 2.0, 1.0))(Message(b"{}"))
    [record] = [r for r in caplog.records if r.name == "binder.retry"]
    assert "h-in-0: attempt 1 failed (ValueError: failure 1); retrying in 0.00s" in record.message


async def test_stopping_during_backoff_raises_shutdown_interrupt() -> None:
    stopping = asyncio.Event()
    handler = Flaky()
    long_backoff = RetryPolicy(max_attempts=5, backoff_initial=60.0, backoff_max=60.0)
    task = asyncio.create_task(wrap(handler, long_backoff, stopping)(Message(b"{}")))
    await asyncio.wait_for(handler.called.wait(), 2.0)
    stopping.set()
    with pytest.raises(ShutdownInterrupt) as info:
        await asyncio.wait_for(task, 2.0)
    assert handler.attempts == [1]
    assert isinstance(info.value.__cause__, ValueError)


async def test_already_stopping_raises_shutdown_interrupt_instead_of_waiting() -> None:
    stopping = asyncio.Event()
    stopping.set()
    handler = Flaky()
    with pytest.raises(ShutdownInterrupt):
        await asyncio.wait_for(
            wrap(handler, RetryPolicy(5, 60.0, 2.0, 60.0), stopping)(Message(b"{}")), 2.0
        )
    assert handler.attempts == [1]


async def test_stopping_does_not_affect_a_last_attempt_failure() -> None:
    stopping = asyncio.Event()
    stopping.set()
    handler = Flaky()
    with pytest.raises(Exhausted):
        await wrap(handler, RetryPolicy(1, 60.0, 2.0, 60.0), stopping)(Message(b"{}"))


async def test_cancellation_is_not_retried() -> None:
    calls = 0

    async def cancelled(message: Message) -> None:
        nonlocal calls
        calls += 1
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await wrap(cancelled)(Message(b"{}"))
    assert calls == 1
