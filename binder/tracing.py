"""OpenTelemetry tracing of messages, by the messaging semantic conventions.

Off unless ``runtime.tracing: true`` (it needs ``pip install 'eventbinder[otel]'``,
which brings opentelemetry-api; spans go wherever the application's tracer provider
sends them, nowhere without an SDK). When on:

* every publish (a handler's output, a supplier's, ``app.send``, a dead letter) is a
  ``send <destination>`` span (kind PRODUCER), a child of the span current where it
  was made (an HTTP request's, a handler's), and its context is written into the
  message's W3C ``traceparent``/``tracestate`` headers;
* every delivery is a ``process <destination>`` span (kind CONSUMER) whose parent is
  the context in those headers, current while the handler runs (so what the handler
  sends, and the spans it makes, are its children); each failed attempt is an
  ``exception`` event, each retry a ``retry`` event, a dead letter a ``dead_letter``
  event.

So one trace follows a message through every broker and function it crosses.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, MutableMapping
from typing import Any

from binder.errors import MissingDependency
from binder.message import Message

__all__ = ["SYSTEMS", "Tracing", "messaging_system", "tracing_for"]

#: ``messaging.system`` per binder type (others: the type's name).
SYSTEMS = {"rabbit": "rabbitmq", "kafka": "kafka", "mqtt": "mqtt", "memory": "memory"}


def messaging_system(binder_type: str) -> str:
    """``messaging.system`` of a binder type: :data:`SYSTEMS`, else the type's name."""
    return SYSTEMS.get(binder_type, binder_type)


class Tracing:
    """Makes the spans of one app (see the module docstring)."""

    def __init__(self) -> None:
        try:
            from opentelemetry import context, propagate, trace
        except ImportError:
            raise MissingDependency(
                "runtime.tracing needs OpenTelemetry: pip install 'eventbinder[otel]'"
            ) from None
        self._context = context
        self._propagate = propagate
        self._trace = trace
        self._tracer = trace.get_tracer("eventbinder")
        self._consumer = trace.SpanKind.CONSUMER
        self._producer = trace.SpanKind.PRODUCER

    @staticmethod
    def _attributes(
        operation: str, system: str, destination: str, group: str | None, message: Message
    ) -> dict[str, Any]:
        attributes: dict[str, Any] = {
            "messaging.system": system,
            "messaging.operation.type": operation,
            "messaging.operation.name": operation,
            "messaging.destination.name": destination,
            "messaging.message.id": message.message_id,
        }
        if group is not None:
            attributes["messaging.consumer.group.name"] = group
        if message.key is not None:
            attributes["messaging.message.key"] = message.key
        return attributes

    def inject_send(self, message: Message, *, system: str, destination: str) -> None:
        """A ``send`` span for ``message`` (child of the current span), written into its
        headers; ended at once (the broker's confirmation is not part of it)."""
        with self._tracer.start_as_current_span(
            f"send {destination}",
            kind=self._producer,
            attributes=self._attributes("send", system, destination, None, message),
        ):
            headers: MutableMapping[str, str] = message.headers
            for name in ("traceparent", "tracestate"):
                headers.pop(name, None)
            self._propagate.inject(headers)

    @contextlib.contextmanager
    def process(
        self, message: Message, *, system: str, destination: str, group: str | None
    ) -> Iterator[Any]:
        """The ``process`` span of a delivery, current (in this thread or task) inside."""
        parent = self._propagate.extract(message.headers)
        span = self._tracer.start_span(
            f"process {destination}",
            context=parent,
            kind=self._consumer,
            attributes={
                **self._attributes("process", system, destination, group, message),
                "messaging.message.delivery_attempt": message.delivery_attempt,
            },
        )
        token = self._context.attach(self._trace.set_span_in_context(span, parent))
        try:
            yield span
        finally:
            self._context.detach(token)
            span.end()

    def failed_attempt(
        self, span: Any, exc: BaseException, attempt: int, retry_in: float | None
    ) -> None:
        """An attempt raised: an ``exception`` event, and a ``retry`` one if it is retried."""
        span.record_exception(exc, attributes={"messaging.message.delivery_attempt": attempt})
        if retry_in is not None:
            span.add_event("retry", {"attempt": attempt + 1, "delay_seconds": retry_in})
        else:
            span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, str(exc)[:200]))

    @staticmethod
    def dead_lettered(span: Any, target: str | None, attempts: int) -> None:
        """Every attempt failed: a ``dead_letter`` event naming where it went."""
        span.add_event(
            "dead_letter",
            {"messaging.destination.name": target or "(dropped)", "attempts": attempts},
        )


def tracing_for(enabled: bool) -> Tracing | None:
    """A :class:`Tracing` when ``runtime.tracing`` is on, else None (nothing traced)."""
    return Tracing() if enabled else None
