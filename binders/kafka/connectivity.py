"""One log line when a Kafka binder loses a broker, one when it has it back.

aiokafka reconnects by itself, but narrates an outage request by request: every failed
fetch, heartbeat, commit, metadata refresh and produce retry is an ERROR or WARNING of
its own (about 50 lines for a half-second outage, and more for each second it lasts).
A :class:`ConnectionWatch` follows the binder's aiokafka clients instead: a connection
that breaks or times out marks its broker lost (one WARNING naming the broker and the
cause); the next answer from that broker marks it back (one WARNING with the outage's
length). While a watch runs, aiokafka's records about failed connections and requests
are demoted to DEBUG (shown with ``--log-level DEBUG``); what they mean for the
bindings (a group rejoined, offsets not committed) is still logged as aiokafka says it.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from aiokafka.conn import CloseReason

__all__ = ["ConnectionWatch"]

log = logging.getLogger("binders.kafka")

#: Close reasons that mean the broker was lost (not an idle drop or our own shutdown).
_LOSSES = {
    CloseReason.CONNECTION_BROKEN: "the connection broke",
    CloseReason.OUT_OF_SYNC: "the connection went out of sync",
}

#: aiokafka's loggers that narrate connection failures.
_NARRATORS = (
    "aiokafka",
    "aiokafka.conn",
    "aiokafka.consumer.fetcher",
    "aiokafka.consumer.group_coordinator",
    "aiokafka.producer.sender",
)
#: Text of aiokafka records that only narrate a failed connection or request.
_NOISE = (
    "KafkaConnectionError",
    "NodeNotReadyError",
    "RequestTimedOutError",
    "Unable connect to node",
    "Unable to update metadata",
    "Unable to request metadata",
    "Marking the coordinator dead",
    "Heartbeat session expired",
)


class _ConnectionNoise(logging.Filter):
    """Demotes aiokafka's per-request connection errors to DEBUG while a watch runs."""

    def __init__(self) -> None:
        super().__init__()
        self.watches = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.watches or record.levelno <= logging.DEBUG:
            return True
        message = record.getMessage()
        if not any(text in message for text in _NOISE):
            return True
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)


_noise = _ConnectionNoise()
for _name in _NARRATORS:
    logging.getLogger(_name).addFilter(_noise)


class ConnectionWatch:
    """Which brokers a Kafka binder's clients have lost, and since when.

    :meth:`watch` each aiokafka client (``AIOKafkaClient``) before it connects;
    :meth:`close` when the binder closes.
    """

    def __init__(self, binder: str, *, request_timeout_ms: int) -> None:
        self.binder = binder
        self._request_timeout_ms = request_timeout_ms
        #: "host:port" -> when it was lost (time.monotonic()).
        self.lost: dict[str, float] = {}
        #: How often a lost broker answered again.
        self.recoveries = 0
        self._clients: list[Any] = []
        self._open = True
        _noise.watches += 1

    def close(self) -> None:
        if self._open:
            self._open = False
            _noise.watches -= 1
            self._listen(False)

    def watch(self, client: Any) -> None:
        """Follow ``client``'s broken connections (and, while a broker is lost, its
        answered requests)."""
        closed = client._on_connection_closed

        def on_connection_closed(conn: Any, reason: Any) -> None:
            self._closed(f"{conn.host}:{conn.port}", reason)
            closed(conn, reason)

        client._on_connection_closed = on_connection_closed
        self._clients.append(client)
        if self.lost:
            self._listen_to(client)

    def _listen(self, on: bool) -> None:
        """Have the clients report answered requests (only while a broker is lost: a
        wrapper on every request costs the stream a few per cent)."""
        for client in self._clients:
            if on:
                self._listen_to(client)
            else:
                client.__dict__.pop("send", None)  # back to the class's method

    def _listen_to(self, client: Any) -> None:
        if "send" in client.__dict__:
            return
        send = client.send

        async def answered_send(node_id: Any, request: Any, **kwargs: Any) -> Any:
            result = await send(node_id, request, **kwargs)
            if self.lost:
                broker = client.cluster.broker_metadata(node_id)
                if broker is not None:
                    self._answered(f"{broker.host}:{broker.port}")
            return result

        client.send = answered_send

    def _closed(self, address: str, reason: Any) -> None:
        if not self._open or address in self.lost:
            return
        if reason == CloseReason.CONNECTION_TIMEOUT:
            cause = f"no answer within request_timeout_ms ({self._request_timeout_ms} ms)"
        elif reason in _LOSSES:
            cause = _LOSSES[reason]
        else:
            return
        if not self.lost:
            self._listen(True)
        self.lost[address] = time.monotonic()
        log.warning(
            "Kafka binder %s lost its connection to broker %s (%s); its clients reconnect "
            "and its bindings wait",
            self.binder,
            address,
            cause,
        )

    def _answered(self, address: str) -> None:
        since = self.lost.pop(address, None)
        if since is not None:
            self.recoveries += 1
        if not self.lost:
            self._listen(False)
        if since is not None and self._open:
            log.warning(
                "Kafka binder %s reconnected to broker %s after %.1f s",
                self.binder,
                address,
                time.monotonic() - since,
            )
