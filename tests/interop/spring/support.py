"""Helpers of the Spring interop tests: eventbinder configurations, Kafka topics."""

from __future__ import annotations

from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from tests.rabbit.support import URL

KAFKA_BOOTSTRAP = "127.0.0.1:9092"


def eventbinder_settings(broker: str) -> dict[str, Any]:
    """An eventbinder configuration with ``broker`` (rabbit or kafka) as the default
    binder, on the local broker."""
    if broker == "rabbit":
        binder: dict[str, Any] = {"type": "rabbit", "url": URL}
    elif broker == "kafka":
        binder = {"type": "kafka", "bootstrap_servers": KAFKA_BOOTSTRAP}
    else:
        raise ValueError(f"no interop configuration for broker {broker!r}")
    return {"binders": {broker: binder}, "default_binder": broker}


async def create_topics(partitions: int, *names: str) -> None:
    """Create topics ``names`` with ``partitions`` partitions each, before either app
    does (Spring and eventbinder would create them with their own defaults)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA_BOOTSTRAP)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(name, num_partitions=partitions, replication_factor=1) for name in names]
        )
    finally:
        await admin.close()
