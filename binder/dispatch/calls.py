"""One attempt at a delivery: decode the payload, call the handler, build its output."""

from __future__ import annotations

from binder.invoker import Invoker
from binder.message import Message
from binder.output import OutputPort
from binder.spi import Handler

__all__ = ["HandlerCall", "RawCall"]


class HandlerCall:
    """A decorated handler: payload decoded by annotation, result encoded for ``output``.

    The output message is built inside the attempt, so a return value that cannot be
    encoded fails the attempt like an exception in the handler would.
    """

    def __init__(self, invoker: Invoker, output: OutputPort | None) -> None:
        self.invoker = invoker
        self.output = output
        self.is_async = invoker.is_async
        self.name = invoker.name

    def run_sync(self, message: Message) -> Message | None:
        """Call a plain ``def`` handler (in a worker thread, or on the loop if asked)."""
        invoker = self.invoker
        value = invoker.function(**invoker.arguments(message))
        return self._output(value, message)

    async def run_async(self, message: Message) -> Message | None:
        """Call an ``async def`` handler."""
        invoker = self.invoker
        value = await invoker.function(**invoker.arguments(message))
        return self._output(value, message)

    def _output(self, value: object, source: Message) -> Message | None:
        if value is None or self.output is None:
            return None
        return self.output.to_message(value, source=source)


class RawCall:
    """A bare ``async (Message) -> None`` handler: tools and binder tests use it."""

    is_async = True

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.name = getattr(handler, "__name__", type(handler).__name__)

    def run_sync(self, message: Message) -> Message | None:  # pragma: no cover - never used
        raise TypeError("a raw handler is asynchronous")

    async def run_async(self, message: Message) -> Message | None:
        """Call the handler; it publishes nothing itself."""
        await self.handler(message)
        return None
