"""One AMQP connection, owned and driven by one I/O thread, bridged to asyncio.

Why this shape.  Measured with ``benchmarks/rabbit_throughput.py`` when the binder still
ran handlers itself (20,000 x 100-byte JSON, prefetch 256, same broker and run):

* plain kombu with ``confirm_publish`` waits for each confirm: ~1,300 msg/s persistent
  produce->consume here; an asyncio bridge with a thread hop per message each way
  (``run_in_executor`` per publish, ``run_coroutine_threadsafe`` per delivery) reaches
  only ~700 persistent and ~3,000 transient;
* this design: ~8,000 msg/s persistent with confirms (pipelined) and ~6,600 transient
  (plain kombu ~6,300), i.e. the hop per message is gone and confirms no longer cap
  throughput.  Awaiting each publish alone (one in flight) still costs one round trip
  through the thread (~1,000 msg/s), so concurrency is what buys throughput.

The design:

* py-amqp (under kombu) is blocking and not thread-safe, so every call on a connection
  and its channels -- publish, ack, declare, consume, heartbeat -- happens on the one
  thread that owns it.  asyncio code never touches the socket.
* The thread sleeps in ``select()`` on the AMQP socket plus a wake-up pipe.  The event
  loop appends work to lock-free deques (``collections.deque`` appends are atomic) and
  writes one byte to the pipe only when the thread is not already awake, so a burst of
  publishes or acks costs one wake-up, not one per message.
* Each turn of the thread sends every queued publish and ack, reads every frame the
  socket has (non-blocking), then hands results back in chunks: one
  ``loop.call_soon_threadsafe`` per consumer per turn carrying all its deliveries, and
  one carrying all confirmed publishes.  There is no thread hop per message and no
  executor.
* System calls are few (each one releases the GIL, and taking it back costs when the
  event loop and handler threads are busy): on plain TCP one ``recv`` per turn takes
  what the socket has and py-amqp parses frames from that; a turn's publishes, and its
  acks, are written with one ``sendall`` each (:class:`SocketIO`).  py-amqp's
  ``basic_publish`` polls the socket before every publish; the link sends the same
  ``basic.publish`` method without that poll.
* Publisher confirms are pipelined: the channel is put in confirm mode once
  (``confirm.select``), every publish gets the next delivery tag and stays in an
  "unconfirmed" table, and ``basic.ack``/``basic.nack`` (often with ``multiple``)
  resolve the matching asyncio futures (the bookkeeping is
  :class:`~binders.rabbit.confirms.ConfirmTracker`).  Many publishes are in flight at
  once instead of kombu's ``confirm_publish`` wait-per-message.
* Acks are coalesced: the acks and rejects queued since the last turn are sent
  together, and a run of acks that leaves no unsettled delivery below it on its channel
  becomes one ``basic.ack(multiple=True)`` (see
  :meth:`~binders.rabbit.acks.AckCoalescer.settle` for why that is safe).
* Reconnection: on a connection error the thread reconnects with the core's jittered
  exponential :class:`~binder.backoff.Backoff` (trying each URL in turn), re-declares
  the recorded topology, re-opens consumer channels and re-publishes every publish that
  was not confirmed (at-least-once: a publish is reported done only after its confirm;
  one not confirmed within ``publish_timeout`` fails).  Unacked deliveries are
  redelivered by RabbitMQ; acks for deliveries of a dead channel are dropped (tracked
  with an epoch per consumer).  Every failed attempt logs one line saying why (a
  refused login at ERROR, naming the user) and when the next one is; the wait between
  attempts is only cut short by :meth:`Link.close`, never by publishes or acks queued
  meanwhile, so an app that keeps publishing does not turn the backoff into a tight
  loop of logins.
* Errors are one sentence (:mod:`binders.rabbit.errors`): what RabbitMQ refused to a
  caller of the link is :class:`~binder.errors.AccessRefused` (login, virtual host,
  permissions) or :class:`LinkError`, never a chain of py-amqp exception names.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import select
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from binder.backoff import Backoff
from binder.deadlines import Deadlines
from binder.errors import AccessRefused
from binders.rabbit.acks import AckCoalescer
from binders.rabbit.confirms import Publish, PublishFailed
from binders.rabbit.errors import LinkError, as_error, describe, translate
from binders.rabbit.publishing import Publishing
from binders.rabbit.socket_io import SocketIO
from binders.rabbit.stalled import Stalled
from binders.rabbit.topology import BindDecl, Decl, ExchangeDecl, QueueDecl

__all__ = ["ConsumerHandle", "Link", "LinkError"]

#: Seconds past a publish's deadline before the event loop fails it itself.
_LATE_GRACE = 1.0

log = logging.getLogger("binders.rabbit")

_MAX_FRAMES_PER_TURN = 1536
#: The reconnect backoff when none is given.
DEFAULT_BACKOFF = Backoff(initial=0.2, multiplier=2.0, maximum=10.0)


@dataclass(slots=True, eq=False)
class ConsumerHandle:
    """The I/O thread's view of one consumer: queue, prefetch, its own channel."""

    queue: str
    prefetch: int
    decls: list[Decl]
    deliver: Callable[[list[Any], int], None]
    """Called on the event loop with a chunk of amqp messages and the channel epoch."""
    channel: Any = None
    epoch: int = 0
    tag: str = ""
    cancelled: bool = False
    batch: list[Any] = field(default_factory=list)
    acks: AckCoalescer = field(default_factory=AckCoalescer)
    """Ack coalescing on the current channel (I/O thread only; new with the epoch)."""


