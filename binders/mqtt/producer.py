"""MQTT producer binding: publishes on the binder's shared publishing connection."""

from __future__ import annotations

import asyncio
import logging

from binder.errors import BinderError
from binder.message import Message
from binder.spi import ProducerSpec
from binders.mqtt.connection import MqttConnection
from binders.mqtt.wire import to_properties

__all__ = ["MqttProducerBinding"]

log = logging.getLogger(__name__)


class MqttProducerBinding:
    """Publishes to ``spec.destination`` with the binding's QoS and retain flag.

    ``publish`` returns when the broker sent PUBACK (QoS 1) or when paho has queued
    the packet (QoS 0, which the broker never confirms; it waits first while the
    connection has too many QoS 0 packets not written yet).  Under MQTT 3.1.1 only the
    payload travels: headers, content type, key and message id are dropped.
    """

    def __init__(
        self, connection: MqttConnection, spec: ProducerSpec, *, qos: int, retain: bool
    ) -> None:
        self.spec = spec
        self.qos = qos
        self.retain = retain
        self._connection = connection
        self._mqtt5 = connection.settings.mqtt5
        self._pending: set[asyncio.Future[None]] = set()
        self._closed = False
        self._warned_headers = False

    def __repr__(self) -> str:
        return f"<MqttProducerBinding {self.spec.binding} {self.spec.destination!r} qos={self.qos}>"

    async def publish(self, message: Message) -> None:
        """Publish ``message``; return once the broker accepted it."""
        if self._closed:
            raise BinderError(f"producer binding {self.spec.binding!r} is closed")
        if not self._mqtt5 and not self._warned_headers and (message.headers or message.key):
            self._warned_headers = True
            log.warning(
                "%r: MQTT 3.1.1 has no headers; headers, key and content type are not sent",
                self,
            )
        if self._connection.congested:
            await self._connection.drained()
        future = self._connection.publish(
            self.spec.destination,
            message.payload,
            self.qos,
            self.retain,
            to_properties(message, self._mqtt5),
        )
        if future is None:
            return
        self._pending.add(future)
        future.add_done_callback(self._pending.discard)
        await future

    async def close(self, timeout: float = 10.0) -> None:
        """Wait (up to ``timeout`` s) for this binding's unconfirmed publishes; idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._pending:
            await asyncio.wait(list(self._pending), timeout=timeout)
