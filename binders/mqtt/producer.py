"""MQTT producer binding: publishes on the binder's shared publishing connection."""

from __future__ import annotations

import asyncio
import logging
from collections import deque

from binder.errors import BinderError
from binder.message import Message
from binder.spi import ProducerSpec
from binders.mqtt.connection import MqttConnection
from binders.mqtt.mapping import to_properties

__all__ = ["MqttProducerBinding"]

log = logging.getLogger(__name__)

_Backlogged = tuple[Message, "asyncio.Future[None]"]


class MqttProducerBinding:
    """Publishes to ``spec.destination`` with the binding's QoS and retain flag.

    ``publish`` hands the message to paho at once, in call order, and returns a future:
    resolved by the broker's PUBACK (QoS 1), or as soon as paho took the packet (QoS 0,
    which the broker never confirms).  paho keeps QoS 0 packets in memory until the
    event loop writes them, so while the connection has too many of them unwritten,
    QoS 0 messages wait in this binding's backlog instead (in order) and one task
    hands them to paho as the socket takes them.  Under MQTT 3.1.1 only the payload
    travels: headers, content type, key and message id are dropped.
    """

    def __init__(
        self, connection: MqttConnection, spec: ProducerSpec, *, qos: int, retain: bool
    ) -> None:
        self.spec = spec
        self.qos = qos
        self.retain = retain
        self._connection = connection
        self._mqtt5 = connection.settings.mqtt5
        self._loop = asyncio.get_running_loop()
        self._pending: set[asyncio.Future[None]] = set()
        self._backlog: deque[_Backlogged] = deque()
        self._drainer: asyncio.Task[None] | None = None
        self._taken: asyncio.Future[None] = self._loop.create_future()
        self._taken.set_result(None)
        self._closed = False
        self._warned_headers = False

    def __repr__(self) -> str:
        return f"<MqttProducerBinding {self.spec.binding} {self.spec.destination!r} qos={self.qos}>"

    def publish(self, message: Message) -> asyncio.Future[None]:
        """Queue ``message`` now; the future resolves once the broker accepted it.

        Raises :class:`BinderError` at once when the binding is closed; the future
        raises when the message could not be sent or the broker refused it.
        """
        if self._closed:
            raise BinderError(f"producer binding {self.spec.binding!r} is closed")
        if not self._mqtt5 and not self._warned_headers and (message.headers or message.key):
            self._warned_headers = True
            log.warning(
                "%r: MQTT 3.1.1 has no headers; headers, key and content type are not sent",
                self,
            )
        if self.qos == 0 and (self._backlog or self._connection.congested):
            future: asyncio.Future[None] = self._loop.create_future()
            self._backlog.append((message, future))
            if self._drainer is None:
                self._drainer = self._loop.create_task(
                    self._drain_backlog(), name=f"mqtt-backlog:{self.spec.binding}"
                )
            return future
        try:
            confirmed = self._send(message)
        except Exception as exc:
            failed: asyncio.Future[None] = self._loop.create_future()
            failed.set_exception(exc)
            return failed
        if confirmed is None:
            return self._taken
        self._pending.add(confirmed)
        confirmed.add_done_callback(self._pending.discard)
        return confirmed

    def _send(self, message: Message) -> asyncio.Future[None] | None:
        return self._connection.publish(
            self.spec.destination,
            message.payload,
            self.qos,
            self.retain,
            to_properties(message, self._mqtt5),
        )

    async def _drain_backlog(self) -> None:
        """Hand backlogged QoS 0 messages to paho, in order, as the socket takes them."""
        backlog, connection = self._backlog, self._connection
        try:
            while backlog:
                if connection.congested:
                    await connection.drained()
                message, future = backlog.popleft()
                if future.done():
                    continue
                try:
                    self._send(message)
                except Exception as exc:
                    future.set_exception(exc)
                else:
                    future.set_result(None)
        finally:
            self._drainer = None
            while backlog:  # cancelled (the loop is going away): nothing will send them
                _, future = backlog.popleft()
                if not future.done():
                    future.set_exception(BinderError(f"{self!r} closed before sending"))

    async def close(self, timeout: float = 10.0) -> None:
        """Wait (up to ``timeout`` s) for the backlog and unconfirmed publishes; idempotent."""
        if self._closed:
            return
        self._closed = True
        loop = self._loop
        deadline = loop.time() + timeout
        drainer = self._drainer
        if drainer is not None:
            done, _ = await asyncio.wait([drainer], timeout=timeout)
            if not done:
                drainer.cancel()
                await asyncio.wait([drainer])
        remaining = deadline - loop.time()
        if self._pending and remaining > 0:
            await asyncio.wait(list(self._pending), timeout=remaining)
