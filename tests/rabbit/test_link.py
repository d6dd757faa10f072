"""The I/O thread's confirm and ack bookkeeping and its buffered socket I/O, driven
directly (no broker needed)."""

from __future__ import annotations

import asyncio
import os
import random
import socket
import struct
import threading
from collections.abc import Iterator

import pytest

from binders.rabbit.link import ConsumerHandle, Link, Publish, PublishFailed
from binders.rabbit.socket_io import SocketIO

_links: list[Link] = []


@pytest.fixture(autouse=True)
def _close_pipes() -> Iterator[None]:
    yield
    for link in _links:
        os.close(link._wake_r)
        os.close(link._wake_w)
    _links.clear()


def _link_with_unconfirmed(loop: asyncio.AbstractEventLoop, count: int) -> tuple[Link, list]:
    link = Link("unit", lambda: None, loop)
    _links.append(link)
    futures = []
    for tag in range(1, count + 1):
        future = loop.create_future()
        pub = Publish("x", "k", object(), future, tag=tag)
        link._unconfirmed[tag] = pub
        link._confirm_order.append(pub)
        futures.append(future)
    return link, futures


async def test_single_acks_settle_and_do_not_accumulate() -> None:
    loop = asyncio.get_running_loop()
    link, futures = _link_with_unconfirmed(loop, 5)
    for tag in (2, 1, 3, 5, 4):  # out of order, never `multiple`
        link._on_confirm(tag, False)
    assert set(link._done) == set(futures)
    assert not link._unconfirmed
    assert not link._confirm_order


async def test_multiple_ack_settles_everything_up_to_the_tag() -> None:
    loop = asyncio.get_running_loop()
    link, futures = _link_with_unconfirmed(loop, 6)
    link._on_confirm(4, True)
    assert [f for f in link._done] == futures[:4]
    assert sorted(link._unconfirmed) == [5, 6]


async def test_nack_fails_the_publish() -> None:
    loop = asyncio.get_running_loop()
    link, futures = _link_with_unconfirmed(loop, 3)
    link._on_reject(2, True)
    assert [f for f, _ in link._failed] == futures[:2]
    assert all(isinstance(exc, PublishFailed) for _, exc in link._failed)
    assert list(link._unconfirmed) == [3]


# -- ack coalescing ---------------------------------------------------------------------


class _BrokerChannel:
    """RabbitMQ's view of one consumer channel: unacked delivery tags, and the rules of
    basic.ack/basic.reject (an unknown tag closes the channel: here, an assertion)."""

    is_open = True

    def __init__(self, delivered: int) -> None:
        self.unacked = list(range(1, delivered + 1))
        self.acked: set[int] = set()
        self.requeued: set[int] = set()
        self.frames = 0

    def basic_ack(self, tag: int, multiple: bool = False) -> None:
        self.frames += 1
        assert tag in self.unacked, f"PRECONDITION_FAILED - unknown delivery tag {tag}"
        taken = [t for t in self.unacked if t <= tag] if multiple else [tag]
        self.acked.update(taken)
        self.unacked = [t for t in self.unacked if t not in taken]

    def basic_reject(self, tag: int, requeue: bool) -> None:
        self.frames += 1
        assert tag in self.unacked, f"PRECONDITION_FAILED - unknown delivery tag {tag}"
        self.requeued.add(tag)
        self.unacked.remove(tag)


def _handle(channel: _BrokerChannel) -> ConsumerHandle:
    return ConsumerHandle("q", 10, [], lambda batch, epoch: None, channel=channel, epoch=1)


def _settle_randomly(seed: int) -> None:
    rng = random.Random(seed)
    count = rng.randint(1, 120)
    channel = _BrokerChannel(count)
    handle = _handle(channel)
    verdicts = {tag: rng.random() > 0.1 for tag in range(1, count + 1)}
    order = list(verdicts)
    if seed % 3:  # mostly in order, as lanes settle: a few swaps
        for _ in range(count // 10):
            i, j = rng.randrange(count), rng.randrange(count)
            order[i], order[j] = order[j], order[i]
    else:
        rng.shuffle(order)
    settled: set[int] = set()
    while order:
        cut = rng.randint(1, max(1, len(order) // 3))
        batch, order = order[:cut], order[cut:]
        Link._settle_channel(handle, [(tag, verdicts[tag]) for tag in batch])
        settled.update(batch)
        # nothing the engine has not settled yet was touched
        assert channel.acked | channel.requeued == settled
    assert channel.acked == {t for t, ok in verdicts.items() if ok}
    assert channel.requeued == {t for t, ok in verdicts.items() if not ok}
    assert not channel.unacked


def test_coalesced_acks_settle_exactly_what_was_settled() -> None:
    """Random settlement orders and batch cuts: the broker ends with exactly the acked
    tags acked and the rejected ones requeued, never an unknown tag, never a tag acked
    before the engine settled it."""
    for seed in range(500):
        try:
            _settle_randomly(seed)
        except AssertionError as exc:
            raise AssertionError(f"seed {seed}: {exc}") from exc


async def test_in_order_acks_become_one_multiple_ack() -> None:
    channel = _BrokerChannel(100)
    handle = _handle(channel)
    Link._settle_channel(handle, [(tag, True) for tag in range(1, 51)])
    assert channel.frames == 1
    Link._settle_channel(handle, [(tag, True) for tag in range(51, 101)])
    assert channel.frames == 2
    assert not channel.unacked


async def test_a_held_delivery_stops_coalescing_past_it_only() -> None:
    channel = _BrokerChannel(10)
    handle = _handle(channel)
    Link._settle_channel(handle, [(tag, True) for tag in (1, 2, 4, 5)])  # 3 is held
    assert channel.unacked == [3, 6, 7, 8, 9, 10]
    assert channel.frames == 3  # 1-2 at once, then 4 and 5 alone
    Link._settle_channel(handle, [(3, True), (6, True), (7, True)])
    assert channel.frames == 4 and channel.unacked == [8, 9, 10]


async def test_acks_are_coalesced_only_between_two_commands() -> None:
    """A command (closing a channel) queued after some acks runs after them, and acks
    queued after it are not moved before it."""
    loop = asyncio.get_running_loop()
    link = Link("unit", lambda: None, loop)
    _links.append(link)
    channel = _BrokerChannel(4)
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
