"""Ack coalescing on one consumer channel (:class:`AckCoalescer`), driven directly
against a model of RabbitMQ's ack rules (no broker needed)."""

from __future__ import annotations

import random

import pytest

from binders.rabbit import acks
from binders.rabbit.acks import AckCoalescer
from tests.rabbit.fakes import BrokerChannel


def _settle_randomly(seed: int) -> None:
    rng = random.Random(seed)
    count = rng.randint(1, 120)
    channel = BrokerChannel(count)
    coalescer = AckCoalescer()
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
        coalescer.settle(channel, [(tag, verdicts[tag]) for tag in batch])
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


def test_in_order_acks_become_one_multiple_ack() -> None:
    channel = BrokerChannel(100)
    coalescer = AckCoalescer()
    coalescer.settle(channel, [(tag, True) for tag in range(1, 51)])
    assert channel.frames == 1
    coalescer.settle(channel, [(tag, True) for tag in range(51, 101)])
    assert channel.frames == 2
    assert not channel.unacked


def test_a_held_delivery_stops_coalescing_past_it_only() -> None:
    channel = BrokerChannel(10)
    coalescer = AckCoalescer()
    coalescer.settle(channel, [(tag, True) for tag in (1, 2, 4, 5)])  # 3 is held
    assert channel.unacked == [3, 6, 7, 8, 9, 10]
    assert channel.frames == 3  # 1-2 at once, then 4 and 5 alone
    assert (coalescer.floor, coalescer.ahead) == (2, {4, 5})
    coalescer.settle(channel, [(3, True), (6, True), (7, True)])
    assert channel.frames == 4 and channel.unacked == [8, 9, 10]
    assert (coalescer.floor, coalescer.ahead) == (7, set())


def test_rejects_go_out_alone_and_let_the_floor_pass() -> None:
    channel = BrokerChannel(4)
    coalescer = AckCoalescer()
    coalescer.settle(channel, [(1, False), (2, True), (3, False), (4, True)])
    assert channel.requeued == {1, 3} and channel.acked == {2, 4}
    assert channel.frames == 3  # two rejects, then one multiple ack for 2 and 4
    assert coalescer.floor == 4


def test_a_closed_channel_gets_nothing() -> None:
    channel = BrokerChannel(2)
    channel.is_open = False
    coalescer = AckCoalescer()
    coalescer.settle(channel, [(1, True), (2, False)])
    assert channel.frames == 0
    assert (coalescer.floor, coalescer.ahead) == (0, set())


def test_too_many_settled_past_a_held_delivery_stops_coalescing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(acks, "MAX_SETTLED_AHEAD", 3)
    channel = BrokerChannel(8)
    coalescer = AckCoalescer()
    coalescer.settle(channel, [(tag, True) for tag in (2, 3, 4, 5)])  # 1 is held
    assert not coalescer.coalesce and coalescer.ahead == set()  # the memory is bounded
    frames = channel.frames
    coalescer.settle(channel, [(1, True), (6, True), (7, True)])
    assert channel.frames == frames + 3  # one by one from now on
    coalescer.settle(channel, [(8, False)])
    assert not channel.unacked and channel.requeued == {8}
