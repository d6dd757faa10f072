"""Connecting one paho client to the first MQTT broker of a list that accepts it.

A :class:`Dialer` makes the connection attempts of one
:class:`~binders.mqtt.connection.MqttConnection`.  One attempt is the blocking TCP/TLS
connect (in a worker thread) and the wait for the CONNACK, against one broker.  The
brokers of the ``url`` setting are tried in their order, always from the first (the
first that accepts wins, as with paho's and Spring's lists of server URIs): when the
connection opens, and on every reconnect after a lost connection, where each round over
the list waits first as the core backoff says.  Every failed attempt of a reconnect,
and every one of the opening that another broker follows, logs one line naming the
broker (``host:port``, never a password) and what comes next.

The connection's paho callbacks end an attempt: :meth:`Dialer.accepted` for a CONNACK
accepting the client, :meth:`Dialer.failed` for a refusal or a connection that ended
without any CONNACK.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

from binder.backoff import Backoff
from binder.errors import AccessRefused, BinderError, describe_error
from binders.mqtt.buffered_client import BufferedClient
from binders.mqtt.errors import DROPPED, MqttConnectionError, connect_unanswered, dropped_how
from binders.mqtt.paho_loop import PahoLoop
from binders.mqtt.settings import ConnectionSettings
from binders.mqtt.tls import handshake_refusal, refusal_before_connack

__all__ = ["Dialer", "ReconnectGate", "no_broker_accepted"]

log = logging.getLogger(__name__)

ReconnectGate = Callable[[], Awaitable[None]]


def no_broker_accepted(errors: list[BinderError]) -> BinderError:
    """One error for a list of brokers none of which accepted the client:
    :class:`~binder.errors.AccessRefused` (refusals first) when any refused it,
    since the others failing does not change that, else MqttConnectionError."""
    if len(errors) == 1:
        return errors[0]
    refused = [e for e in errors if isinstance(e, AccessRefused)]
    text = "; ".join(str(e) for e in refused + [e for e in errors if e not in refused])
    return AccessRefused(text) if refused else MqttConnectionError(text)


class Dialer:
    """Connection attempts of one paho client over the brokers of its settings."""

    def __init__(
        self,
        client: BufferedClient,
        io: PahoLoop,
        settings: ConnectionSettings,
        backoff: Backoff,
        *,
        label: str,
        clean_start: Any,
        properties: Callable[[], Any],
    ) -> None:
        self.candidates = settings.candidates()
        #: The broker being tried, or connected to (the first before any attempt).
        self.current = self.candidates[0]
        #: True while a connect runs in a worker thread (it cannot be cancelled).
        self.in_thread = False
        #: Reconnect rounds that failed since the last accepted connection.
        self.failures = 0
        self._client = client
        self._io = io
        self._backoff = backoff
        self._label = label
        self._clean_start = clean_start
        self._properties = properties
        self._loop = asyncio.get_running_loop()
        self._connack: asyncio.Future[None] | None = None

    # -- the connection's callbacks ----------------------------------------------------

    @property
    def waiting(self) -> bool:
        """True while an attempt waits for its CONNACK."""
        return self._connack is not None and not self._connack.done()

    def accepted(self) -> None:
        """The current attempt's CONNACK accepted the client."""
        self.failures = 0
        if self._connack is not None and not self._connack.done():
            self._connack.set_result(None)

    def failed(self, error: BinderError) -> None:
        """The current attempt failed: refused, or the connection ended first."""
        if self._connack is not None and not self._connack.done():
            self._connack.set_exception(error)

    # -- attempts ----------------------------------------------------------------------

    async def attempt(self, target: ConnectionSettings, *, last: bool) -> BinderError | None:
        """Connect to ``target`` and wait for its CONNACK; the error, or ``None``.

        ``last``: the opening's last attempt, which gives a connect hanging for
        ``connect_timeout`` up (its thread's socket is closed when it comes); other
        attempts wait for paho's own socket timeout (also ``connect_timeout``).
        """
        self.current = target
        connack = self._connack = self._loop.create_future()
        client = self._client
        try:
            client.connect_async(
                target.host,
                target.port,
                target.keepalive,
                clean_start=self._clean_start,
                properties=self._properties(),
            )
        except ValueError as exc:
            return self._connect_error(target, exc)
        thread = asyncio.ensure_future(asyncio.to_thread(client.reconnect))
        self.in_thread = True
        try:
            if last:
                done, _ = await asyncio.wait({thread}, timeout=target.connect_timeout)
                if not done:
                    self._io.abandon()  # a connect still running in its thread is dropped
                    self._io.drop_socket()
                    return MqttConnectionError(
                        f"cannot connect to the MQTT broker at {target.address}: TimeoutError"
                    )
            await thread
        except (OSError, ValueError, ssl.SSLError) as exc:
            self._io.drop_socket()
            return self._connect_error(target, exc)
        finally:
            self.in_thread = False
        try:
            await asyncio.wait_for(asyncio.shield(connack), target.connect_timeout)
        except TimeoutError:
            self._io.drop_socket()
            return MqttConnectionError(
                f"{target.address} did not answer CONNECT within {target.connect_timeout}s: "
                "is it an MQTT broker?"
            )
        except BinderError as error:
            cause = self._client.socket_error  # what ended the connection, if anything
            self._io.drop_socket()
            if isinstance(error, AccessRefused):
                return error
            return await refusal_before_connack(target, cause) or error
        return None

    @staticmethod
    def _connect_error(target: ConnectionSettings, exc: BaseException) -> BinderError:
        refused = handshake_refusal(target, exc)
        if refused is not None:
            return refused
        if isinstance(exc, DROPPED):
            # The TCP connection was accepted, then dropped before paho was done
            # connecting (a port that is not MQTT, or not TLS).
            if target.tls:
                return MqttConnectionError(
                    f"{target.address} {dropped_how(exc)} the connection during the TLS "
                    "handshake: is it an MQTT broker with TLS on that port?"
                )
            return MqttConnectionError(connect_unanswered(target, None, False, exc))
        return MqttConnectionError(
            f"cannot connect to the MQTT broker at {target.address}: {describe_error(exc)}"
        )

    async def open(self) -> None:
        """Try every broker once, from the first; raise if none accepted the client
        (see :func:`no_broker_accepted`)."""
        errors: list[BinderError] = []
        count = len(self.candidates)
        for i, target in enumerate(self.candidates):
            error = await self.attempt(target, last=i == count - 1)
            if error is None:
                return
            errors.append(error)
            if i + 1 < count:
                self._log_failure(error, f"trying {self.candidates[i + 1].address} next")
        raise no_broker_accepted(errors)

    async def reconnect(self, closing: Callable[[], bool], gate: ReconnectGate | None) -> bool:
        """Rounds over every broker, from the first, until one accepts the client
        (True) or ``closing()`` (False); each round waits first, as the backoff says."""
        delay = self._backoff.delay(self.failures + 1)
        while not closing():
            self.failures += 1
            await asyncio.sleep(delay)
            if gate is not None:
                # paho re-sends unconfirmed publishes right after the CONNACK, from
                # inside its read call: hold the connect itself (bounded by the gate).
                await gate()
            delay = self._backoff.delay(self.failures + 1)
            for i, target in enumerate(self.candidates):
                if closing():
                    return False
                error = await self.attempt(target, last=False)
                if error is None:
                    return True
                if i + 1 < len(self.candidates):
                    after = f"trying {self.candidates[i + 1].address} next"
                else:
                    after = f"next attempt in {delay:.1f}s"
                self._log_failure(error, after)
        return False

    def _log_failure(self, error: BinderError, after: str) -> None:
        level = logging.ERROR if isinstance(error, AccessRefused) else logging.WARNING
        log.log(level, "%s: %s; %s", self._label, error, after)
