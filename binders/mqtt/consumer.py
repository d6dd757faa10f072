"""MQTT consumer binding: one connection per binding, manual acks, bounded dispatch."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import paho.mqtt.client as mqtt

from binder.errors import BinderError
from binder.message import Message
from binder.spi import ConsumerSpec, Failure, Handler
from binders.mqtt.connection import MqttConnection
from binders.mqtt.handoff import Handoff
from binders.mqtt.wire import from_mqtt

__all__ = ["MqttConsumerBinding"]

log = logging.getLogger(__name__)

_Item = tuple[Message, int, int]
_ORDERED = object()
DeadLetterPublisher = Callable[[str, Message], Awaitable[None]]


class MqttConsumerBinding:
    """Delivers one subscription's messages to a handler.

    Ordering: with ``concurrency`` 1 messages are handled strictly in arrival order;
    with more, messages with the same key are handled one at a time in arrival order
    and messages without a key run concurrently.  A message is acknowledged (PUBACK)
    only after its handler returned.  MQTT has no negative acknowledgement: when the
    handler raises (the core's retries and dead-lettering are already exhausted), the
    failure is logged and the message acknowledged so the stream goes on.
    """

    def __init__(
        self,
        spec: ConsumerSpec,
        handler: Handler,
        *,
        qos: int,
        dead_letter_topic: str | None,
        publish_dead_letter: DeadLetterPublisher,
        on_closed: Callable[[MqttConsumerBinding], None],
    ) -> None:
        self.spec = spec
        self.qos = qos
        self.dead_letter_topic = dead_letter_topic
        self.connection: MqttConnection | None = None
        self._handler = handler
        self._publish_dead_letter = publish_dead_letter
        self._on_closed = on_closed
        self._loop = asyncio.get_running_loop()
        self._semaphore = asyncio.Semaphore(spec.concurrency)
        self._chains: dict[Any, asyncio.Future[None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._handoff: Handoff[_Item] = Handoff(self._loop, spec.max_in_flight, self._dispatch)
        self._closing = False
        self._closed = asyncio.Event()

    def __repr__(self) -> str:
        return f"<MqttConsumerBinding {self.spec.binding} {self.spec.destination!r}>"

    # -- network thread ---------------------------------------------------------------

    def on_mqtt_message(self, msg: mqtt.MQTTMessage) -> None:
        """paho's on_message: decode and hand over to the event loop (may block)."""
        if self._closing:
            return  # not acknowledged: a persistent session redelivers it
        try:
            message = from_mqtt(msg)
        except Exception:  # a topic that is not UTF-8, say: never drop silently
            log.exception("%r cannot read a message (mid %s); acknowledging it", self, msg.mid)
            if self.connection is not None:
                self.connection.ack(msg.mid, msg.qos)
            return
        self._handoff.put((message, msg.mid, msg.qos))

    # -- event loop -------------------------------------------------------------------

    def _dispatch(self, item: _Item) -> None:
        if self._closing:
            self._handoff.release()  # dropped unacknowledged: the session redelivers it
            return
        message = item[0]
        chain_key: Any = _ORDERED if self.spec.concurrency == 1 else message.key
        previous: asyncio.Future[None] | None = None
        done: asyncio.Future[None] | None = None
        if chain_key is not None:
            previous = self._chains.get(chain_key)
            done = self._loop.create_future()
            self._chains[chain_key] = done
        task = self._loop.create_task(self._process(item, chain_key, previous, done))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _process(
        self,
        item: _Item,
        chain_key: Any,
        previous: asyncio.Future[None] | None,
        done: asyncio.Future[None] | None,
    ) -> None:
        message, mid, qos = item
        try:
            if previous is not None:
                await previous
            async with self._semaphore:
                try:
                    await self._handler(message)
                except Exception as exc:
                    log.error(
                        "%r: handler failed on message %s from %r and MQTT cannot redeliver "
                        "it; acknowledging (%s: %s)",
                        self,
                        message.message_id,
                        message.destination,
                        type(exc).__name__,
                        exc,
                    )
                if self.connection is not None:
                    self.connection.ack(mid, qos)
        finally:
            if done is not None:
                done.set_result(None)
                if self._chains.get(chain_key) is done:
                    del self._chains[chain_key]
            self._handoff.release()

    async def dead_letter(self, message: Message, failure: Failure) -> None:
        """Publish a copy with the failure in user properties; return once PUBACKed."""
        if self.dead_letter_topic is None:
            raise BinderError(f"binding {self.spec.binding!r} has dead-lettering disabled")
        dead = message.copy(delivery_attempt=1, destination=self.dead_letter_topic)
        dead.headers.update(failure.headers())
        dead.headers["x-original-topic"] = message.destination or self.spec.destination
        await self._publish_dead_letter(self.dead_letter_topic, dead)

    async def close(self) -> None:
        """Stop taking messages, finish in-flight handlers, disconnect (keeps a session)."""
        if self._closing:
            await self._closed.wait()
            return
        self._closing = True
        self._handoff.close()
        try:
            if self._tasks:
                await asyncio.gather(*list(self._tasks), return_exceptions=True)
            if self.connection is not None:
                await self.connection.close()
        finally:
            self._on_closed(self)
            self._closed.set()
