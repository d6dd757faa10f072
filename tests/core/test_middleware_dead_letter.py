"""binder.middleware.dead_letter: the last word on a message whose handler failed."""

import asyncio
import logging
from collections.abc import Awaitable, Callable

import pytest

from binder.errors import DecodeError
from binder.message import Message
from binder.middleware import chain
from binder.middleware.dead_letter import dead_letter
from binder.middleware.retry import Exhausted, RetryPolicy, ShutdownInterrupt, retry
from binder.spi import ConsumerSpec, Failure


class FakeBinding:
    """A consumer binding that records dead letters (or fails to store them)."""

    def __init__(self, error: Exception | None = None) -> None:
        self.spec = ConsumerSpec(binding="h-in-0", destination="orders", group="billing")
        self.error = error
        self.dead: list[tuple[Message, Failure]] = []

    async def dead_letter(self, message: Message, failure: Failure) -> None:
        if self.error is not None:
            raise self.error
        self.dead.append((message, failure))

    async def close(self) -> None: ...


def wrap(
    handler: Callable[[Message], Awaitable[None]], binding: FakeBinding, *, enabled: bool = True
) -> Callable[[Message], Awaitable[None]]:
    async def get() -> FakeBinding:
        return binding

    return dead_letter(get, enabled=enabled, destination="orders", group="billing", name="h-in-0")(
        handler
    )


def failing(error: BaseException) -> Callable[[Message], Awaitable[None]]:
    async def handler(message: Message) -> None:
        raise error

    return handler


async def test_success_does_not_dead_letter() -> None:
    binding = FakeBinding()

    async def ok(message: Message) -> None: ...

    await wrap(ok, binding)(Message(b"{}"))
    assert binding.dead == []


async def test_exhausted_retries_are_dead_lettered_with_failure_headers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="binder.dead_letter")
    binding = FakeBinding()
    message = Message(b'{"id":1}', {"tenant": "a"})
    cause = ValueError("no such customer")
    try:
        raise cause
    except ValueError:
        pass
    await wrap(failing(Exhausted(3, cause)), binding)(message)

    [(dead, failure)] = binding.dead
    assert dead is message
    assert failure.attempts == 3
    assert failure.exception_type == "builtins.ValueError"
    assert failure.exception_message == "no such customer"
    assert (failure.destination, failure.group) == ("orders", "billing")
    assert "ValueError: no such customer" in failure.stacktrace
    headers = failure.headers()
    assert headers["x-exception-type"] == "builtins.ValueError"
    assert headers["x-exception-message"] == "no such customer"
    assert headers["x-original-destination"] == "orders"
    assert headers["x-original-group"] == "billing"
    assert headers["x-delivery-attempts"] == "3"
    assert "Traceback" in headers["x-exception-stacktrace"]
    assert any(
        "h-in-0: handler failed after 3 attempt(s)" in r.message and message.message_id in r.message
        for r in caplog.records
    )


async def test_plain_exception_uses_the_message_delivery_attempt() -> None:
    binding = FakeBinding()
    await wrap(failing(KeyError("k")), binding)(Message(b"{}", delivery_attempt=4))
    [(_, failure)] = binding.dead
    assert failure.attempts == 4
    assert failure.exception_type == "builtins.KeyError"


async def test_decode_error_is_logged_as_undecodable(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="binder.dead_letter")
    binding = FakeBinding()
    await wrap(failing(Exhausted(1, DecodeError("bad json"))), binding)(Message(b"{"))
    [(_, failure)] = binding.dead
    assert failure.exception_type == "binder.errors.DecodeError"
    assert any("undecodable payload" in r.message for r in caplog.records)


async def test_disabled_drops_with_an_error_log(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="binder.dead_letter")
    binding = FakeBinding()
    message = Message(b"{}")
    await wrap(failing(Exhausted(2, RuntimeError("boom"))), binding, enabled=False)(message)
    assert binding.dead == []
    [record] = [r for r in caplog.records if r.name == "binder.dead_letter"]
    assert record.levelno == logging.ERROR
    assert "h-in-0: handler failed after 2 attempt(s)" in record.message
    assert f"message {message.message_id} dropped (dead_letter is off)" in record.message
    assert "builtins.RuntimeError: boom" in record.message


@pytest.mark.parametrize("error", [ShutdownInterrupt("h-in-0"), asyncio.CancelledError()])
async def test_shutdown_interrupt_and_cancellation_are_re_raised(error: BaseException) -> None:
    binding = FakeBinding()
    with pytest.raises(type(error)):
        await wrap(failing(error), binding)(Message(b"{}"))
    assert binding.dead == []


async def test_failed_dead_letter_publish_is_re_raised() -> None:
    binding = FakeBinding(error=ConnectionError("broker gone"))
    with pytest.raises(ConnectionError, match="broker gone"):
        await wrap(failing(ValueError("x")), binding)(Message(b"{}"))


async def test_binding_is_looked_up_only_when_a_dead_letter_is_needed() -> None:
    lookups = 0
    binding = FakeBinding()

    async def get() -> FakeBinding:
        nonlocal lookups
        lookups += 1
        return binding

    async def ok(message: Message) -> None: ...

    middleware = dead_letter(get, enabled=True, destination="d", group=None, name="n")
    await middleware(ok)(Message(b"{}"))
    assert lookups == 0
    await middleware(failing(ValueError("x")))(Message(b"{}"))
    assert lookups == 1
    assert binding.dead[0][1].headers()["x-original-group"] == ""


async def test_with_retry_dead_letter_sees_the_attempt_count() -> None:
    binding = FakeBinding()
    calls = 0

    async def always(message: Message) -> None:
        nonlocal calls
        calls += 1
        raise ValueError(f"attempt {message.delivery_attempt}")

    async def get() -> FakeBinding:
        return binding

    handler = chain(
        always,
        [
            dead_letter(get, enabled=True, destination="d", group="g", name="n"),
            retry(RetryPolicy(3, 0.0, 1.0, 0.0), asyncio.Event(), "n"),
        ],
    )
    await handler(Message(b"{}"))
    assert calls == 3
    [(_, failure)] = binding.dead
    assert failure.attempts == 3
    assert failure.exception_message == "attempt 3"


def test_failure_stacktrace_is_truncated() -> None:
    try:
        raise ValueError("x" * 10_000)
    except ValueError as exc:
        failure = Failure.from_exception(exc, attempts=1, destination="d", group=None)
    assert failure.stacktrace.startswith("...")
    assert len(failure.stacktrace) == 4003
    assert failure.exception_message == "x" * 10_000
