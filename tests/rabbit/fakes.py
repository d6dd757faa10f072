"""Stand-ins for py-amqp objects, for the RabbitMQ tests that run without a broker."""

from __future__ import annotations

__all__ = ["BrokerChannel"]


class BrokerChannel:
    """RabbitMQ's view of one consumer channel: unacked delivery tags, and the rules of
    basic.ack/basic.reject (an unknown tag closes the channel: here, an assertion)."""

    def __init__(self, delivered: int) -> None:
        self.is_open = True
        self.unacked = list(range(1, delivered + 1))
        self.acked: set[int] = set()
        self.requeued: set[int] = set()
        self.frames = 0

    def basic_ack(self, tag: int, multiple: bool = False) -> None:
        """Ack ``tag`` (``multiple``: every unacked tag up to it)."""
        self.frames += 1
        assert tag in self.unacked, f"PRECONDITION_FAILED - unknown delivery tag {tag}"
        taken = [t for t in self.unacked if t <= tag] if multiple else [tag]
        self.acked.update(taken)
        self.unacked = [t for t in self.unacked if t not in taken]

    def basic_reject(self, tag: int, requeue: bool) -> None:
        """Reject ``tag``; the tests always requeue."""
        self.frames += 1
        assert tag in self.unacked, f"PRECONDITION_FAILED - unknown delivery tag {tag}"
        self.requeued.add(tag)
        self.unacked.remove(tag)
