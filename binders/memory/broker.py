"""The in-memory broker's state: topics, group queues, dead letters.

A topic fans each published message out to one queue per consumer group and one
queue per anonymous subscriber.  The members of a group compete for its queue.  An
entry carries an ordering token (its partition, else its key): while an entry with a
token is being handled, later entries with the same token wait, which keeps order per
partition key at any concurrency.  A nacked entry goes back to the head of its queue.

Everything here belongs to one :class:`MemoryBroker` instance: no module or class
level state, so two binders (or two tests) never see each other's messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass

from binder.message import Message

__all__ = ["Entry", "GroupQueue", "MemoryBroker", "Topic", "delivery_copy"]


@dataclass(slots=True)
class Entry:
    """A message waiting in a queue, with its delivery count and ordering token."""

    message: Message
    token: Hashable | None
    deliveries: int = 0


class GroupQueue:
    """The queue of one consumer group (or of one anonymous subscriber)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.entries: deque[Entry] = deque()
        self.busy_tokens: set[Hashable] = set()
        self.selective_members = 0
        """Members that take only some partitions: a wake-up must then reach them all."""
        self._waiters: deque[asyncio.Future[None]] = deque()

    def put(self, entry: Entry, *, front: bool = False) -> None:
        """Enqueue ``entry`` (at the head for a redelivery) and wake a waiting member."""
        if front:
            self.entries.appendleft(entry)
        else:
            self.entries.append(entry)
        self._wake(all_waiters=bool(self.busy_tokens) or self.selective_members > 0)

    def take(self, accepts: Callable[[Entry], bool] | None = None) -> Entry | None:
        """Remove and return the first entry a member may handle now, or None."""
        entries = self.entries
        if not entries:
            return None
        if not self.busy_tokens and accepts is None:
            entry = entries[0]
            if entry.token is None:
                return entries.popleft()
        for index, entry in enumerate(entries):
            if entry.token is not None and entry.token in self.busy_tokens:
                continue
            if accepts is not None and not accepts(entry):
                continue
            del entries[index]
            if entry.token is not None:
                self.busy_tokens.add(entry.token)
            return entry
        return None

    def release(self, entry: Entry) -> None:
        """Mark ``entry``'s token free again (after ack or nack)."""
        if entry.token is not None:
            self.busy_tokens.discard(entry.token)
            self._wake(all_waiters=True)

    async def wait(self) -> None:
        """Wait until the queue changes."""
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        finally:
            if not waiter.done():
                waiter.cancel()
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)

    def wake_all(self) -> None:
        """Wake every waiting member (used when members leave)."""
        self._wake(all_waiters=True)

    def _wake(self, *, all_waiters: bool) -> None:
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                if not all_waiters:
                    return


class Topic:
    """A destination: fans out to group queues and anonymous queues."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.groups: dict[str, GroupQueue] = {}
        self.anonymous: dict[int, GroupQueue] = {}
        self._queues: list[GroupQueue] | None = None

    @property
    def queues(self) -> list[GroupQueue]:
        """Every queue a publish fans out to (cached until a queue is added or removed)."""
        if self._queues is None:
            self._queues = [*self.groups.values(), *self.anonymous.values()]
        return self._queues

    def add_group(self, group: str, queue: GroupQueue) -> None:
        """Attach a group's queue."""
        self.groups[group] = queue
        self._queues = None

    def add_anonymous(self, anon_id: int, queue: GroupQueue) -> None:
        """Attach an anonymous subscriber's queue."""
        self.anonymous[anon_id] = queue
        self._queues = None

    def remove_anonymous(self, anon_id: int) -> None:
        """Detach an anonymous subscriber's queue."""
        self.anonymous.pop(anon_id, None)
        self._queues = None


class MemoryBroker:
    """All state of one in-memory binder."""

    def __init__(self) -> None:
        self.topics: dict[str, Topic] = {}
        self.dead_letters: dict[tuple[str, str | None], list[Message]] = {}
        self._anonymous_ids = itertools.count(1)
        self._taps: list[Callable[[str, Message], None]] = []

    def topic(self, name: str) -> Topic:
        """Return the topic called ``name``, creating it."""
        topic = self.topics.get(name)
        if topic is None:
            topic = self.topics[name] = Topic(name)
        return topic

    def group_queue(self, destination: str, group: str) -> GroupQueue:
        """Return the durable queue of ``group`` on ``destination``, creating it."""
        topic = self.topic(destination)
        queue = topic.groups.get(group)
        if queue is None:
            queue = GroupQueue(f"{destination}.{group}")
            topic.add_group(group, queue)
        return queue

    def anonymous_queue(self, destination: str) -> tuple[int, GroupQueue]:
        """Create a queue for one anonymous subscriber; return its id and the queue."""
        anon_id = next(self._anonymous_ids)
        queue = GroupQueue(f"{destination}.anonymous.{anon_id}")
        self.topic(destination).add_anonymous(anon_id, queue)
        return anon_id, queue

    def drop_anonymous(self, destination: str, anon_id: int) -> None:
        """Delete an anonymous subscriber's queue (its messages go with it)."""
        self.topic(destination).remove_anonymous(anon_id)

    def add_tap(self, tap: Callable[[str, Message], None]) -> Callable[[], None]:
        """Call ``tap(destination, message)`` for every publish; return an un-tap function."""
        self._taps.append(tap)
        return lambda: self._taps.remove(tap)

    def can_receive(self, destination: str) -> bool:
        """Whether a publish to ``destination`` reaches a queue or a tap (a test
        harness watching every destination)."""
        topic = self.topics.get(destination)
        return bool(self._taps) or (topic is not None and bool(topic.queues))

    def publish(self, destination: str, message: Message) -> None:
        """Deliver a copy of ``message`` to every queue of ``destination``."""
        if self._taps:
            for tap in self._taps:
                tap(destination, message)
        topic = self.topics.get(destination)
        if topic is None:
            return
        token: Hashable | None = message.partition if message.partition is not None else message.key
        queues = topic.queues
        if len(queues) == 1:
            queues[0].put(Entry(message, token))
            return
        for queue in queues:
            queue.put(Entry(delivery_copy(message), token))

    def store_dead_letter(self, destination: str, group: str | None, message: Message) -> None:
        """Keep a dead letter so tests and tools can inspect it."""
        self.dead_letters.setdefault((destination, group), []).append(message)


def delivery_copy(message: Message, destination: str | None = None) -> Message:
    """A fresh copy to deliver: own headers dict, first attempt, this destination.

    Written out rather than ``dataclasses.replace``, which costs several times more on
    this per-message path.
    """
    return Message(
        message.payload,
        dict(message.headers),
        message.key,
        message.content_type,
        message.message_id,
        message.timestamp,
        1,
        destination or message.destination,
        message.partition,
    )
