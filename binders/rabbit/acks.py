"""Ack coalescing for one consumer channel: settle deliveries with as few frames as is safe.

:class:`AckCoalescer` is the part of :class:`~binders.rabbit.link.Link` that turns the
acks and rejects the delivery engine queued into ``basic.ack``/``basic.reject`` calls
on a channel; the link's I/O thread calls it once per channel and turn.  It has no
socket, no thread and no event loop (the channel is anything with ``is_open``,
``basic_ack`` and ``basic_reject``), so it is tested without a broker.
"""

from __future__ import annotations

import bisect
from typing import Protocol

__all__ = ["MAX_SETTLED_AHEAD", "AckChannel", "AckCoalescer"]

#: Settled delivery tags remembered above a consumer's lowest unsettled one; past this
#: (one delivery held for very long while thousands pass it) acks are no longer
#: coalesced on that channel, so the memory stays bounded.
MAX_SETTLED_AHEAD = 65_536


class AckChannel(Protocol):
    """What :class:`AckCoalescer` uses of a py-amqp channel."""

    @property
    def is_open(self) -> bool:
        """False once the channel is closed (its acks are then dropped)."""
        ...

    def basic_ack(self, delivery_tag: int, multiple: bool = False) -> object:
        """Ack ``delivery_tag`` (with ``multiple``: every unacked delivery up to it)."""
        ...

    def basic_reject(self, delivery_tag: int, requeue: bool) -> object:
        """Reject ``delivery_tag``; ``requeue``: the broker delivers it again."""
        ...


class AckCoalescer:
    """Which deliveries of one channel are settled; sends their acks coalesced.

    Make a new one for every channel: delivery tags start at 1 on each.
    """

    __slots__ = ("ahead", "coalesce", "floor")

    def __init__(self) -> None:
        self.floor = 0
        """Every delivery tag up to this one is settled (acked or rejected)."""
        self.ahead: set[int] = set()
        """Settled tags above ``floor``."""
        self.coalesce = True
        """False once too many tags were settled above ``floor``: acks go one by one."""

    def settle(self, channel: AckChannel, settled: list[tuple[int, bool]]) -> None:
        """Settle deliveries of ``channel`` (``(tag, ok)``: ack if ``ok``, else reject
        and requeue), as few ``basic.ack`` frames as is safe.

        RabbitMQ numbers the deliveries of a channel 1, 2, 3...; ``basic.ack(t,
        multiple=True)`` acks *every* unacked delivery up to ``t``, including ones not
        settled yet, so it is only sent when none is left.  :attr:`floor` is the
        highest tag with every tag up to it settled, :attr:`ahead` the settled tags
        above it.  Rejects go first; then the floor moves up through the tags settled
        so far (this batch included).  Every tag up to the new floor is then either
        settled before, rejected just now, or an ack of this batch: one multiple ack at
        the highest of those acks (unacked until now, so the broker knows the tag) acks
        exactly them.  Acks above a gap go out one by one.
        """
        if not channel.is_open:
            return
        acks: list[int] = []
        for tag, ok in settled:
            if ok:
                acks.append(tag)
            else:
                channel.basic_reject(tag, requeue=True)
        if not self.coalesce:
            for tag in acks:
                channel.basic_ack(tag)
            return
        ahead = self.ahead
        ahead.update(tag for tag, _ in settled)
        floor = self.floor
        while floor + 1 in ahead:
            floor += 1
            ahead.remove(floor)
        self.floor = floor
        if not acks:
            return
        acks.sort()
        covered = bisect.bisect_right(acks, floor)
        if covered:
            channel.basic_ack(acks[covered - 1], multiple=covered > 1)
        for tag in acks[covered:]:
            channel.basic_ack(tag)
        if len(ahead) > MAX_SETTLED_AHEAD:
            self.coalesce = False
            ahead.clear()
