"""The I/O thread's command and publish queues and its buffered socket I/O, driven
directly (no broker needed); the confirm and ack bookkeeping it uses are tested in
``test_confirms.py`` and ``test_acks.py``."""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import threading
import time
from collections.abc import Iterator

import pytest

from binders.rabbit.confirms import Publish, PublishFailed
from binders.rabbit.link import ConsumerHandle, Link, LinkError
from binders.rabbit.socket_io import SocketIO
from tests.rabbit.fakes import BrokerChannel

_links: list[Link] = []


@pytest.fixture(autouse=True)
def _close_pipes() -> Iterator[None]:
    yield
    for link in _links:
        os.close(link._wake_r)
        os.close(link._wake_w)
    _links.clear()


# -- acks and commands ------------------------------------------------------------------


def _handle(channel: BrokerChannel) -> ConsumerHandle:
    return ConsumerHandle("q", 10, [], lambda batch, epoch: None, channel=channel, epoch=1)


async def test_acks_are_coalesced_only_between_two_commands() -> None:
    """A command (closing a channel) queued after some acks runs after them, and acks
    queued after it are not moved before it."""
    loop = asyncio.get_running_loop()
    link = Link("unit", lambda: None, loop)
    _links.append(link)
    channel = BrokerChannel(4)
    handle = _handle(channel)
    events: list[str] = []
    link.ack(handle, 1, 1, True)
    link.ack(handle, 1, 2, True)
    link._commands.append(lambda: events.append(f"command after {sorted(channel.acked)}"))
    link.ack(handle, 1, 3, True)
    link.ack(handle, 0, 4, True)  # an ack of an earlier channel: dropped
    link._run_commands()
    assert events == ["command after [1, 2]"]
    assert channel.acked == {1, 2, 3}
    assert channel.unacked == [4]


# -- publishes around reconnects and shutdown -------------------------------------------


def _publish(loop: asyncio.AbstractEventLoop, name: str) -> Publish:
    return Publish("x", name, object(), loop.create_future())


async def test_a_reconnect_sends_the_unconfirmed_publishes_first_in_their_order() -> None:
    loop = asyncio.get_running_loop()
    link = Link("unit", lambda: None, loop)
    _links.append(link)
    sent = [_publish(loop, name) for name in "abc"]
    for pub in sent:
        link._publishing.confirms.sent(pub)
    link._publishing.confirms.confirm(2, False)
    queued = _publish(loop, "d")
    link.publish(queued)
    link._publishing.requeue_unconfirmed()
    assert list(link._publishing.outbox) == [sent[0], sent[2], queued]
    assert link._publishing.confirms.pending == 0


async def test_publishes_not_sent_in_time_fail_and_are_never_sent() -> None:
    loop = asyncio.get_running_loop()
    link = Link("unit", lambda: None, loop, publish_timeout=0.0)
    _links.append(link)
    pub = _publish(loop, "late")
    link.publish(pub)
    while time.monotonic() <= pub.deadline:
        await asyncio.sleep(0.001)  # until the clock passes the deadline
    link._expire_publishes()
    with pytest.raises(PublishFailed, match="not sent within publish_timeout"):
        await asyncio.wait_for(pub.future, 5.0)
    assert pub.expired  # _send_queued skips it


async def test_shutting_down_fails_unconfirmed_then_queued_publishes() -> None:
    loop = asyncio.get_running_loop()
    link = Link("unit", lambda: None, loop)
    _links.append(link)
    unconfirmed, queued = _publish(loop, "sent"), _publish(loop, "queued")
    link._publishing.confirms.sent(unconfirmed)
    link.publish(queued)
    link._shutdown()
    for pub in (unconfirmed, queued):
        with pytest.raises(LinkError, match=r"^the RabbitMQ connection unit is closed$"):
            await asyncio.wait_for(pub.future, 5.0)
    assert not link._publishing.outbox and link._publishing.confirms.pending == 0


# -- buffered socket I/O ----------------------------------------------------------------


class _Transport:
    """What ``SocketIO`` uses of py-amqp's TCP transport."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._read_buffer = b""
        self._write = sock.sendall
        self._quick_recv = sock.recv


def _frame(channel: int, payload: bytes) -> bytes:
    return struct.pack(">BHI", 1, channel, len(payload)) + payload + b"\xce"


def test_buffered_reads_serve_frames_in_order_and_see_partial_frames() -> None:
    ours, peer = socket.socketpair()
    with ours, peer:
        transport = _Transport(ours)
        io = SocketIO(transport)
        first, second = _frame(1, b"a" * 10), _frame(2, b"b" * 300)
        peer.sendall(first + second[:50])
        assert not io.frame_ready()
        io.fill()
        assert io.frame_ready()
        assert transport._quick_recv(7) == first[:7]  # what py-amqp's read_frame asks
        transport._read_buffer = first[:7]  # as after a read that timed out midway
        assert io.frame_ready()
        transport._read_buffer = b""
        assert transport._quick_recv(len(first) - 7) == first[7:]
        assert not io.frame_ready()  # half of the second frame
        io.fill()  # nothing more on the socket: no blocking
        peer.sendall(second[50:])
        io.fill()
        assert io.frame_ready()
        assert transport._quick_recv(len(second)) == second


def test_a_batch_sends_its_frames_before_anything_is_read_from_the_socket() -> None:
    """py-amqp may wait for a reply inside a batch (re-opening a channel the broker
    closed): the request must not stay in the batch while it waits."""
    ours, peer = socket.socketpair()
    with ours, peer:
        ours.settimeout(5.0)  # a request held back would end in a timeout, not a hang
        transport = _Transport(ours)
        io = SocketIO(transport)

        def broker() -> None:
            request = peer.recv(100)
            peer.sendall(b"reply to " + request)

        answering = threading.Thread(target=broker)
        answering.start()
        with io.batched():
            transport._write(b"open")
            assert transport._quick_recv(13) == b"reply to open"
        answering.join()


def test_a_batch_writes_once() -> None:
    ours, peer = socket.socketpair()
    with ours, peer:
        transport = _Transport(ours)
        writes: list[bytes] = []
        transport._write = writes.append
        io = SocketIO(transport)
        frame = bytearray(b"frame-1")
        with io.batched():
            for n in range(1, 4):
                frame[-1:] = str(n).encode()
                transport._write(memoryview(frame))  # py-amqp reuses its buffer
        assert writes == [b"frame-1frame-2frame-3"]
