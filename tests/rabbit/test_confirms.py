"""Publisher-confirm bookkeeping (:class:`ConfirmTracker`), driven directly: no broker,
no socket, no event loop (futures are plain objects the tracker only collects)."""

from __future__ import annotations

import random
from typing import Any

from binders.rabbit.confirms import ConfirmTracker, Publish, PublishFailed


class _Future:
    """Stands for an asyncio future: the tracker only collects futures."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<future {self.name}>"


def _publish(name: str, *, confirm: bool = True, deadline: float = 100.0) -> Publish:
    return Publish("x", "k", object(), _Future(name), confirm, deadline)  # type: ignore[arg-type]


def _sent(tracker: ConfirmTracker, count: int, **kwargs: Any) -> list[Publish]:
    pubs = [_publish(f"p{n}", **kwargs) for n in range(count)]
    for pub in pubs:
        tracker.sent(pub)
    return pubs


def _futures(pubs: list[Publish]) -> list[Any]:
    return [pub.future for pub in pubs]


def test_publishes_take_the_channels_numbers_in_order_confirmed_or_not() -> None:
    tracker = ConfirmTracker()
    first, unconfirmed, last = (_publish("a"), _publish("b", confirm=False), _publish("c"))
    for pub in (first, unconfirmed, last):
        tracker.sent(pub)
    assert (first.tag, last.tag) == (1, 3)  # the publish without confirm took number 2
    assert tracker.pending == 2
    assert tracker.next_tag == 4


def test_a_new_channel_numbers_from_one_again() -> None:
    tracker = ConfirmTracker()
    _sent(tracker, 3)
    tracker.take_unconfirmed()
    tracker.channel_opened()
    (pub,) = _sent(tracker, 1)
    assert pub.tag == 1


def test_single_acks_settle_and_do_not_accumulate() -> None:
    tracker = ConfirmTracker()
    pubs = _sent(tracker, 5)
    for tag in (2, 1, 3, 5, 4):  # out of order, never `multiple`
        tracker.confirm(tag, False)
    assert tracker.done == [pubs[n - 1].future for n in (2, 1, 3, 5, 4)]
    assert tracker.pending == 0
    assert not tracker._order  # the ordering queue does not keep settled publishes


def test_single_acks_drop_only_the_settled_front_of_the_order() -> None:
    tracker = ConfirmTracker()
    _sent(tracker, 4)
    tracker.confirm(2, False)
    assert [p.tag for p in tracker._order] == [1, 2, 3, 4]  # 1 is still unconfirmed
    tracker.confirm(1, False)
    assert [p.tag for p in tracker._order] == [3, 4]


def test_multiple_ack_settles_everything_up_to_the_tag() -> None:
    tracker = ConfirmTracker()
    pubs = _sent(tracker, 6)
    tracker.confirm(4, True)
    assert tracker.done == _futures(pubs[:4])
    assert tracker.pending == 2
    tracker.confirm(6, True)
    assert tracker.done == _futures(pubs)
    assert tracker.pending == 0


def test_a_multiple_ack_after_single_ones_reports_each_publish_once() -> None:
    tracker = ConfirmTracker()
    pubs = _sent(tracker, 5)
    tracker.confirm(3, False)
    tracker.confirm(5, True)
    assert tracker.done == _futures([pubs[2], pubs[0], pubs[1], pubs[3], pubs[4]])


def test_acks_of_publishes_nobody_waits_for_are_ignored() -> None:
    tracker = ConfirmTracker()
    plain = _publish("plain", confirm=False)
    tracker.sent(plain)  # tag 1, no confirm wanted (RabbitMQ acks it all the same)
    (pub,) = _sent(tracker, 1)
    tracker.confirm(1, False)
    tracker.confirm(7, False)  # unknown
    assert tracker.done == []
    tracker.confirm(2, True)
    assert tracker.done == [pub.future]


def test_written_publishes_without_confirms_are_done() -> None:
    tracker = ConfirmTracker()
    pubs = _sent(tracker, 2, confirm=False)
    tracker.written(pubs)
    assert tracker.done == _futures(pubs)
    assert tracker.pending == 0


def test_nack_fails_the_publish() -> None:
    tracker = ConfirmTracker()
    pubs = _sent(tracker, 3)
    tracker.reject(2, False)
    assert [f for f, _ in tracker.failed] == [pubs[1].future]
    assert tracker.pending == 2


def test_multiple_nack_fails_everything_up_to_the_tag() -> None:
    tracker = ConfirmTracker()
    pubs = _sent(tracker, 3)
    tracker.reject(2, True)
    assert [f for f, _ in tracker.failed] == _futures(pubs[:2])
    assert all(isinstance(exc, PublishFailed) for _, exc in tracker.failed)
    assert "rejected" in str(tracker.failed[0][1])
    tracker.confirm(3, True)
    assert tracker.done == [pubs[2].future]


def test_expiry_fails_unconfirmed_then_queued_publishes_past_their_deadline() -> None:
    tracker = ConfirmTracker(timeout=8)
    late, on_time = _publish("late", deadline=5.0), _publish("on time", deadline=50.0)
    tracker.sent(late)
    tracker.sent(on_time)
    queued_late, queued_on_time = _publish("q late", deadline=5.0), _publish("q", deadline=50.0)
    assert tracker.expire(10.0, [queued_late, queued_on_time]) == 1
    assert [(f, str(exc)) for f, exc in tracker.failed] == [
        (
            late.future,
            "not confirmed by the broker within publish_timeout (8 s); it may still have "
            "been routed",
        ),
        (
            queued_late.future,
            "not sent within publish_timeout (8 s): the connection to the broker was down; "
            "it was not published",
        ),
    ]
    assert queued_late.expired and not queued_on_time.expired
    assert tracker.pending == 1
    tracker.failed.clear()
    assert tracker.expire(11.0, [queued_late, queued_on_time]) == 0  # reported once
    assert tracker.failed == []
    tracker.confirm(2, True)  # a late confirm of the expired publish changes nothing
    assert tracker.done == [on_time.future]


def test_expiry_without_anything_late_changes_nothing() -> None:
    tracker = ConfirmTracker()
    _sent(tracker, 2, deadline=50.0)
    assert tracker.expire(10.0) == 0
    assert tracker.failed == [] and tracker.pending == 2


def test_a_lost_channel_fails_every_unconfirmed_publish_with_its_own_error() -> None:
    tracker = ConfirmTracker()
    pubs = _sent(tracker, 3)
    tracker.confirm(1, False)
    tracker.fail_unconfirmed(lambda: PublishFailed("channel closed"))
    assert [f for f, _ in tracker.failed] == _futures(pubs[1:])
    first, second = (exc for _, exc in tracker.failed)
    assert first is not second
    assert tracker.pending == 0
    tracker.confirm(3, True)  # the old channel's numbers mean nothing now
    assert tracker.done == [pubs[0].future]


def test_unconfirmed_publishes_are_sent_again_in_their_order_after_a_reconnect() -> None:
    tracker = ConfirmTracker()
    pubs = _sent(tracker, 6)
    tracker.confirm(2, False)
    tracker.confirm(5, False)
    again = tracker.take_unconfirmed()
    assert again == [pubs[0], pubs[2], pubs[3], pubs[5]]
    assert tracker.pending == 0
    tracker.channel_opened()
    for pub in again:
        tracker.sent(pub)
    assert [pub.tag for pub in again] == [1, 2, 3, 4]
    tracker.confirm(3, True)
    assert tracker.done == _futures([pubs[1], pubs[4], pubs[0], pubs[2], pubs[3]])
    assert tracker.take_unconfirmed() == [pubs[5]]


def test_taking_the_results_forgets_them() -> None:
    tracker = ConfirmTracker()
    pubs = _sent(tracker, 2)
    assert tracker.take_done() == [] and tracker.take_failed() == []
    tracker.confirm(1, False)
    tracker.reject(2, False)
    assert tracker.take_done() == [pubs[0].future]
    assert [f for f, _ in tracker.take_failed()] == [pubs[1].future]
    assert tracker.done == [] and tracker.failed == []


def _confirm_randomly(seed: int) -> None:
    """RabbitMQ answers every publish of the channel once, alone or with `multiple`
    (every unanswered one up to a tag); publishes expire meanwhile."""
    rng = random.Random(seed)
    tracker = ConfirmTracker()
    pubs = [_publish(f"p{n}", confirm=rng.random() > 0.2) for n in range(rng.randint(1, 80))]
    unanswered: list[int] = []
    verdict: dict[int, str] = {}
    expired: set[int] = set()
    sent = 0
    while sent < len(pubs) or unanswered:
        if sent < len(pubs) and (not unanswered or rng.random() < 0.5):
            tracker.sent(pubs[sent])
            sent += 1
            unanswered.append(sent)
            continue
        if rng.random() < 0.05:  # some unconfirmed publishes run out of time
            for pub in pubs[:sent]:
                if pub.confirm and pub.tag in unanswered and rng.random() < 0.3:
                    pub.deadline = 0.0
            before = {id(f) for f, _ in tracker.failed}
            tracker.expire(1.0)
            expired |= {id(f) for f, _ in tracker.failed} - before
            continue
        tag = rng.choice(unanswered)
        multiple = rng.random() < 0.5
        answered = [t for t in unanswered if t <= tag] if multiple else [tag]
        ok = rng.random() > 0.15
        (tracker.confirm if ok else tracker.reject)(tag, multiple)
        for t in answered:
            verdict[t] = "done" if ok else "failed"
        unanswered = [t for t in unanswered if t not in answered]
    done = [id(f) for f in tracker.done]
    failed = [id(f) for f, _ in tracker.failed]
    assert len(done) == len(set(done)) and len(failed) == len(set(failed))
    assert not set(done) & set(failed)
    for tag, pub in enumerate(pubs, start=1):
        key = id(pub.future)
        if not pub.confirm:
            assert key not in done and key not in failed
        elif key in expired:
            assert key not in done
        else:
            assert key in (done if verdict[tag] == "done" else failed), (tag, verdict[tag])
    assert tracker.pending == 0


def test_random_confirm_sequences_settle_each_publish_exactly_once() -> None:
    """Random interleavings of publishes, single and multiple acks and nacks, and
    expiry: every publish that waits for a confirm is reported once, as the broker (or
    its deadline) decided; the others are never reported by a confirm."""
    for seed in range(300):
        try:
            _confirm_randomly(seed)
        except AssertionError as exc:
            raise AssertionError(f"seed {seed}: {exc}") from exc
