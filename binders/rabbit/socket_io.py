"""Fewer system calls on py-amqp's plain TCP transport, for :class:`~binders.rabbit.link.Link`.

Every system call gives up the GIL, and taking it back costs when the event loop and
handler threads are busy.  This module reads and writes through py-amqp's transport in
bulk.  It relies on py-amqp internals (``_quick_recv``, ``_read_buffer``, ``_write``,
checked by :meth:`SocketIO.install`); where they differ, or with TLS, the link keeps
py-amqp's own I/O.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["SocketIO"]

#: Bytes one non-blocking read takes from the socket at most.
_READ_CHUNK = 65_536
#: Buffered publishes and acks are written once this many bytes are waiting.
_WRITE_CHUNK = 262_144


class SocketIO:
    """Fewer system calls on py-amqp's plain TCP transport (TLS keeps py-amqp's own I/O).

    py-amqp reads a frame with three exact-size ``recv`` calls and, for each
    ``drain_events(timeout=0)``, switches the socket to non-blocking and back: a dozen
    system calls per delivered message, each of which gives up the GIL.  Here one
    non-blocking ``recv`` (:meth:`fill`) takes whatever the socket has, and py-amqp's
    own reads are served from that, in order, through the transport's ``_quick_recv``
    hook (so a synchronous call that waits for a reply inside py-amqp, e.g. re-opening
    a channel, reads the same byte stream, never around it).  :meth:`frame_ready` tells
    whether a whole frame is buffered, so ``read_frame`` never blocks.

    Writes: :meth:`batched` collects the frames of many publishes or acks and sends
    them with one ``sendall``.  Collected frames always go out before py-amqp reads
    from the socket, so a request whose reply py-amqp waits for is never held back.
    """

    __slots__ = ("_data", "_pos", "_recv", "_unsent", "transport")

    def __init__(self, transport: Any) -> None:
        self.transport = transport
        self._recv = transport.sock.recv
        self._data = b""
        self._pos = 0
        self._unsent: Callable[[], None] | None = None  # sends a batch's frames
        transport._quick_recv = self.recv

    @classmethod
    def install(cls, transport: Any) -> SocketIO | None:
        """Take over ``transport``'s reads, if it is py-amqp's plain TCP transport."""
        from amqp.transport import TCPTransport

        if (
            not isinstance(transport, TCPTransport)
            or not hasattr(transport, "_quick_recv")
            or not isinstance(getattr(transport, "_read_buffer", None), bytes | bytearray)
            or "_write" not in vars(transport)
        ):
            return None
        return cls(transport)

    def recv(self, size: int) -> bytes:
        """py-amqp's ``recv(size)``: buffered bytes first, else one read of the socket."""
        data, pos = self._data, self._pos
        if pos < len(data):
            end = pos + size
            self._pos = min(end, len(data))
            return data[pos:end]
        if self._unsent is not None:
            # py-amqp waits for a reply inside a batch (e.g. it re-opens a channel the
            # broker closed): what it wrote must go out first, or the wait never ends.
            self._unsent()
        chunk: bytes = self._recv(max(size, _READ_CHUNK))  # blocking, or raising, as py-amqp's
        if len(chunk) > size:
            self._data, self._pos = chunk, size
            return chunk[:size]
        return chunk

    def fill(self) -> None:
        """Append what the socket has now (one non-blocking ``recv``)."""
        try:
            chunk = self._recv(_READ_CHUNK, socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return
        if not chunk:
            raise ConnectionError("the broker closed the connection")
        self._data = self._data[self._pos :] + chunk
        self._pos = 0

    def frame_ready(self) -> bool:
        """A whole frame is buffered (py-amqp's partial read included)."""
        held = self.transport._read_buffer
        data, pos = self._data, self._pos
        available = len(held) + len(data) - pos
        if available < 8:
            return False
        head = data[pos : pos + 7] if not held else (bytes(held) + data[pos : pos + 7])[:7]
        return available >= int.from_bytes(head[3:7], "big") + 8

    @contextlib.contextmanager
    def batched(self) -> Iterator[None]:
        """Collect writes; send them at the end (or every ``_WRITE_CHUNK`` bytes)."""
        transport = self.transport
        write = transport._write
        chunks: list[bytes] = []
        size = 0

        def flush() -> None:
            nonlocal size
            if chunks:
                data = b"".join(chunks)
                chunks.clear()
                size = 0
                write(data)

        def collect(data: Any) -> None:
            nonlocal size
            chunks.append(bytes(data))  # py-amqp reuses its frame buffer
            size += len(data)
            if size >= _WRITE_CHUNK:
                flush()

        transport._write = collect
        self._unsent = flush
        try:
            yield
        finally:
            # What py-amqp considers sent goes out even when the batch ends in an
            # error (a rejected ack must not be lost while later acks go out).
            transport._write = write
            self._unsent = None
            flush()
