"""Publisher-confirm bookkeeping for one AMQP connection's publishing channel.

:class:`ConfirmTracker` is the part of :class:`~binders.rabbit.link.Link` that decides
which publishes are done and which failed; the link's I/O thread feeds it what happens
on the wire (a publish went out, ``basic.ack``/``basic.nack`` arrived, a deadline
passed, the channel or the connection was lost) and hands the futures it collects back
to the event loop.  It has no socket, no thread and no event loop of its own (futures
are only collected, never touched), so it is tested without a broker.

How confirms work: the publishing channel is in confirm mode (``confirm.select``), so
RabbitMQ numbers the publishes of the channel 1, 2, 3... and answers each with
``basic.ack`` (taken) or ``basic.nack`` (refused), often with ``multiple``: every
publish up to that number.  Every publish gets the channel's next number when it is
sent, including those whose binding does not wait for confirms; those that wait stay
in the "unconfirmed" table until their answer, their deadline or the loss of their
channel.  Many are in flight at once (pipelined), instead of one wait per publish.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from binder.errors import BinderError

if TYPE_CHECKING:
    import asyncio

__all__ = ["ConfirmTracker", "Publish", "PublishFailed"]


class PublishFailed(BinderError):
    """A publish was rejected (nack), lost with its channel, or not confirmed in time."""


@dataclass(slots=True, eq=False)
class Publish:
    """One publish travelling from the event loop to the I/O thread and back."""

    exchange: str
    routing_key: str
    message: Any  # amqp.Message
    future: asyncio.Future[None]
    confirm: bool = True
    deadline: float = 0.0
    """When it fails unless confirmed (``time.monotonic()`` seconds)."""
    tag: int = 0
    """Its number on the publishing channel once sent (confirms only)."""
    rejections: int = 0
    """How often the broker rejected it (``basic.nack``)."""
    expired: bool = False
    """Set by the I/O thread: reported failed, so never sent."""


class ConfirmTracker:
    """Which publishes wait for a confirm, and which futures are done or failed.

    The futures settled so far collect in :attr:`done` and :attr:`failed` (in the order
    they were settled) until the I/O thread takes them with :meth:`take_done` and
    :meth:`take_failed` and resolves them on the event loop.
    """

    __slots__ = ("_order", "_unconfirmed", "_within", "done", "failed", "next_tag")

    def __init__(self, timeout: float | None = None) -> None:
        #: The publish timeout, named in the errors of expired publishes.
        self._within = "" if timeout is None else f" within publish_timeout ({timeout:g} s)"
        self.next_tag = 1
        """The number the channel gives the next publish sent."""
        self._unconfirmed: dict[int, Publish] = {}
        # The unconfirmed publishes in tag order (with some already settled, dropped
        # lazily), so a `multiple` ack takes a run from the front instead of a scan.
        self._order: deque[Publish] = deque()
        self.done: list[asyncio.Future[None]] = []
        """Futures of publishes taken by the broker (or written, without confirms)."""
        self.failed: list[tuple[asyncio.Future[None], BaseException]] = []
        """Futures of publishes that failed, each with its error."""

    @property
    def pending(self) -> int:
        """How many publishes wait for their confirm."""
        return len(self._unconfirmed)

    def channel_opened(self) -> None:
        """A new publishing channel (in confirm mode) numbers its publishes from 1."""
        self.next_tag = 1

    def sent(self, pub: Publish) -> None:
        """``pub`` went out on the channel: it takes the channel's next number and, if
        it waits for a confirm, waits in the unconfirmed table."""
        if pub.confirm:
            pub.tag = self.next_tag
            self._unconfirmed[pub.tag] = pub
            self._order.append(pub)
        self.next_tag += 1

    def written(self, pubs: Iterable[Publish]) -> None:
        """Publishes sent without confirms are done once written to the socket."""
        self.done.extend(pub.future for pub in pubs)

    def fail(self, future: asyncio.Future[None], error: BaseException) -> None:
        """Report ``future`` failed with ``error``."""
        self.failed.append((future, error))

    def confirm(self, tag: int, multiple: bool) -> None:
        """``basic.ack``: the publish ``tag`` (with ``multiple``, every one up to it) is
        taken.  A tag nobody waits for (already expired, say) is ignored."""
        unconfirmed = self._unconfirmed
        done = self.done
        order = self._order
        if multiple:
            while order and order[0].tag <= tag:
                pub = order.popleft()
                if unconfirmed.pop(pub.tag, None) is not None:
                    done.append(pub.future)
        else:
            found = unconfirmed.pop(tag, None)
            if found is not None:
                done.append(found.future)
            # Drop settled publishes from the front, or single acks would let the
            # ordering queue (and the messages it holds) grow without bound.
            while order and order[0].tag not in unconfirmed:
                order.popleft()

    def reject(
        self, tag: int, multiple: bool, retry: Callable[[Publish], bool] | None = None
    ) -> None:
        """``basic.nack``: the publish ``tag`` (with ``multiple``, every one up to it)
        was refused; it fails with :class:`PublishFailed` unless ``retry(pub)`` takes
        it (to send it again)."""
        unconfirmed = self._unconfirmed
        tags = [t for t in unconfirmed if t <= tag] if multiple else [tag]
        for t in tags:
            pub = unconfirmed.pop(t, None)
            if pub is not None and not (retry is not None and retry(pub)):
                self.failed.append((pub.future, PublishFailed("the broker rejected the message")))

    def expire(self, now: float, queued: Iterable[Publish] = ()) -> int:
        """Fail the publishes whose deadline is before ``now``: unconfirmed ones, then
        ``queued`` ones not sent yet (those are marked ``expired``, so they are never
        sent).  Return how many unconfirmed publishes expired."""
        unconfirmed = self._unconfirmed
        expired = [p for p in unconfirmed.values() if p.deadline < now]
        for pub in expired:
            del unconfirmed[pub.tag]
            error = PublishFailed(
                f"not confirmed by the broker{self._within or ' in time'}; it may still "
                "have been routed"
            )
            self.failed.append((pub.future, error))
        for pub in queued:
            if pub.deadline < now and not pub.expired:
                pub.expired = True
                error = PublishFailed(
                    f"not sent{self._within or ' in time'}: the connection to the broker "
                    "was down; it was not published"
                )
                self.failed.append((pub.future, error))
        return len(expired)

    def fail_unconfirmed(self, error: Callable[[], BaseException]) -> None:
        """Fail every unconfirmed publish with an error made by ``error()`` and forget
        them (their channel is gone, and none of them may be reported as sent)."""
        for pub in self._unconfirmed.values():
            self.failed.append((pub.future, error()))
        self._unconfirmed.clear()
        self._order.clear()

    def take_unconfirmed(self) -> list[Publish]:
        """Forget the unconfirmed publishes and return them in the order they were
        sent, to be sent again on a new channel (after a reconnect)."""
        pending = sorted(self._unconfirmed.values(), key=lambda p: p.tag)
        self._unconfirmed.clear()
        self._order.clear()
        return pending

    def take_done(self) -> list[asyncio.Future[None]]:
        """The futures done so far (an empty list when there are none); forget them."""
        done = self.done
        if done:
            self.done = []
        return done

    def take_failed(self) -> list[tuple[asyncio.Future[None], BaseException]]:
        """The failed futures so far with their errors (an empty list when there are
        none); forget them."""
        failed = self.failed
        if failed:
            self.failed = []
        return failed
