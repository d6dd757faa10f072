"""MQTT sessions over one paho-mqtt client driven by the event loop (no network thread).

An :class:`MqttConnection` connects (the blocking TCP/TLS connect runs in a worker
thread, ``asyncio.to_thread``) and waits for the CONNACK, subscribes and re-subscribes,
publishes with a future per QoS 1 message resolved by its PUBACK, acknowledges received
messages by connection epoch, reconnects, and closes.  Its client's socket is served by
a :class:`~binders.mqtt.paho_loop.PahoLoop`, so every paho callback (CONNACK, PUBLISH,
PUBACK, SUBACK, disconnect) runs on the event loop thread; those paho makes from the
connecting worker thread are moved to the event loop.  A PUBACK can never be handled
before its future exists: ``publish`` registers the future right after
``client.publish`` returns, and paho only reads the socket later, in a reader callback
of the same thread.

paho does not reconnect without its own loop, so this class does: after an unexpected
disconnect it reconnects with the core's jittered exponential backoff
(:class:`binder.backoff.Backoff`) between the configured delays; paho
re-sends unacknowledged QoS 1 publishes after the CONNACK, and this class
re-subscribes.  With several brokers (the ``url`` setting lists them) every opening
and every reconnect tries them in turn from the first (:mod:`binders.mqtt.dialer`): a
reconnect may land on another broker, where a persistent session starts anew.

Reading can be paused (``pause_reading``): a consumer holding its prefetch of unsettled
messages stops reading the socket, and TCP pushes back on the broker.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from binder.backoff import Backoff
from binder.deadlines import Deadlines
from binders.mqtt.buffered_client import BufferedClient
from binders.mqtt.dialer import Dialer, ReconnectGate
from binders.mqtt.errors import (
    MqttConnectionError,
    connect_refused,
    connect_unanswered,
    connection_loss,
    publish_refused,
    reason_name,
    subscription_refused,
)
from binders.mqtt.paho_loop import PahoLoop
from binders.mqtt.settings import ConnectionSettings
from binders.mqtt.tls import client_context

__all__ = ["MqttConnection", "MqttConnectionError"]

log = logging.getLogger(__name__)

_SESSION_TAKEN_OVER = 142
_CLOSE_TIMEOUT = 5.0  # seconds for the DISCONNECT to go out before the socket is dropped
#: QoS 0 messages queued in paho and not written yet before publishers wait.
_QOS0_HIGH_WATER = 1000


class _QuietPaho(logging.Filter):
    """Drop paho's errors that the binder reports itself, in its own words.

    "Client is not connected": paho's loop ran once after a close.  "failed to
    receive on socket" (paho says so for failed sends too): the connection reports
    the loss, with the socket error, when paho tells it the connection is gone.
    """

    _REPORTED = ("Client is not connected", "failed to receive on socket")

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self._REPORTED)


_paho_log = logging.getLogger("binders.mqtt.paho")
_paho_log.addFilter(_QuietPaho())
#: Unconfirmed QoS 1 publishes per connection when neither the ``max_inflight`` setting
#: nor the broker (MQTT 5 CONNACK Receive Maximum) says otherwise: paho's default.
_DEFAULT_MAX_INFLIGHT = 20


OnMessage = Callable[[mqtt.MQTTMessage], None]


class MqttConnection:
    """A connected MQTT client: publish with confirmation, subscribe, acknowledge."""

    def __init__(
        self,
        settings: ConnectionSettings,
        client_id: str,
        *,
        persistent: bool = False,
        session_expiry: int = 0,
        receive_maximum: int | None = None,
        on_message: OnMessage | None = None,
        reconnect_gate: ReconnectGate | None = None,
        with_will: bool = False,
        label: str = "connection",
    ) -> None:
        self.client_id = client_id
        self.label = label
        self._persistent = persistent
        self._reconnect_gate = reconnect_gate
        self._resubscribe_mid: int | None = None
        self._session_present = False
        #: Incremented on every accepted (re)connection; see :meth:`ack`.
        self.epoch = 0
        #: Set while connected with every subscription in place.
        self.ready = asyncio.Event()
        self._session_expiry = session_expiry if persistent else 0
        self._receive_maximum = receive_maximum
        self._loop = asyncio.get_running_loop()
        self._subscriptions: dict[str, int] = {}
        self._pending: dict[int, asyncio.Future[None]] = {}
        #: The topic of each QoS 1 publish awaiting its PUBACK, to name in a refusal.
        self._pending_topics: dict[int, str] = {}
        self._deadlines = Deadlines(self._loop, settings.publish_timeout, self._expired)
        self._subacks: dict[int, asyncio.Future[list[ReasonCode]]] = {}
        self._connected = False
        self._closing = False
        self._closed = False
        self._lost_logged = False
        self._reconnect_task: asyncio.Task[None] | None = None
        # Mids of QoS 0 messages queued in paho and not written to the socket yet.
        self._unwritten: set[int] = set()
        self._drained: asyncio.Event | None = None
        self._backoff = Backoff(
            initial=float(settings.reconnect_min_delay),
            multiplier=2.0,
            maximum=max(float(settings.reconnect_max_delay), float(settings.reconnect_min_delay)),
        )
        self._client = self._make_client(settings, on_message, with_will)
        self._io = PahoLoop(self._client, keepalive=settings.keepalive)
        clean_start: Any = (not persistent) if settings.mqtt5 else mqtt.MQTT_CLEAN_START_FIRST_ONLY
        self._dialer = Dialer(
            self._client,
            self._io,
            settings,
            self._backoff,
            label=label,
            clean_start=clean_start,
            properties=self._connect_properties,
        )

    def __repr__(self) -> str:
        return f"<MqttConnection {self.label} {self.client_id!r} to {self.settings.address}>"

    # -- set-up -----------------------------------------------------------------------

    @property
    def settings(self) -> ConnectionSettings:
        """The settings, with the broker being tried or connected to as host and port."""
        return self._dialer.current

    def _make_client(
        self, s: ConnectionSettings, on_message: OnMessage | None, with_will: bool
    ) -> BufferedClient:
        client = BufferedClient(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            clean_session=None if s.mqtt5 else not self._persistent,
            protocol=mqtt.MQTTv5 if s.mqtt5 else mqtt.MQTTv311,
            manual_ack=True,
        )
        client.suppress_exceptions = True
        client.connect_timeout = s.connect_timeout  # the TCP/TLS connect in its thread
        client.enable_logger(_paho_log)
        client.max_inflight_messages_set(s.max_inflight or _DEFAULT_MAX_INFLIGHT)
        client.max_queued_messages_set(s.max_queued)
        if s.username is not None:
            client.username_pw_set(s.username, s.password)
        if s.tls:
            # The broker's certificate and host name verified (unless tls.insecure); a
            # file that cannot be used raises TlsRefused naming the setting.
            client.tls_set_context(client_context(s))
        if s.will and with_will:
            will = s.will
            client.will_set(will["topic"], will["payload"], will["qos"], will["retain"])
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_subscribe = self._on_subscribe
        if on_message is not None:
            client.on_message = lambda _c, _u, msg: on_message(msg)
        return client

    def _connect_properties(self) -> Properties | None:
        if not self.settings.mqtt5:
            return None
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self._session_expiry
        if self._receive_maximum is not None:
            props.ReceiveMaximum = self._receive_maximum
        return props

    async def open(self) -> None:
        """Connect to the first broker that accepts the client (trying them in turn).

        Raises :class:`~binder.errors.AccessRefused` when a CONNACK refuses the client
        (credentials, authorization), else :class:`MqttConnectionError`: when the
        address cannot be reached, when it closes or resets the connection (or answers
        with something that is not MQTT) instead of a CONNACK, which is reported at
        once, or when no CONNACK came within ``connect_timeout``.  With several
        brokers the error holds each one's sentence (see
        :func:`~binders.mqtt.dialer.no_broker_accepted`).
        """
        try:
            await self._dialer.open()
        except BaseException:
            # Nothing to close: every failed attempt closed its socket, and one still
            # connecting in its thread never gets attached.
            self._io.abandon()
            self._io.drop_socket()
            self._closing = self._closed = True
            raise
        log.debug("%r connected", self)

    def pause_reading(self) -> None:
        """Stop reading the socket (TCP then pushes back on the broker)."""
        self._io.pause_reading()

    def resume_reading(self) -> None:
        """Read the socket again after :meth:`pause_reading`."""
        self._io.resume_reading()

    # -- reconnecting -----------------------------------------------------------------

    def _schedule_reconnect(self) -> None:
        if self._closing or (self._reconnect_task is not None and not self._reconnect_task.done()):
            return
        self._reconnect_task = self._loop.create_task(
            self._reconnect(), name=f"mqtt-reconnect:{self.client_id}"
        )

    async def _reconnect(self) -> None:
        """Reconnect (see :meth:`Dialer.reconnect`), then say where and with what session."""
        lost = self.settings.address
        while not self._connected:  # lost again right after its CONNACK: go on
            if not await self._dialer.reconnect(lambda: self._closing, self._reconnect_gate):
                return
        where = self.settings.address
        moved = where != lost
        if self._lost_logged or moved:
            self._lost_logged = False
            log.info(
                "%r reconnected%s (session present: %s)",
                self,
                f", failing over from {lost}" if moved else "",
                self._session_present,
            )
        if self._persistent and not self._session_present:
            log.warning(
                "%r: the broker had no session for client id %r, so a new one started: QoS "
                "1 messages queued in the previous session%s are not delivered here; the "
                "subscriptions were sent again",
                self,
                self.client_id,
                f" (on {lost})" if moved else "",
            )

    # -- paho callbacks (event loop thread) -------------------------------------------

    def _on_connect(
        self, client: mqtt.Client, _userdata: Any, flags: Any, reason: ReasonCode, props: Any
    ) -> None:
        if reason.is_failure:
            self._connected = False
            where = f"the MQTT broker at {self.settings.address}"
            self._dialer.failed(connect_refused(self.settings, reason, where))
            return
        self._connected = True
        self._session_present = bool(flags.session_present)
        self._adopt_receive_maximum(client, props)
        self.epoch += 1
        if self._subscriptions:
            # Even with the session present: Mosquitto 2.0 does not restore shared
            # subscriptions from its persistence file after a restart.  Subscribing
            # again is idempotent (and group consumers get no retained messages).
            _, self._resubscribe_mid = client.subscribe(
                self._subscribe_args(list(self._subscriptions.items()))
            )
        else:
            self.ready.set()
        self._dialer.accepted()

    def _adopt_receive_maximum(self, client: mqtt.Client, props: Any) -> None:
        """Send as many unconfirmed QoS 1 publishes as the broker's CONNACK allows.

        The limit is the ``max_inflight`` setting if given, else the broker's MQTT 5
        Receive Maximum, and never more than the latter (a broker refuses publishes
        beyond it).  paho ignores the broker's Receive Maximum and refuses to change
        its limit on an open connection, although it only compares the number of
        messages in flight with it (from the next publish or PUBACK on): it is set
        here, in the CONNACK callback, before paho (re-)sends anything.
        """
        announced = getattr(props, "ReceiveMaximum", None) if props is not None else None
        if not announced or getattr(client, "_max_inflight_messages", 0) <= 0:
            return  # MQTT 3.1.1 (no properties), or a paho without that attribute
        limit = min(self.settings.max_inflight or 65535, int(announced))
        client._max_inflight_messages = limit

    def _on_disconnect(
        self, client: mqtt.Client, _userdata: Any, flags: Any, reason: ReasonCode, _props: Any
    ) -> None:
        from_broker = bool(getattr(flags, "is_disconnect_packet_from_server", False))
        error = getattr(client, "socket_error", None)
        self._io.call_soon(self._disconnected, reason, from_broker, error)

    def _disconnected(self, reason: ReasonCode, from_broker: bool, error: OSError | None) -> None:
        was_connected, self._connected = self._connected, False
        self.ready.clear()
        self._unwritten.clear()  # paho drops unsent QoS 0 messages on reconnect
        if self._drained is not None:
            self._drained.set()
            self._drained = None
        if self._closing:
            return
        if not was_connected:
            # An attempt's connection ended: a refused CONNECT failed the attempt
            # already; one that ended without any CONNACK (a port that is not MQTT)
            # fails it now, not after connect_timeout.
            if self._dialer.waiting:
                text = connect_unanswered(self.settings, reason, from_broker, error)
                self._dialer.failed(MqttConnectionError(text))
            return
        if reason.value == _SESSION_TAKEN_OVER:
            log.error(
                "%r: another client connected with the same client id and took the session "
                "over; give every instance of a group a distinct instance_index or "
                "mqtt.client_id",
                self,
            )
        elif not self._lost_logged:
            self._lost_logged = True
            loss = connection_loss(reason, from_broker, error)
            log.warning("%r lost its connection (%s); reconnecting", self, loss)
        else:
            log.debug(
                "%r: connection lost again (%s)", self, connection_loss(reason, from_broker, error)
            )
        self._schedule_reconnect()

    def _on_publish(
        self, _client: mqtt.Client, _userdata: Any, mid: int, reason: ReasonCode, _props: Any
    ) -> None:
        self._io.call_soon(self._published, mid, reason)

    def _on_subscribe(
        self, _client: mqtt.Client, _userdata: Any, mid: int, reasons: list[ReasonCode], _p: Any
    ) -> None:
        if mid == self._resubscribe_mid:
            self.ready.set()
        self._io.call_soon(self._subscribed, mid, list(reasons))

    def _published(self, mid: int, reason: ReasonCode) -> None:
        if self._unwritten:
            self._unwritten.discard(mid)  # a QoS 0 message went out (or nothing)
            if self._drained is not None and len(self._unwritten) <= _QOS0_HIGH_WATER // 2:
                self._drained.set()
                self._drained = None
        future = self._pending.pop(mid, None)
        topic = self._pending_topics.pop(mid, None)
        if future is None or future.done():
            return
        if reason.is_failure:
            future.set_exception(publish_refused(self.settings, topic, reason))
        else:
            future.set_result(None)

    def _subscribed(self, mid: int, reasons: list[ReasonCode]) -> None:
        future = self._subacks.pop(mid, None)
        if future is not None and not future.done():
            future.set_result(reasons)
        elif any(r.is_failure for r in reasons):
            log.error(
                "%r: the broker refused a re-subscription: %s",
                self,
                ", ".join(reason_name(r) for r in reasons if r.is_failure),
            )

    @property
    def persistent(self) -> bool:
        """True for a persistent session (a group consumer's connection)."""
        return self._persistent

    @property
    def connected(self) -> bool:
        """True while the client has a live, accepted connection."""
        return self._connected

    def publish(
        self,
        topic: str,
        payload: bytes,
        qos: int,
        retain: bool = False,
        properties: Properties | None = None,
    ) -> asyncio.Future[None] | None:
        """Hand a message to paho; for QoS 1 return a future resolved by the PUBACK.

        QoS 1 messages published while disconnected are kept by paho and sent after
        the reconnect, so the future simply resolves later.  A QoS 0 message cannot be
        kept: publishing one while disconnected raises.
        """
        if self._closing:
            raise MqttConnectionError(f"{self!r} is closed")
        info = self._client.publish(topic, payload, qos, retain, properties)
        if qos == 0:
            if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                raise MqttConnectionError(
                    f"cannot publish to {topic!r}: {mqtt.error_string(info.rc)}"
                )
            self._unwritten.add(info.mid)
            return None
        if info.rc == MQTTErrorCode.MQTT_ERR_QUEUE_SIZE:
            raise MqttConnectionError(
                f"cannot publish to {topic!r}: {self.settings.max_queued} QoS 1 messages "
                f"already wait for the MQTT broker at {self.settings.address} (max_queued)"
                + ("" if self._connected else "; the connection is down")
            )
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            raise MqttConnectionError(f"cannot publish to {topic!r}: {mqtt.error_string(info.rc)}")
        future: asyncio.Future[None] = self._loop.create_future()
        self._pending[info.mid] = future
        self._pending_topics[info.mid] = topic
        self._deadlines.add(info.mid, future)
        return future

    def _expired(self, mid: int, future: asyncio.Future[None]) -> None:
        """A QoS 1 publish got no PUBACK within ``publish_timeout``: fail its sender.
        paho keeps the message (and sends it again after a reconnect)."""
        if self._pending.get(mid) is future:
            del self._pending[mid]
        topic = self._pending_topics.pop(mid, None)
        to = f" to {topic!r}" if topic is not None else ""
        state = "" if self._connected else " (the connection is down)"
        future.set_exception(
            MqttConnectionError(
                f"the MQTT broker at {self.settings.address} did not acknowledge a message"
                f"{to} within publish_timeout ({self.settings.publish_timeout:g} s){state}; "
                "the client keeps it and sends it again after a reconnect, so it may still "
                "arrive"
            )
        )

    @property
    def congested(self) -> bool:
        """True while too many QoS 0 messages wait in paho for the socket."""
        return len(self._unwritten) >= _QOS0_HIGH_WATER

    async def drained(self) -> None:
        """Wait until the socket took enough queued QoS 0 messages (or was lost).

        paho keeps QoS 0 messages in memory until the event loop writes them; a
        producer that never waits would otherwise queue without bound.
        """
        while self.congested and self._connected and not self._closing:
            if self._drained is None:
                self._drained = asyncio.Event()
            await self._drained.wait()

    def _subscribe_args(self, items: list[tuple[str, int]]) -> list[tuple[str, Any]]:
        if self.settings.mqtt5:
            return [(topic, SubscribeOptions(qos=qos)) for topic, qos in items]
        return list(items)

    async def subscribe(self, topic_filter: str, qos: int, *, binding: str | None = None) -> None:
        """Subscribe and wait for the SUBACK; raise if the broker refused.

        A SUBACK saying *not authorized* (MQTT 5) raises
        :class:`~binder.errors.AccessRefused`, any other refusal (MQTT 3.1.1 gives no
        reason) :class:`MqttConnectionError`; both name the topic filter and, when
        given, the ``binding``.
        """
        self._subscriptions[topic_filter] = qos
        rc, mid = self._client.subscribe(self._subscribe_args([(topic_filter, qos)]))
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise MqttConnectionError(
                f"cannot subscribe to {topic_filter!r}: {mqtt.error_string(rc)}"
            )
        if mid is None:  # paho returns no id only with an error code, handled above
            raise MqttConnectionError(f"cannot subscribe to {topic_filter!r}: no message id")
        future: asyncio.Future[list[ReasonCode]] = self._loop.create_future()
        self._subacks[mid] = future
        try:
            reasons = await asyncio.wait_for(future, self.settings.connect_timeout)
        except TimeoutError:
            self._subacks.pop(mid, None)
            raise MqttConnectionError(
                f"the MQTT broker did not acknowledge the subscription to {topic_filter!r}"
            ) from None
        refused = [r for r in reasons if r.is_failure]
        if refused:
            self._subscriptions.pop(topic_filter, None)
            raise subscription_refused(self.settings, topic_filter, refused[0], binding)

    def ack(self, mid: int, qos: int, epoch: int) -> None:
        """Acknowledge a QoS 1 message received during connection ``epoch``.

        A message received before the latest reconnect is not acknowledged: its packet
        id belongs to the old connection (the broker re-sends the message on the new
        one, and may already use the id for another message).
        """
        if qos > 0 and not self._closed and epoch == self.epoch:
            self._client.ack(mid, qos)

    async def flush(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for outstanding PUBACKs."""
        pending = [f for f in self._pending.values() if not f.done()]
        if pending:
            await asyncio.wait(pending, timeout=timeout)

    async def close(self, end_session: bool = False) -> None:
        """Disconnect cleanly (the DISCONNECT is sent before the socket is closed).

        A persistent session is kept unless ``end_session`` (MQTT 5: DISCONNECT with
        session expiry 0, so the broker forgets the session and its subscriptions).
        """
        if self._closing:
            return
        self._closing = True
        await self._stop_client(end_session and self._persistent and self.settings.mqtt5)
        self._closed = True
        for future in self._pending.values():
            if not future.done():
                future.set_exception(
                    MqttConnectionError("connection closed before the broker confirmed")
                )
        self._pending.clear()
        self._pending_topics.clear()
        self._deadlines.clear()
        for suback in self._subacks.values():
            if not suback.done():
                suback.cancel()
        self._subacks.clear()

    async def _stop_client(self, end_session: bool = False) -> None:
        self._closing = True
        if self._drained is not None:
            self._drained.set()
        task = self._reconnect_task
        if task is not None and not task.done():
            if self._dialer.in_thread:
                await asyncio.wait([task])  # a connect in a worker thread cannot be cancelled
            else:
                task.cancel()
        props = None
        if end_session:
            props = Properties(PacketTypes.DISCONNECT)
            props.SessionExpiryInterval = 0
        self._client.disconnect(properties=props)  # paho closes the socket once it is sent
        self._io.sync()
        await self._io.wait_closed(_CLOSE_TIMEOUT)
        self._io.drop_socket()