def _declare(channel: Any, decl: Decl) -> None:
    if isinstance(decl, ExchangeDecl):
        if decl.name:
            channel.exchange_declare(decl.name, decl.type, durable=decl.durable, auto_delete=False)
    elif isinstance(decl, QueueDecl):
        channel.queue_declare(
            decl.name,
            durable=decl.durable,
            exclusive=decl.exclusive,
            auto_delete=decl.auto_delete,
            arguments=dict(decl.arguments) or None,
        )
    elif isinstance(decl, BindDecl):
        channel.queue_bind(
            decl.queue, decl.exchange, decl.routing_key, arguments=dict(decl.arguments) or None
        )


class Link:
    """An AMQP connection plus the I/O thread that owns it; see the module docstring."""

    def __init__(
        self,
        label: str,
        connect: Callable[[], Any],
        loop: asyncio.AbstractEventLoop,
        *,
        backoff: Backoff = DEFAULT_BACKOFF,
        publish_timeout: float = 60.0,
    ) -> None:
        self.label = label
        self._connect_fn = connect
        self._loop = loop
        self._backoff = backoff
        self._publishing = Publishing(label, publish_timeout, _is_connection_error)
        # Commands for the I/O thread, in order: callables, and acks as
        # (handle, epoch, delivery tag, ok) tuples (no closure per ack).
        self._commands: deque[Any] = deque()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._wake_pending = False
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._started: asyncio.Future[None] | None = None
        self._stopped = threading.Event()
        self._calls: set[asyncio.Future[Any]] = set()  # event loop side only
        # The I/O thread fails publishes at their deadline, but not while a connection
        # attempt holds it (up to connect_timeout): then this does, a moment later.
        self._publish_timeout = publish_timeout
        self._late = Deadlines(loop, publish_timeout + _LATE_GRACE, self._publish_late)
        # Everything below is touched by the I/O thread only.
        self._kconn: Any = None
        self._io: SocketIO | None = None
        self._conn: Any = None
        self._admin: Any = None  # declarations: an error there must not hit publishes
        self._ready: list[ConsumerHandle] = []
        self._consumers: list[ConsumerHandle] = []
        self._decls: dict[Decl, None] = {}
        self._broken_channels: set[Any] = set()
        self._stalled = Stalled(label, backoff)
        self.connected = False
        self.reconnects = 0
        self.declared: set[Decl] = set()
        """Everything this link ever declared (for tooling and test clean-up)."""

    # ------------------------------------------------------------------ event loop side

    @property
    def _closed_text(self) -> str:
        return f"the RabbitMQ connection {self.label} is closed"

    async def start(self) -> None:
        """Start the thread and wait for the first connection.

        Raises :class:`~binder.errors.AccessRefused` when RabbitMQ refused the login or
        the virtual host (or a declaration of the first connection), else
        :class:`LinkError` when it cannot be reached."""
        self._started = self._loop.create_future()
        self._thread = threading.Thread(
            target=self._run, name=f"eventbinder-rabbit-{self.label}", daemon=True
        )
        self._thread.start()
        await self._started

    def _wake(self, force: bool = False) -> None:
        if force or not self._wake_pending:
            self._wake_pending = True
            with contextlib.suppress(BlockingIOError, OSError):
                os.write(self._wake_w, b"x")

    def publish(self, pub: Publish) -> None:
        """Queue ``pub``; its future resolves on confirm (or fails)."""
        if self._stopping:
            pub.future.set_exception(LinkError(self._closed_text))
            return
        self._publishing.queue(pub)
        self._late.add(0, pub.future)
        self._wake()

    def _publish_late(self, _key: int, future: asyncio.Future[None]) -> None:
        future.set_exception(
            PublishFailed(
                f"not confirmed by the broker within publish_timeout "
                f"({self._publish_timeout:g} s) (the connection was being re-established); "
                "it may still have been routed"
            )
        )

    def ack(self, handle: ConsumerHandle, epoch: int, tag: int, ok: bool) -> None:
        """Ack (``ok``) or reject-and-requeue a delivery; dropped if its channel died.

        Acks and commands (e.g. :meth:`close_consumer`) are carried out in call order.
        """
        self._commands.append((handle, epoch, tag, ok))
        if not self._wake_pending:
            self._wake()

    async def call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on the I/O thread (once connected) and return its result."""
        if self._stopping:
            raise LinkError(self._closed_text)
        future: asyncio.Future[Any] = self._loop.create_future()
        self._calls.add(future)
        future.add_done_callback(self._calls.discard)

        def run() -> None:
            from amqp.exceptions import ChannelError

            try:
                result = fn()
            except ChannelError as exc:
                # The caller is told (in one sentence); the channel is repaired quietly.
                self._post(_set_exception, future, translate(exc))
                self._repair_channels(exc, reported=True)
            except BaseException as exc:
                self._post(_set_exception, future, translate(exc))
                raise
            else:
                self._post(_set_result, future, result)

        self._commands.append(run)
        self._wake()
        return await future

    async def declare(self, decls: Iterable[Decl], *, remember: bool = True) -> None:
        """Declare ``decls`` now and (``remember``) again after every reconnect."""
        decls = list(decls)
        if not decls:
            return

        def run() -> None:
            for decl in decls:
                self._declare(decl)
                if remember:
                    self._decls[decl] = None

        await self.call(run)

    async def add_consumer(self, handle: ConsumerHandle) -> None:
        """Declare the consumer's topology, open its channel and start consuming."""

        def run() -> None:
            self._consumers.append(handle)
            try:
                self._open_consumer(handle)
            except BaseException:
                self._consumers.remove(handle)
                channel, handle.channel = handle.channel, None
                if channel is not None:  # e.g. basic.consume refused: py-amqp reopened it
                    with contextlib.suppress(Exception):
                        channel.close()
                raise

        await self.call(run)

    async def cancel_consumer(self, handle: ConsumerHandle) -> None:
        """Stop deliveries to ``handle`` (pending acks still go out)."""

        def run() -> None:
            handle.cancelled = True
            channel = handle.channel
            if channel is not None and channel.is_open and handle.tag:
                channel.basic_cancel(handle.tag)

        await self.call(run)

    async def close_consumer(self, handle: ConsumerHandle) -> None:
        """Close the consumer's channel after every ack queued before this call."""

        handle.cancelled = True

        def run() -> None:
            if handle in self._consumers:
                self._consumers.remove(handle)
            self._stalled.forget_consumer(handle)
            channel, handle.channel = handle.channel, None
            handle.epoch += 1
            if channel is not None and channel.is_open:
                channel.close()

        if self.connected:
            await self.call(run)
        else:
            self._commands.append(run)

    async def close(self) -> None:
        """Close the connection and stop the thread; pending publishes fail.  Idempotent."""
        if self._thread is None:
            return
        self._stopping = True
        self._wake(force=True)  # also ends a wait between connection attempts
        while not self._stopped.is_set():
            await asyncio.sleep(0.005)
        thread, self._thread = self._thread, None
        await asyncio.to_thread(thread.join, 5)
        for future in list(self._calls):  # queued while disconnected, never run
            _set_exception(future, LinkError(self._closed_text))
        self._late.clear()
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    def _post(self, fn: Callable[..., None], *args: Any) -> None:
        with contextlib.suppress(RuntimeError):  # loop already closed
            self._loop.call_soon_threadsafe(fn, *args)

    # ------------------------------------------------------------------ I/O thread side

    def _run(self) -> None:
        backoff = self._backoff
        failures = 0  # consecutive failed or short-lived connections
        first = True
        try:
            while not self._stopping:
                try:
                    self._kconn = self._connect_fn()
                    self._conn = self._kconn.connection
                except Exception as exc:
                    if first:
                        self._post(_set_exception, self._started, as_error(exc))
                        return
                    failures += 1
                    self._retry_later("cannot reconnect", exc, backoff.delay(failures))
                    continue
                served = 0.0
                restored = False
                lost: Exception | None = None
                try:
                    self._restore()
                    restored = True
                    self.connected = True
                    if first:
                        first = False
                        self._post(_set_result, self._started, None)
                    else:
                        self.reconnects += 1
                        log.warning("%s: reconnected", self.label)
                    since = time.monotonic()
                    try:
                        self._serve()
                    finally:
                        served = time.monotonic() - since
                except Exception as exc:
                    lost = exc
                finally:
                    self.connected = False
                    self._drop_connection()
                if self._stopping or lost is None:
                    break
                if first:
                    self._post(_set_exception, self._started, as_error(lost))
                    return
                # A connection that dies at once must not make a busy reconnect loop;
                # one that served a while starts the backoff over.
                if served > backoff.maximum:
                    failures = 0
                failures += 1
                what = "connection lost" if restored else "cannot restore after reconnecting"
                self._retry_later(what, lost, backoff.delay(failures))
        finally:
            self._shutdown()

    def _retry_later(self, what: str, exc: BaseException, delay: float) -> None:
        """Log one line (why, and when the next attempt is), then wait ``delay``."""
        error = as_error(exc)
        level = logging.ERROR if isinstance(error, AccessRefused) else logging.WARNING
        log.log(level, "%s: %s: %s; next attempt in %.1fs", self.label, what, error, delay)
        self._sleep(delay)

    def _sleep(self, seconds: float) -> None:
        """Wait between connection attempts; only :meth:`close` cuts the wait short.

        Publishes and acks queued meanwhile write no wake-up byte (the flag says one is
        pending), so they cannot hurry the next attempt; publishes past their deadline
        still fail on time.
        """
        deadline = time.monotonic() + seconds
        self._wake_pending = True
        try:
            while not self._stopping:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                select.select([self._wake_r], [], [], min(remaining, 0.25))
                with contextlib.suppress(BlockingIOError, OSError):
                    os.read(self._wake_r, 4096)  # a stray byte must not make a busy loop
                self._expire_publishes()
        finally:
            self._drain_wake()

    def _drain_wake(self) -> None:
        # Empty the pipe *before* clearing the flag: the other order can swallow the
        # byte of a wake-up requested in between, and the thread would then sleep
        # until the next tick with work queued.  Work is taken after this returns.
        with contextlib.suppress(BlockingIOError, OSError):
            os.read(self._wake_r, 4096)
        self._wake_pending = False

    def _declare(self, decl: Decl) -> None:
        _declare(self._admin, decl)
        self.declared.add(decl)

    def _open_control(self) -> None:
        if self._admin is None:
            self._admin = self._conn.channel()
            self._watch(self._admin)
        self._publishing.open(self._conn, self._watch)

    def _watch(self, channel: Any) -> None:
        """Note which channel the broker closed (py-amqp reopens it in place)."""
        from amqp import spec

        original = channel._callbacks[spec.Channel.Close]

        def on_close(*args: Any) -> Any:
            self._broken_channels.add(channel)
            return original(*args)

        channel._callbacks[spec.Channel.Close] = on_close

    def _restore(self) -> None:
        """After (re)connecting: control channel, topology, consumers, unconfirmed publishes."""
        self._io = SocketIO.install(self._conn.transport)
        self._stalled.clear()
        self._open_control()
        for decl in list(self._decls):
            self._declare_or_stall(decl)
        for handle in list(self._consumers):
            if not handle.cancelled:
                self._open_consumer_or_stall(handle)
        self._publishing.requeue_unconfirmed()
        if self._stalled:
            self._stalled.schedule()

    def _declare_or_stall(self, decl: Decl) -> None:
        """Declare ``decl``; if RabbitMQ refuses, note it for a later attempt."""
        from amqp.exceptions import ChannelError

        try:
            self._declare(decl)
        except ChannelError as exc:
            self._broken_channels.discard(self._admin)  # py-amqp reopened it in place
            self._stalled.declaration_failed(decl, _reason(exc))

    def _open_consumer_or_stall(self, handle: ConsumerHandle) -> None:
        """Resume ``handle``; if RabbitMQ refuses its queue, note it for a later attempt
        (the other declarations it needs, a DLQ say, may wait without stopping it)."""
        from amqp.exceptions import ChannelError

        try:
            self._open_consumer(handle, stall_others=True)
        except ChannelError as exc:
            self._broken_channels.discard(self._admin)
            channel, handle.channel = handle.channel, None
            if channel is not None:
                self._broken_channels.discard(channel)
                with contextlib.suppress(Exception):
                    channel.close()
            self._stalled.consumer_failed(handle, _reason(exc))

    def _retry_stalled(self) -> None:
        """Try again what the last reconnect could not restore."""
        stalled = self._stalled
        decls, handles = list(stalled.declarations), list(stalled.consumers)
        stalled.declarations.clear()
        stalled.consumers.clear()
        for decl in decls:
            self._declare_or_stall(decl)
        for handle in handles:
            if handle in self._consumers and not handle.cancelled:
                self._open_consumer_or_stall(handle)
        if not stalled:
            log.warning("%s: restored everything the reconnect had left out", self.label)
        stalled.schedule()

    def _open_consumer(self, handle: ConsumerHandle, *, stall_others: bool = False) -> None:
        for decl in handle.decls:
            if stall_others and not (isinstance(decl, QueueDecl) and decl.name == handle.queue):
                self._declare_or_stall(decl)
            else:
                self._declare(decl)
        channel = self._conn.channel()
        self._watch(channel)
        channel.basic_qos(0, handle.prefetch, False)
        handle.epoch += 1
        handle.channel = channel
        handle.batch = []
        handle.acks = AckCoalescer()  # delivery tags start at 1 on every channel

        def on_message(message: Any, handle: ConsumerHandle = handle) -> None:
            if not handle.batch:
                self._ready.append(handle)
            handle.batch.append(message)

        def on_cancel(tag: str, handle: ConsumerHandle = handle) -> None:
            if not handle.cancelled:
                log.warning("%s: the broker cancelled the consumer of %s", self.label, handle.queue)

        handle.tag = channel.basic_consume(
            handle.queue, callback=on_message, on_cancel=on_cancel, no_ack=False
        )

    def _serve(self) -> None:
        conn = self._conn
        sock = conn.sock
        wake = self._wake_r
        heartbeat = float(conn.heartbeat or 0)
        tick = min(1.0, heartbeat / 4) if heartbeat else 1.0
        next_tick = time.monotonic() + tick
        ssl_sock = isinstance(sock, ssl.SSLSocket)
        io = self._io
        while not self._stopping:
            self._run_commands()
            self._publishing.send(self._io)
            self._flush()
            if (io is not None and io.frame_ready()) or (ssl_sock and sock.pending()):
                readable: list[Any] = [sock]  # frames already buffered
            else:
                readable, _, _ = select.select([sock, wake], [], [], tick)
            if wake in readable:
                self._drain_wake()
            if sock in readable:
                self._read_frames()
            self._publishing.renew_if_rejected(conn, self._watch)
            now = time.monotonic()
            if now >= next_tick:
                next_tick = now + tick
                if heartbeat:
                    conn.heartbeat_tick()
                self._expire_publishes()
                if self._stalled.due(now):
                    self._retry_stalled()
        self._close_gracefully()

    def _read_frames(self) -> None:
        conn = self._conn
        from amqp.exceptions import ChannelError

        io = self._io
        if io is None:  # TLS: py-amqp's own reads
            for _ in range(_MAX_FRAMES_PER_TURN):
                try:
                    conn.drain_events(timeout=0)
                except TimeoutError:
                    return
                except ChannelError as exc:
                    self._repair_channels(exc)
            return
        io.fill()
        transport = conn.transport
        for _ in range(_MAX_FRAMES_PER_TURN):
            if not io.frame_ready():
                return
            frame = transport.read_frame()  # from the buffer: never blocks
            try:
                conn.on_inbound_frame(frame)
            except ChannelError as exc:
                self._repair_channels(exc)

    def _run_commands(self) -> None:
        """Carry out the commands queued so far, in order; acks between two commands
        go out together (see :meth:`_settle`)."""
        commands = self._commands
        acks: list[tuple[ConsumerHandle, int, int, bool]] = []
        # Only what is queued now: a busy event loop must not keep the thread from reading.
        for _ in range(len(commands)):
            command = commands.popleft()
            if type(command) is tuple:
                acks.append(command)
                continue
            if acks:
                self._guarded(self._settle, acks)
                acks = []
            self._guarded(command)
        if acks:
            self._guarded(self._settle, acks)

    def _guarded(self, fn: Callable[..., None], *args: Any) -> None:
        from amqp.exceptions import ChannelError

        try:
            fn(*args)
        except ChannelError as exc:
            self._repair_channels(exc)
        except Exception as exc:
            if _is_connection_error(exc):
                raise
            log.debug("%s: command failed: %s", self.label, describe(exc))

    def _settle(self, acks: list[tuple[ConsumerHandle, int, int, bool]]) -> None:
        """Send acks and rejects; those of a channel that died since are dropped."""
        channels: dict[ConsumerHandle, list[tuple[int, bool]]] = {}
        for handle, epoch, tag, ok in acks:
            if epoch != handle.epoch or handle.channel is None:
                continue  # the channel died: RabbitMQ redelivers the message
            settled = channels.get(handle)
            if settled is None:
                settled = channels[handle] = []
            settled.append((tag, ok))
        if not channels:
            return
        if self._io is None:
            for handle, settled in channels.items():
                handle.acks.settle(handle.channel, settled)
            return
        with self._io.batched():  # basic.ack and basic.reject wait for no reply
            for handle, settled in channels.items():
                handle.acks.settle(handle.channel, settled)

    def _expire_publishes(self) -> None:
        if self._publishing.expire(time.monotonic()):
            self._flush()

    def _flush(self) -> None:
        confirms = self._publishing.confirms
        done = confirms.take_done()
        if done:
            self._post(_resolve_all, done)
        failed = confirms.take_failed()
        if failed:
            self._post(_fail_all, failed)
        if self._ready:
            ready, self._ready = self._ready, []
            for handle in ready:
                batch, handle.batch = handle.batch, []
                self._post(handle.deliver, batch, handle.epoch)

    def _repair_channels(self, exc: BaseException, *, reported: bool = False) -> None:
        """A channel was closed by the broker (py-amqp reopened it): restore its role.

        ``reported``: the caller of the failed command was told, so only a debug line.
        """
        broken, self._broken_channels = self._broken_channels, set()
        level = logging.DEBUG if reported else logging.WARNING
        log.log(level, "%s: channel error: %s", self.label, describe(exc))
        # py-amqp has already reopened a broken admin channel in place: nothing to restore.
        if self._publishing.channel in broken:
            self._publishing.reopen_after_channel_error(self._conn, self._watch, as_error(exc))
        for handle in self._consumers:
            if handle.channel in broken and not handle.cancelled:
                with contextlib.suppress(Exception):
                    handle.channel.close()
                handle.channel = None
                try:
                    self._open_consumer(handle)
                except Exception as again:
                    if _is_connection_error(again):
                        raise
                    log.error(
                        "%s: cannot resume consuming %s: %s",
                        self.label,
                        handle.queue,
                        describe(again),
                    )
        self._flush()

    def _close_gracefully(self) -> None:
        """Stopping: flush queued acks and publishes, wait briefly for confirms."""
        with contextlib.suppress(Exception):
            self._run_commands()
            self._publishing.send(self._io)
            deadline = time.monotonic() + 5.0
            while self._publishing.confirms.pending and time.monotonic() < deadline:
                with contextlib.suppress(socket.timeout):
                    self._conn.drain_events(timeout=0.1)
            self._flush()
            self._kconn.release()

    def _drop_connection(self) -> None:
        for handle in self._consumers:
            handle.channel = None
            handle.epoch += 1
            handle.batch = []
        self._ready.clear()
        self._broken_channels.clear()
        self._publishing.channel = None
        self._admin = None
        self._io = None
        kconn, self._kconn, self._conn = self._kconn, None, None
        if kconn is not None:
            with contextlib.suppress(Exception):
                kconn.collect()
        self._flush()

    def _shutdown(self) -> None:
        self._publishing.fail_all(LinkError(self._closed_text))
        self._flush()
        self._stopped.set()


def _reason(exc: BaseException) -> str:
    """RabbitMQ's reason for a refusal, without the method (the log line names it)."""
    text = describe(exc)
    return text.split(": ", 1)[1] if text.startswith("RabbitMQ refused ") else text


def _is_connection_error(exc: BaseException) -> bool:
    from amqp.exceptions import ConnectionError as AMQPConnectionError
    from amqp.exceptions import RecoverableConnectionError

    return isinstance(exc, AMQPConnectionError | RecoverableConnectionError | OSError)


def _set_result(future: asyncio.Future[Any] | None, result: Any) -> None:
    if future is not None and not future.done():
        future.set_result(result)


def _set_exception(future: asyncio.Future[Any] | None, exc: BaseException) -> None:
    if future is not None and not future.done():
        future.set_exception(exc)


def _resolve_all(futures: list[asyncio.Future[None]]) -> None:
    for future in futures:
        if not future.done():
            future.set_result(None)


def _fail_all(failures: list[tuple[asyncio.Future[None], BaseException]]) -> None:
    for future, exc in failures:
        if not future.done():
            future.set_exception(exc)
