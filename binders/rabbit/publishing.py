"""Publishes on their way to RabbitMQ: the outbox the event loop fills, the
confirm-mode channel the I/O thread sends them on, and their confirms.

Only :meth:`Publishing.queue` runs on the event loop (``deque.append`` is atomic);
everything else runs on the link's I/O thread.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from binders.rabbit.confirms import ConfirmTracker, Publish, PublishFailed
from binders.rabbit.errors import describe
from binders.rabbit.socket_io import SocketIO

__all__ = ["Publishing"]

log = logging.getLogger("binders.rabbit")


class _ClosingChannelNoise(logging.Filter):
    """py-amqp warns once per frame that reaches a channel while it closes.  Replacing
    a publishing channel closes it with confirms still arriving (they are no longer
    waited for: the publishes went out again on the new channel), so each would be a
    WARNING line; only those are dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "during closing channel" not in str(record.msg)


logging.getLogger("amqp").addFilter(_ClosingChannelNoise())

#: At most one fresh publishing channel per this many seconds after rejected publishes.
RENEW_EVERY = 1.0
#: A rejected publish is sent again (on a fresh channel) this many times before it fails.
RETRIES_AFTER_REJECTION = 3


class Publishing:
    """The publishing half of a link (see :mod:`binders.rabbit.link`)."""

    def __init__(
        self,
        label: str,
        publish_timeout: float,
        is_connection_error: Callable[[BaseException], bool],
    ) -> None:
        self.label = label
        self.outbox: deque[Publish] = deque()
        self.confirms = ConfirmTracker(publish_timeout)
        self.channel: Any = None
        """The confirm-mode channel (None while disconnected)."""
        self.opened = 0
        """How many publishing channels were opened (for tests)."""
        self._timeout = publish_timeout
        self._is_connection_error = is_connection_error
        self._rejected = False
        self._renewed_at = -RENEW_EVERY
        self._held: list[Publish] = []  # rejected, to send again on the fresh channel

    # ------------------------------------------------------------------ event loop side

    def queue(self, pub: Publish) -> None:
        """Queue ``pub`` with its deadline; the I/O thread sends it."""
        pub.deadline = time.monotonic() + self._timeout
        self.outbox.append(pub)

    # ------------------------------------------------------------------ I/O thread side

    def open(self, conn: Any, watch: Callable[[Any], None]) -> None:
        """Open a channel on ``conn`` in confirm mode and publish on it from now on."""
        channel = conn.channel()
        watch(channel)
        channel.confirm_select()
        channel.events["basic_ack"].add(self.confirms.confirm)
        channel.events["basic_nack"].add(self._on_nack)
        self.channel = channel
        self.confirms.channel_opened()
        self.opened += 1

    def _on_nack(self, tag: int, multiple: bool) -> None:
        self.confirms.reject(tag, multiple, self._hold)
        self._rejected = True

    def _hold(self, pub: Publish) -> bool:
        """Keep a rejected publish to send it again on the fresh channel (a publish the
        broker rejected was not stored, so sending it again loses nothing; duplicates
        only where it was rejected by some of several queues)."""
        pub.rejections += 1
        if pub.rejections > RETRIES_AFTER_REJECTION:
            return False
        self._held.append(pub)
        return True

    def renew_if_rejected(self, conn: Any, watch: Callable[[Any], None]) -> None:
        """Publish on a fresh channel after the broker rejected publishes.

        A rejection (``basic.nack``) means a queue process failed to take the message;
        after a quorum queue changed leader in a cluster, a publishing channel opened
        meanwhile was seen to have every later publish rejected for minutes, while a
        fresh channel had them confirmed.  So the channel is replaced (at most once a
        second); the rejected publishes are retried by the engine, the unconfirmed
        ones are sent again on the new channel.
        """
        if not self._rejected:
            return
        now = time.monotonic()
        if now < self._renewed_at + RENEW_EVERY:
            return  # still suspect: looked at again on a later turn
        self._rejected = False
        self._renewed_at = now
        pending = self.confirms.take_unconfirmed()
        old, self.channel = self.channel, None
        try:
            old.close()
        except Exception as exc:
            if self._is_connection_error(exc):
                raise
        self.open(conn, watch)
        held, self._held = self._held, []
        for pub in reversed(sorted(held + pending, key=lambda p: p.tag)):
            self.outbox.appendleft(pub)
        log.warning(
            "%s: RabbitMQ rejected publishes; sending %d again on a fresh channel",
            self.label,
            len(held),
        )

    def reopen_after_channel_error(
        self, conn: Any, watch: Callable[[Any], None], error: BaseException
    ) -> None:
        """The broker closed the publishing channel: which publish caused it is unknown,
        so every unconfirmed one fails (rather than resend a poison publish forever;
        none of them is reported as sent), and a new channel takes over."""
        self.confirms.fail_unconfirmed(lambda: PublishFailed(str(error)))
        try:
            self.channel.close()
        except Exception as exc:
            if self._is_connection_error(exc):
                raise
        self.open(conn, watch)

    def requeue_unconfirmed(self) -> None:
        """Queue the unconfirmed (and held rejected) publishes again, in their order,
        before the others (after a reconnect: at-least-once)."""
        held, self._held = self._held, []
        for pub in reversed(sorted(held + self.confirms.take_unconfirmed(), key=lambda p: p.tag)):
            self.outbox.appendleft(pub)

    def send(self, io: SocketIO | None) -> None:
        """Send every queued publish; with buffered socket I/O, in one write."""
        if not self.outbox:
            return
        written: list[Publish] = []  # sent without confirms: done once written
        if io is None:
            self._send_queued(written)
        else:
            try:
                with io.batched():
                    self._send_queued(written)
            except BaseException:
                # The connection failed with them (maybe) still in the buffer: send them
                # again after the reconnect, like the unconfirmed ones.
                for pub in reversed(written):
                    self.outbox.appendleft(pub)
                raise
        self.confirms.written(written)

    def _send_queued(self, written: list[Publish]) -> None:
        from amqp import spec

        outbox = self.outbox
        # basic.publish as py-amqp's basic_publish sends it, without the poll of the
        # socket it makes first on every call (for connection.blocked notifications,
        # which the I/O thread reads with every other frame anyway).
        send = self.channel.send_method
        method = spec.Basic.Publish
        confirms = self.confirms
        sent = confirms.sent
        while outbox:
            pub = outbox.popleft()
            if pub.expired or pub.future.done():  # reported failed, or cancelled
                continue
            try:
                send(method, "Bssbb", (0, pub.exchange, pub.routing_key, False, False), pub.message)
            except Exception as exc:
                if not self._is_connection_error(exc):  # e.g. a header py-amqp cannot encode
                    text = f"cannot send the message: {describe(exc)}"
                    confirms.fail(pub.future, PublishFailed(text))
                    continue
                outbox.appendleft(pub)
                raise
            sent(pub)
            if not pub.confirm:
                written.append(pub)

    def expire(self, now: float) -> bool:
        """Fail the publishes past their deadline; whether any failed publish waits to
        be reported."""
        # A copy of the outbox: the event loop appends to it meanwhile.
        self.confirms.expire(now, [*self._held, *self.outbox])
        self._held = [pub for pub in self._held if not pub.expired]
        return bool(self.confirms.failed)

    def fail_all(self, error: BaseException) -> None:
        """Stopping: fail the unconfirmed publishes, then the held and queued ones."""
        self.confirms.fail_unconfirmed(lambda: error)
        held, self._held = self._held, []
        for pub in [*held, *self.outbox]:
            self.confirms.fail(pub.future, error)
        self.outbox.clear()
