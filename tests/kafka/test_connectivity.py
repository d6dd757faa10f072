"""ConnectionWatch: one line per lost broker and one when it answers again, with a
stand-in for aiokafka's client; no broker needed."""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka.conn import CloseReason

from binders.kafka.connectivity import ConnectionWatch


class FakeClient:
    """What the watch uses of ``AIOKafkaClient``."""

    def __init__(self) -> None:
        self.closed: list[Any] = []
        self.cluster = SimpleNamespace(
            broker_metadata=lambda node_id: SimpleNamespace(host="127.0.0.1", port=9092)
        )

    def _on_connection_closed(self, conn: Any, reason: Any) -> None:
        self.closed.append(reason)

    async def send(self, node_id: Any, request: Any, **kwargs: Any) -> str:
        return f"answer to {request}"


CONN = SimpleNamespace(host="127.0.0.1", port=9092)


async def test_a_loss_and_a_recovery_are_one_line_each(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "binders.kafka")
    watch = ConnectionWatch("k", request_timeout_ms=5000)
    client = FakeClient()
    watch.watch(client)
    assert "send" not in vars(client)  # requests are not wrapped while all is well
    client._on_connection_closed(CONN, CloseReason.IDLE_DROP)  # not a loss
    assert not watch.lost and client.closed == [CloseReason.IDLE_DROP]
    client._on_connection_closed(CONN, CloseReason.CONNECTION_TIMEOUT)
    client._on_connection_closed(CONN, CloseReason.CONNECTION_BROKEN)  # still lost
    assert list(watch.lost) == ["127.0.0.1:9092"]
    assert "send" in vars(client)  # now answers are watched for
    assert await client.send(1, "metadata") == "answer to metadata"
    assert not watch.lost and "send" not in vars(client)
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == (
        "Kafka binder k lost its connection to broker 127.0.0.1:9092 (no answer within "
        "request_timeout_ms (5000 ms)); its clients reconnect and its bindings wait"
    )
    assert lines[1].startswith("Kafka binder k reconnected to broker 127.0.0.1:9092 after ")
    assert len(lines) == 2
    watch.close()


def test_aiokafka_outage_noise_is_debug_only_while_a_watch_runs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    noisy = logging.getLogger("aiokafka")
    text = "Unable connect to node with id 1: KafkaConnectionError: Connection closed"
    watch = ConnectionWatch("k", request_timeout_ms=5000)
    noisy.error(text)
    noisy.error("OffsetCommit failed for group g due to group error, will rejoin")
    watch.close()
    noisy.error(text)  # no watch: aiokafka's records are left alone
    assert [r.getMessage() for r in caplog.records] == [
        "OffsetCommit failed for group g due to group error, will rejoin",
        text,
    ]
