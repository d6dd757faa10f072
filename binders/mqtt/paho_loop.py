"""Drive one paho-mqtt client from the asyncio event loop itself (no network thread).

paho's external-loop API: the client's socket is registered with ``loop.add_reader``
(``loop_read``, served from a 64 KiB read buffer so that a burst of small packets costs
one ``recv``, not three per packet: see :mod:`binders.mqtt.buffered_client`); bytes paho
queues are written by one ``loop_write`` per event loop iteration, and only a socket
that did not take them all gets ``loop.add_writer`` until it did; a timer calls
``loop_misc`` every second (every quarter of the keepalive if that is shorter) for
keepalive (PINGREQ, and dropping a connection whose PINGRESP is overdue).  So every
paho callback that comes from reading or writing runs on the event loop thread.

The blocking TCP/TLS connect is the caller's to run in a worker thread; socket
callbacks paho makes from that thread are moved to the event loop
(:meth:`PahoLoop.call_soon` does the same for the caller's own callbacks).  Reading can
be paused (:meth:`PahoLoop.pause_reading`): TCP then pushes back on the broker.

Nothing here knows MQTT sessions: :class:`~binders.mqtt.connection.MqttConnection`
connects, subscribes, reconnects and publishes through the client this class drives.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import threading
from collections.abc import Callable
from typing import Any

from binders.mqtt.buffered_client import BufferedClient

__all__ = ["MISC_INTERVAL", "PahoLoop"]

#: As paho's own loop: keepalive is checked about once a second (more often with a
#: keepalive of a few seconds, so that a PINGREQ never goes out late).
MISC_INTERVAL = 1.0


class PahoLoop:
    """Registers one paho client's socket with the running event loop and serves it.

    Construct it on the event loop thread; it installs itself as the client's socket
    callbacks (``on_socket_open``, ``on_socket_close``, ``on_socket_register_write``,
    ``on_socket_unregister_write``), so the socket is attached as soon as paho opens it.
    """

    def __init__(self, client: BufferedClient, *, keepalive: float) -> None:
        self.client = client
        #: Seconds between two ``loop_misc`` calls.
        self.misc_interval = min(MISC_INTERVAL, keepalive / 4)
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        # The socket as registered with the event loop (its file descriptor).
        self._sock: socket.socket | None = None
        self._fd = -1
        self._reading = False
        self._read_paused = False
        self._want_write = False
        self._writing = False
        self._flushing = False
        self._misc: asyncio.TimerHandle | None = None
        self._socket_closed = asyncio.Event()
        self._abandoned = False
        client.on_socket_open = self._on_socket_open
        client.on_socket_close = self._on_socket_close
        client.on_socket_register_write = self._on_socket_register_write
        client.on_socket_unregister_write = self._on_socket_unregister_write

    @property
    def attached(self) -> bool:
        """True while a socket is registered with the event loop."""
        return self._sock is not None

    def call_soon(self, fn: Callable[..., None], *args: Any) -> None:
        """Run ``fn(*args)`` now on the event loop thread, or soon from another thread."""
        if threading.get_ident() == self._loop_thread:
            fn(*args)
        else:
            with contextlib.suppress(RuntimeError):  # loop closed: nobody waits any more
                self._loop.call_soon_threadsafe(fn, *args)

    def abandon(self) -> None:
        """Never attach a socket again: a connect still running in its worker thread is
        given up, and the socket it opens is closed at once."""
        self._abandoned = True

    def pause_reading(self) -> None:
        """Stop reading the socket (TCP then pushes back on the broker)."""
        if not self._read_paused:
            self._read_paused = True
            self.sync()

    def resume_reading(self) -> None:
        """Read the socket again after :meth:`pause_reading`."""
        if self._read_paused:
            self._read_paused = False
            self.sync()

    async def wait_closed(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for paho to close the attached socket."""
        if self._sock is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._socket_closed.wait(), timeout)

    def drop_socket(self) -> None:
        """Close a socket a failed or abandoned connect left behind."""
        sock = self.client.socket()
        if sock is not None:
            self._detach(sock)
            with contextlib.suppress(OSError):
                sock.close()

    # -- paho's socket callbacks (any thread) ----------------------------------------

    def _on_socket_open(self, _client: Any, _userdata: Any, sock: Any) -> None:
        self.call_soon(self._attach, sock)

    def _on_socket_close(self, _client: Any, _userdata: Any, sock: Any) -> None:
        # Called just before paho closes the socket: unregister it while its fd is valid.
        if threading.get_ident() == self._loop_thread:
            self._detach(sock)
        else:
            self.call_soon(self._detach, sock)

    def _on_socket_register_write(self, _client: Any, _userdata: Any, sock: Any) -> None:
        self.call_soon(self._set_want_write, sock, True)

    def _on_socket_unregister_write(self, _client: Any, _userdata: Any, sock: Any) -> None:
        self.call_soon(self._set_want_write, sock, False)

    # -- the socket on the event loop ------------------------------------------------

    def _attach(self, sock: socket.socket) -> None:
        current: Any = self.client.socket()
        if sock is not current or sock is self._sock:
            return  # already closed again, or attached
        if self._abandoned:
            with contextlib.suppress(OSError):
                sock.close()
            return
        self._sock, self._fd = sock, sock.fileno()
        self._socket_closed.clear()
        self._reading = self._writing = False
        self.client.new_socket()  # bytes and error of a previous connection
        self.sync()
        self._misc = self._loop.call_later(self.misc_interval, self._run_misc)

    def _detach(self, sock: Any) -> None:
        if sock is not self._sock:
            return
        if self._reading:
            self._loop.remove_reader(self._fd)
        if self._writing:
            self._loop.remove_writer(self._fd)
        self._reading = self._writing = self._want_write = False
        self.client.drop_buffer()
        self._sock, self._fd = None, -1
        if self._misc is not None:
            self._misc.cancel()
            self._misc = None
        self._socket_closed.set()

    def _set_want_write(self, sock: Any, want: bool) -> None:
        if sock is self._sock or self._sock is None:
            self._want_write = want
            self.sync()

    def sync(self) -> None:
        """Register the reader the current state calls for; get pending bytes written.

        Bytes paho queued are written by one ``loop_write`` at the end of the current
        event loop iteration (every packet queued meanwhile goes out together); only
        when the socket takes less than that does the writer get registered with the
        loop, until paho has nothing left.  Registering a writer for every packet would
        cost two ``epoll_ctl`` calls per packet.
        """
        if self._sock is None:
            return
        broken = self.client.send_broken
        # A socket whose sending side broke (the broker is gone) is read to its end even
        # while paused: what the broker sent before is delivered, the loss reported now.
        read = not self._read_paused or broken
        if read != self._reading:
            if read:
                self._loop.add_reader(self._fd, self._readable)
                if self.client.buffered():
                    self._loop.call_soon(self._read_buffered, self._sock)
            else:
                self._loop.remove_reader(self._fd)
            self._reading = read
        if (self._want_write or self.client.want_write()) and not broken:
            if not self._writing and not self._flushing:
                self._flushing = True
                self._loop.call_soon(self._flush)
        elif self._writing:
            self._loop.remove_writer(self._fd)
            self._writing = False

    def _flush(self) -> None:
        self._flushing = False
        sock = self._sock
        if sock is None or self._writing:
            return
        client = self.client
        client.loop_write()
        if self._sock is sock and client.want_write() and not self._writing:
            if client.send_broken:
                self.sync()  # nothing can be written: read to the end instead
                return
            self._loop.add_writer(self._fd, self._writable)  # the socket is full
            self._writing = True

    def _writable(self) -> None:
        client = self.client
        client.loop_write()
        if self._sock is not None and self._writing and not client.want_write():
            self._want_write = False
            self._loop.remove_writer(self._fd)
            self._writing = False
        elif self._sock is not None and client.send_broken:
            self.sync()  # stop writing, read to the end

    def _readable(self) -> None:
        sock = self._sock
        client = self.client
        client.loop_read()
        # Bytes already read into the client's buffer (or, with TLS, decrypted inside
        # the SSL object) are invisible to select: read on while there are some.
        while (
            sock is not None
            and sock is self._sock
            and (not self._read_paused or client.send_broken)
            and (client.buffered() or (isinstance(sock, ssl.SSLSocket) and sock.pending()))
        ):
            client.loop_read()

    def _read_buffered(self, sock: Any) -> None:
        """Reading resumed with packets already read from the socket: handle them."""
        if sock is self._sock and self._reading and self.client.buffered():
            self._readable()

    def _run_misc(self) -> None:
        self._misc = None
        self.client.loop_misc()
        if self._sock is not None and self._misc is None:
            self._misc = self._loop.call_later(self.misc_interval, self._run_misc)
