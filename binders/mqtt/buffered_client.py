"""paho's MQTT client reading its socket in large chunks (fewer system calls), and
reading to the end of a connection whose sending side broke.

It overrides paho's private ``_sock_recv`` and ``_sock_send``: where a paho release
renames them, the overrides are simply not called and paho reads as it always did
(and :attr:`BufferedClient.socket_error` stays ``None``).
"""

from __future__ import annotations

from typing import Any

import paho.mqtt.client as mqtt

__all__ = ["BufferedClient"]

#: Bytes read from the socket at once (paho reads packet by packet from that buffer).
_READ_CHUNK = 65536
#: Send errors of a connection the peer ended: what it sent before may still be unread.
_PEER_GONE = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError)


class BufferedClient(mqtt.Client):
    """paho's client reading its socket in large chunks.

    paho reads every packet with two or three ``recv`` calls (fixed header byte,
    remaining length, body); a consumer receiving small messages spends much of its
    time in those system calls.  This client reads up to ``_READ_CHUNK`` bytes at once
    and serves paho's small reads from that buffer; :class:`MqttConnection` keeps
    calling ``loop_read`` while :meth:`buffered` (select cannot see those bytes).
    """

    _rbuf: bytes = b""
    _rpos = 0
    _rsock: Any = None  # the socket the buffered bytes came from
    #: The error that ended the current socket (a reset, say), if reading or writing
    #: failed; paho only reports "connection lost".  Cleared by :meth:`new_socket`.
    socket_error: OSError | None = None
    _broken_sock: Any = None  # the socket whose sending side broke

    def new_socket(self) -> None:
        """A socket was attached: forget the bytes and the error of the previous one."""
        self.drop_buffer()
        self.socket_error = None
        self._broken_sock = None

    @property
    def send_broken(self) -> bool:
        """True once sending on the current socket failed because the peer is gone:
        nothing more is written to it (there is no point in waiting to write)."""
        return self._broken_sock is not None and self._broken_sock is self._sock

    def _sock_send(self, buf: bytes | bytearray) -> int:
        """Send; when the peer is gone (reset, broken pipe) say "not now" instead.

        paho closes the socket on a send error, discarding what the broker sent before
        it went away and this client has not read yet: QoS 1 messages it delivered, and
        PUBACKs (a broker killed right after writing them).  So the error is kept, paho
        is told the socket takes nothing now, and the loss is reported by the reader,
        which reads to the end of the connection first (its end of stream, or error).
        """
        if self.send_broken:
            raise BlockingIOError
        try:
            return super()._sock_send(buf)
        except BlockingIOError:
            raise
        except _PEER_GONE as exc:
            self.socket_error = self.socket_error or exc
            self._broken_sock = self._sock
            raise BlockingIOError from None
        except OSError as exc:
            self.socket_error = self.socket_error or exc
            raise

    def _sock_recv(self, bufsize: int) -> bytes:
        buf, pos = self._rbuf, self._rpos
        if pos < len(buf) and self._rsock is self._sock:
            end = pos + bufsize
            if end >= len(buf):
                self._rbuf, self._rpos = b"", 0
                return buf[pos:]
            self._rpos = end
            return buf[pos:end]
        try:
            data = super()._sock_recv(_READ_CHUNK)  # raises BlockingIOError when empty
        except BlockingIOError:
            raise
        except OSError as exc:
            self.socket_error = self.socket_error or exc
            raise
        if len(data) <= bufsize:
            self._rbuf, self._rpos = b"", 0
            return data
        self._rbuf, self._rpos, self._rsock = data, bufsize, self._sock
        return data[:bufsize]

    def buffered(self) -> bool:
        """True while bytes read from the current socket wait in the buffer."""
        return self._rpos < len(self._rbuf) and self._rsock is self._sock

    def drop_buffer(self) -> None:
        """Forget buffered bytes (the socket they came from is gone)."""
        self._rbuf, self._rpos, self._rsock = b"", 0, None
