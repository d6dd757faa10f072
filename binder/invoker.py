"""Calling user handlers: which parameter gets the payload, which the envelope."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from typing import Any

from binder.codecs import Decoder, decoder_for
from binder.message import Message

__all__ = ["Invoker"]


class Invoker:
    """Decodes a message for a handler and calls it, sync or async.

    The first parameter receives the payload, decoded by its annotation; a parameter
    annotated :class:`Message` receives the envelope.  A handler whose only parameter
    is a ``Message`` gets just the envelope.  ``threaded`` (the default) says a plain
    ``def`` handler runs in a worker thread; where it runs is the delivery engine's
    business (:mod:`binder.dispatch`), this class only decodes and calls.
    """

    def __init__(self, function: Callable[..., Any], *, threaded: bool = True) -> None:
        self.function = function
        self.is_async = inspect.iscoroutinefunction(function)
        self.threaded = threaded and not self.is_async
        self.name = getattr(function, "__name__", repr(function))
        params = list(inspect.signature(function).parameters.values())
        try:
            hints = typing.get_type_hints(function)
        except Exception as exc:  # unresolvable forward reference: say which handler
            raise TypeError(
                f"cannot resolve the annotations of handler {self.name}: {exc}"
            ) from exc
        self.payload_param: str | None = None
        self.message_param: str | None = None
        self.decode: Decoder | None = None
        for param in params:
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                continue
            annotation = hints.get(param.name, Any)
            if annotation is Message:
                self.message_param = param.name
            elif self.payload_param is None and self.message_param is None:
                self.payload_param = param.name
                self.decode = decoder_for(annotation)
            elif param.default is param.empty:
                raise TypeError(
                    f"handler {self.name}: parameter {param.name!r} is neither the payload "
                    "(the first parameter) nor annotated Message"
                )

    def arguments(self, message: Message) -> dict[str, Any]:
        """Decode ``message`` into the handler's keyword arguments."""
        kwargs: dict[str, Any] = {}
        if self.payload_param is not None and self.decode is not None:
            kwargs[self.payload_param] = self.decode(message.payload, message.content_type)
        if self.message_param is not None:
            kwargs[self.message_param] = message
        return kwargs

    async def __call__(self, message: Message) -> Any:
        """Decode and call here, on this thread (tests and tools; the engine runs
        handlers itself); a :class:`binder.errors.DecodeError` means a bad payload."""
        result = self.function(**self.arguments(message))
        if self.is_async:
            result = await result
        return result
