"""The event loop driving a paho client's socket (:class:`PahoLoop`), with a stand-in
client over a socket pair: no broker, no MQTT."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable, Iterator

import pytest

from binder.testing import wait_until
from binders.mqtt.paho_loop import PahoLoop


class _Client:
    """What :class:`PahoLoop` uses of paho's client (a ``BufferedClient``): the socket,
    ``loop_read``/``loop_write``/``loop_misc`` and the socket callbacks."""

    on_socket_open: Callable[..., None]
    on_socket_close: Callable[..., None]
    on_socket_register_write: Callable[..., None]
    on_socket_unregister_write: Callable[..., None]

    def __init__(self) -> None:
        self.sock: socket.socket | None = None
        self.outgoing = b""
        self.received = b""
        self.held = b""  # read from the socket, not handled yet (the read buffer)
        self.per_read = 1 << 20  # bytes handled per loop_read
        self.reads = self.writes = self.miscs = 0
        self.send_broken = False  # a send found the peer gone (BufferedClient)

    # paho's side: what happens while it connects, publishes and closes
    def open(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self.sock = sock
        self.on_socket_open(self, None, sock)

    def close(self) -> None:
        sock, self.sock = self.sock, None
        assert sock is not None
        self.on_socket_close(self, None, sock)
        sock.close()

    def queue(self, data: bytes) -> None:
        self.outgoing += data
        self.on_socket_register_write(self, None, self.sock)

    # the client API PahoLoop calls
    def socket(self) -> socket.socket | None:
        return self.sock

    def loop_read(self) -> None:
        self.reads += 1
        assert self.sock is not None
        if not self.held:
            try:
                self.held = self.sock.recv(1 << 20)
            except BlockingIOError:
                return
            if not self.held:  # the end of the stream: paho closes the socket
                self.close()
                return
        self.received += self.held[: self.per_read]
        self.held = self.held[self.per_read :]

    def loop_write(self) -> None:
        self.writes += 1
        assert self.sock is not None
        try:
            sent = 0 if self.send_broken else self.sock.send(self.outgoing)
        except BlockingIOError:
            sent = 0
        except (BrokenPipeError, ConnectionResetError):
            sent, self.send_broken = 0, True  # as BufferedClient: "not now", kept
        self.outgoing = self.outgoing[sent:]
        if not self.outgoing:
            self.on_socket_unregister_write(self, None, self.sock)

    def want_write(self) -> bool:
        return bool(self.outgoing)

    def loop_misc(self) -> None:
        self.miscs += 1

    def buffered(self) -> bool:
        return bool(self.held)

    def drop_buffer(self) -> None:
        self.held = b""

    def new_socket(self) -> None:
        self.drop_buffer()
        self.send_broken = False


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    ours, peer = socket.socketpair()
    with ours, peer:
        yield ours, peer


async def _polled() -> None:
    """Return once the event loop polled its sockets after this call and ran the
    callbacks of every socket that poll found ready.

    A socket readable now is reported by that poll along with ours, and the reader
    callbacks of one poll all run before the task waiting here resumes.
    """
    loop = asyncio.get_running_loop()
    mine, other = socket.socketpair()
    with mine, other:
        polled = loop.create_future()
        loop.add_reader(mine, lambda: polled.done() or polled.set_result(None))
        other.send(b"!")
        try:
            await asyncio.wait_for(polled, 5.0)
        finally:
            loop.remove_reader(mine)


def _driven(keepalive: float = 60.0) -> tuple[_Client, PahoLoop]:
    client = _Client()
    return client, PahoLoop(client, keepalive=keepalive)  # type: ignore[arg-type]


async def test_the_socket_is_read_from_the_event_loop_once_paho_opens_it(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, peer = pair
    client, driver = _driven()
    client.open(ours)
    assert driver.attached
    peer.sendall(b"CONNACK")
    await wait_until(lambda: client.received == b"CONNACK", what="the bytes read")
    client.close()
    assert not driver.attached
    await driver.wait_closed(5.0)  # returns at once: the socket is closed


async def test_bytes_already_read_are_handled_without_waiting_for_the_socket(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, peer = pair
    client, _ = _driven()
    client.per_read = 2  # a packet at a time from one recv
    client.open(ours)
    peer.sendall(b"aabbcc")
    await wait_until(lambda: client.received == b"aabbcc", what="every buffered packet handled")


async def test_packets_queued_in_one_loop_iteration_go_out_with_one_write(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, peer = pair
    client, driver = _driven()
    client.open(ours)
    for n in range(5):
        client.queue(b"PUBLISH%d;" % n)
    assert client.writes == 0  # at the end of this iteration, not per packet
    await wait_until(lambda: not client.outgoing, what="the packets written")
    assert client.writes == 1
    assert peer.recv(100) == b"PUBLISH0;PUBLISH1;PUBLISH2;PUBLISH3;PUBLISH4;"
    assert not driver._writing  # no writer registered: the socket took everything


async def test_a_full_socket_gets_a_writer_until_it_took_everything(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, peer = pair
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    client, driver = _driven()
    client.open(ours)
    data = bytes(range(256)) * 8192  # 2 MiB: more than the socket buffers hold
    client.queue(data)
    await wait_until(lambda: driver._writing, what="a writer registered for a full socket")
    received = bytearray()
    peer.setblocking(False)
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(10.0):
        while len(received) < len(data):
            received += await loop.sock_recv(peer, 1 << 16)
    assert bytes(received) == data
    await wait_until(lambda: not driver._writing, what="the writer removed once drained")


async def test_paused_reading_leaves_bytes_in_the_socket_until_resumed(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, peer = pair
    client, driver = _driven()
    client.open(ours)
    driver.pause_reading()
    peer.sendall(b"PUBLISH")
    await _polled()  # a reader still registered would have read by now
    assert client.received == b"" and client.reads == 0
    driver.resume_reading()
    await wait_until(lambda: client.received == b"PUBLISH", what="read after resuming")


async def test_a_broken_send_stops_writing_and_reads_to_the_end_even_while_paused(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    """The broker sent a PUBLISH and went away; sending the PUBACK fails: the loop
    writes no more and reads what is left, although reading is paused, up to the end
    of the stream (where paho closes the socket and reports the loss)."""
    ours, peer = pair
    client, driver = _driven()
    client.open(ours)
    driver.pause_reading()
    peer.sendall(b"PUBLISH")
    peer.close()
    client.queue(b"PUBACK")
    await wait_until(lambda: client.send_broken, what="the send failing")
    await wait_until(lambda: not driver.attached, what="read to the end, then closed")
    assert client.received == b"PUBLISH"
    assert client.outgoing == b"PUBACK" and client.writes == 1  # tried once, no writer spin
    assert not driver._writing


async def test_resuming_handles_packets_read_before_the_pause(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, peer = pair
    client, driver = _driven()
    client.per_read = 1
    client.open(ours)
    driver.pause_reading()
    peer.sendall(b"xyz")
    await _polled()
    assert client.reads == 0
    client.loop_read()  # as paho does when a packet handler paused reading midway
    assert client.buffered()
    driver.resume_reading()
    await wait_until(lambda: client.received == b"xyz", what="the buffered bytes handled")


async def test_keepalive_is_checked_on_a_timer_while_the_socket_is_attached(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, _ = pair
    client, driver = _driven(keepalive=0.08)
    assert driver.misc_interval == 0.02  # a quarter of a short keepalive
    client.open(ours)
    await wait_until(lambda: client.miscs >= 3, what="loop_misc called repeatedly")
    client.close()
    calls = client.miscs
    # A timer armed before the close is due before one armed now for a longer delay,
    # and timers run in the order they are due: once this one fired, that one has too.
    later = asyncio.Event()
    asyncio.get_running_loop().call_later(2 * driver.misc_interval, later.set)
    await asyncio.wait_for(later.wait(), 5.0)
    assert client.miscs == calls


async def test_socket_callbacks_from_another_thread_run_on_the_event_loop(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, peer = pair
    client, driver = _driven()
    on_loop = threading.get_ident()
    seen: list[int] = []
    opener = threading.Thread(target=client.open, args=(ours,))  # a connect in to_thread
    opener.start()
    opener.join()
    driver.call_soon(lambda: seen.append(threading.get_ident()))  # on the loop: at once
    threading.Thread(
        target=driver.call_soon, args=(lambda: seen.append(threading.get_ident()),)
    ).start()
    await wait_until(lambda: driver.attached and len(seen) == 2, what="attached on the loop")
    assert seen == [on_loop, on_loop]
    peer.sendall(b"x")
    await wait_until(lambda: client.received == b"x", what="read after attaching")


async def test_an_abandoned_connect_never_attaches_its_socket(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, _ = pair
    client, driver = _driven()
    driver.abandon()
    client.open(ours)
    assert not driver.attached
    assert ours.fileno() == -1  # closed


async def test_dropping_the_socket_detaches_and_closes_it(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, _ = pair
    client, driver = _driven()
    client.open(ours)
    driver.drop_socket()
    assert not driver.attached and ours.fileno() == -1


async def test_waiting_for_the_close_gives_up_after_the_timeout(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, _ = pair
    client, driver = _driven()
    client.open(ours)
    loop = asyncio.get_running_loop()
    start = loop.time()
    await driver.wait_closed(0.05)
    assert loop.time() - start >= 0.04 and driver.attached
