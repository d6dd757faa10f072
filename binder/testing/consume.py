"""Binding a plain ``async (Message) -> None`` handler, for binder tests and tools."""

from __future__ import annotations

from typing import Any

from binder.dispatch import DispatchPlan, RawCall, RetryPolicy, create_dispatcher
from binder.dispatch.engine import Dispatcher
from binder.spi import Binder, ConsumerBinding, ConsumerSpec, Handler

__all__ = ["BoundConsumer", "consume"]


class BoundConsumer:
    """A consumer binding feeding ``handler`` through the delivery engine.

    A handler that raises gets its message handed back to the binder (nack: delivered
    again where the broker can); there are no retries and no dead letters.  Other
    attributes are those of the binder's own binding.
    """

    def __init__(self, binding: ConsumerBinding, dispatcher: Dispatcher) -> None:
        self.binding = binding
        self.dispatcher = dispatcher
        self.spec = binding.spec

    def __getattr__(self, name: str) -> Any:
        return getattr(self.binding, name)

    async def close(self, timeout: float = 30.0) -> None:
        """Let in-flight handlers finish, then close the binding; idempotent."""
        await self.dispatcher.drain(timeout)
        await self.binding.close()
        await self.dispatcher.close()


async def consume(binder: Binder, spec: ConsumerSpec, handler: Handler) -> BoundConsumer:
    """Bind ``spec`` on ``binder`` with ``handler`` (``spec.concurrency`` calls at once)."""
    plan = DispatchPlan(
        binding=spec.binding,
        destination=spec.destination,
        group=spec.group,
        call=RawCall(handler),
        retry=RetryPolicy(max_attempts=1),
        concurrency=spec.concurrency,
        window=spec.prefetch,
        nack_failures=True,
    )
    dispatcher = create_dispatcher(plan)
    try:
        binding = await binder.bind_consumer(spec, dispatcher)
    except BaseException as exc:
        dispatcher.fail_attach(exc)
        await dispatcher.close()
        raise
    dispatcher.attach(binding)
    return BoundConsumer(binding, dispatcher)
