"""Output ports: turn handler results into messages and publish them."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from binder.bindings import BindingSettings
from binder.codecs import Encoder, encoder_for
from binder.message import CORRELATION_ID, TRACE_HEADERS, Message
from binder.partitioning import partition_for
from binder.spi import ProducerBinding
from binder.tracing import Tracing

__all__ = ["OutputPort", "propagate_headers"]


def propagate_headers(source: Message, headers: dict[str, str]) -> None:
    """Copy the correlation id and trace context from ``source`` unless already set.

    The documented policy: an output carries ``correlationId`` (the input's, or the
    input's message id when it had none) and the W3C ``traceparent``/``tracestate``
    headers.  Nothing else is copied; the handler returns a :class:`Message` to set more.
    """
    if CORRELATION_ID not in headers:
        headers[CORRELATION_ID] = source.headers.get(CORRELATION_ID) or source.message_id
    for name in TRACE_HEADERS:
        value = source.headers.get(name)
        if value is not None and name not in headers:
            headers[name] = value


class OutputPort:
    """A producer binding plus the binding's content type and partitioning."""

    def __init__(
        self,
        settings: BindingSettings,
        producer: ProducerBinding,
        *,
        tracing: Tracing | None = None,
        system: str = "",
    ) -> None:
        self.settings = settings
        self.producer = producer
        self._tracing = tracing
        self._system = system
        self._partition_key = settings.partition_key
        self._partitions = settings.partition_count
        self._encoders: dict[str | None, Encoder] = {}
        #: Messages sent through :meth:`send` and :meth:`publish` that the broker
        #: confirmed, and those it did not (a function's outputs are counted by its
        #: consumer binding's engine instead).
        self.published = 0
        self.publish_failures = 0

    def _encode(self, value: Any, content_type: str) -> bytes:
        encoder = self._encoders.get(content_type)
        if encoder is None:
            encoder = self._encoders[content_type] = encoder_for(content_type)
        return encoder(value)

    def to_message(
        self,
        value: Any,
        *,
        source: Message | None = None,
        headers: Mapping[str, str] | None = None,
        key: str | None = None,
        content_type: str | None = None,
    ) -> Message:
        """Build the outgoing message for ``value`` (a :class:`Message` is kept as is)."""
        if isinstance(value, Message):
            message = value.copy(delivery_attempt=1, destination=None)
            if source is not None and value.message_id == source.message_id:
                message.partition = None  # passed through: re-partition for this output
            if message.content_type is None:
                message.content_type = content_type or self.settings.content_type
            if headers:
                message.headers.update(headers)
            if key is not None:
                message.key = key
        else:
            ctype = content_type or self.settings.content_type
            payload = self._encode(value, ctype)
            message = Message(payload, dict(headers) if headers else {}, key, ctype)
        if source is not None:
            propagate_headers(source, message.headers)
        if self._tracing is not None:
            self._tracing.inject_send(
                message, system=self._system, destination=self.settings.destination
            )
        self._partition(message)
        return message

    def _partition(self, message: Message) -> None:
        name = self._partition_key
        if name is not None and name != "key":
            header = message.headers.get(name)
            if header is not None and message.key is None:
                message.key = header
        if self._partitions > 1 and message.key is not None and message.partition is None:
            message.partition = partition_for(message.key, self._partitions)

    def send(
        self,
        value: Any,
        *,
        source: Message | None = None,
        headers: Mapping[str, str] | None = None,
        key: str | None = None,
        content_type: str | None = None,
    ) -> asyncio.Future[None]:
        """Queue ``value`` for publishing; the future resolves once the broker confirmed it."""
        message = self.to_message(
            value, source=source, headers=headers, key=key, content_type=content_type
        )
        confirmed = self.producer.publish(message)
        if not isinstance(confirmed, asyncio.Future):
            confirmed = asyncio.ensure_future(confirmed)
        if confirmed.done():
            self._count(confirmed)
        else:
            confirmed.add_done_callback(self._count)
        return confirmed

    def _count(self, confirmed: asyncio.Future[None]) -> None:
        # Not exception(): that would mark the error retrieved, and a sender that never
        # awaits would lose asyncio's "exception was never retrieved" report.
        if confirmed.cancelled() or confirmed._exception is not None:
            self.publish_failures += 1
        else:
            self.published += 1

    async def publish(
        self,
        value: Any,
        *,
        source: Message | None = None,
        headers: Mapping[str, str] | None = None,
        key: str | None = None,
        content_type: str | None = None,
    ) -> Message:
        """Publish ``value``; return the message once the broker accepted it."""
        message = self.to_message(
            value, source=source, headers=headers, key=key, content_type=content_type
        )
        try:
            await self.producer.publish(message)
        except Exception:
            self.publish_failures += 1
            raise
        self.published += 1
        return message

    async def close(self) -> None:
        """Flush and close the producer binding."""
        await self.producer.close()
