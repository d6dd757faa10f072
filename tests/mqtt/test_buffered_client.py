"""The paho client reads its socket in large chunks; no broker needed."""

from __future__ import annotations

import socket
import struct

import pytest
from paho.mqtt.enums import CallbackAPIVersion

from binders.mqtt.buffered_client import _READ_CHUNK, BufferedClient


class _Socket:
    """A non-blocking socket stand-in handing out prepared chunks."""

    def __init__(self, *chunks: bytes) -> None:
        self.chunks = list(chunks)
        self.asked: list[int] = []

    def recv(self, size: int) -> bytes:
        self.asked.append(size)
        if not self.chunks:
            raise BlockingIOError
        return self.chunks.pop(0)

    def close(self) -> None:
        """paho closes its socket when the client is collected."""


def test_small_reads_are_served_from_one_large_recv() -> None:
    client = BufferedClient(CallbackAPIVersion.VERSION2, client_id="eb-buffer-test")
    sock = _Socket(b"abcdefgh", b"ij")
    client._sock = sock  # type: ignore[assignment]
    assert client._sock_recv(1) == b"a"  # paho: the fixed header byte
    assert client.buffered()
    assert client._sock_recv(2) == b"bc"
    assert client._sock_recv(10) == b"defgh"  # at most what is buffered
    assert not client.buffered()
    assert client._sock_recv(5) == b"ij"  # fits: returned as read
    with pytest.raises(BlockingIOError):
        client._sock_recv(1)
    assert sock.asked == [_READ_CHUNK] * 3


def test_end_of_stream_passes_through_and_a_dropped_buffer_is_gone() -> None:
    client = BufferedClient(CallbackAPIVersion.VERSION2, client_id="eb-buffer-test")
    client._sock = _Socket(b"xyz", b"")  # type: ignore[assignment]
    assert client._sock_recv(1) == b"x"
    client.drop_buffer()  # the socket it came from was closed
    assert not client.buffered()
    assert client._sock_recv(1) == b""  # paho reads this as the connection closing


def test_bytes_of_a_replaced_socket_are_never_served() -> None:
    client = BufferedClient(CallbackAPIVersion.VERSION2, client_id="eb-buffer-test")
    client._sock = _Socket(b"old bytes")  # type: ignore[assignment]
    assert client._sock_recv(1) == b"o"
    client._sock = _Socket(b"new")  # type: ignore[assignment]  # paho reconnected
    assert not client.buffered()
    assert client._sock_recv(3) == b"new"


def test_the_error_that_ended_a_socket_is_kept_until_a_new_socket() -> None:
    """paho reports a reset socket as "connection lost"; the client keeps the error
    (a real TCP connection, reset by its peer with SO_LINGER 0)."""
    client = BufferedClient(CallbackAPIVersion.VERSION2, client_id="eb-buffer-test")
    with socket.create_server(("127.0.0.1", 0)) as listener:
        near = socket.create_connection(listener.getsockname())
        far, _ = listener.accept()
    with near:
        far.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        far.close()  # sends RST
        client._sock = near  # type: ignore[assignment]
        with pytest.raises(ConnectionResetError):
            client._sock_recv(1)  # blocking socket: returns once the RST arrived
        assert isinstance(client.socket_error, ConnectionResetError)
        with pytest.raises(OSError):
            client._sock_send(b"x")  # later errors do not replace the first
        assert isinstance(client.socket_error, ConnectionResetError)
        client.new_socket()
        assert client.socket_error is None


def test_a_send_to_a_peer_that_is_gone_waits_for_the_reader_to_read_to_the_end() -> None:
    """The peer sent bytes and reset the connection: the send error is kept and paho is
    told "not now" (it would close the socket, discarding the unread bytes), every
    later send too; the bytes are still read, then the end shows."""
    client = BufferedClient(CallbackAPIVersion.VERSION2, client_id="eb-buffer-test")
    with socket.create_server(("127.0.0.1", 0)) as listener:
        near = socket.create_connection(listener.getsockname())
        far, _ = listener.accept()
    with near:
        far.sendall(b"PUBLISH")
        far.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        far.close()  # sends RST after its last bytes
        client._sock = near  # type: ignore[assignment]
        for _ in range(100):  # the first send may go out before the RST is seen
            try:
                client._sock_send(b"PUBACK")
            except BlockingIOError:
                break
        assert client.send_broken
        assert isinstance(client.socket_error, (ConnectionResetError, BrokenPipeError))
        with pytest.raises(BlockingIOError):
            client._sock_send(b"PUBACK")  # nothing more is written to it
        assert client._sock_recv(7) == b"PUBLISH"  # what it sent before is read
        try:  # the end: an end of stream, or the reset if the send did not report it
            end = client._sock_recv(1)
        except ConnectionResetError:
            end = b""
        assert end == b""
        client.new_socket()
        assert not client.send_broken and client.socket_error is None
