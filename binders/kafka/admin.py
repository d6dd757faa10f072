"""Topic provisioning through the Kafka admin client.

Creates missing topics with the asked partitions, replication factor and topic
configuration; never shrinks a topic; warns (or, with ``auto_add_partitions``, grows
the topic) when an existing topic has fewer partitions than asked.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import for_code
from aiokafka.protocol.metadata import MetadataRequest

from binder.errors import BinderError
from binders.kafka.errors import kafka_reason, refusal

__all__ = ["TopicPlan", "TopicProvisioner"]

log = logging.getLogger(__name__)

_TOPIC_ALREADY_EXISTS = 36
_UNKNOWN_TOPIC = 3
_LEADER_NOT_AVAILABLE = 5
_TOPIC_AUTHORIZATION_FAILED = 29


@dataclass(frozen=True, slots=True)
class TopicPlan:
    """What a topic should look like."""

    name: str
    partitions: int
    replication_factor: int
    config: Mapping[str, str]
    auto_add_partitions: bool = False


class TopicProvisioner:
    """Creates and inspects topics; caches partition counts of topics it has seen."""

    def __init__(self, admin: AIOKafkaAdminClient, timeout: float = 30.0) -> None:
        self._admin = admin
        self._timeout = timeout
        self._partitions: dict[str, int] = {}
        self._lock = asyncio.Lock()

    async def partition_count(self, topic: str) -> int | None:
        """Partitions of ``topic`` as the cluster metadata says, None when missing."""
        # describe_topics() would let a broker with auto.create.topics.enable create the
        # topic with default settings, so ask for metadata without auto-creation.
        request = MetadataRequest([topic], allow_auto_topic_creation=False)
        response = await self._admin._send_request(request)
        for entry in response.to_object()["topics"]:
            if entry["topic"] != topic:
                continue
            if entry["error_code"] == _TOPIC_AUTHORIZATION_FAILED:
                raise _refused(entry["error_code"], "", f"describing Kafka topic '{topic}'")
            if entry["error_code"] in (_UNKNOWN_TOPIC,) or not entry["partitions"]:
                return None
            ready = all(p["leader"] >= 0 for p in entry["partitions"])
            return len(entry["partitions"]) if ready else None
        return None

    async def ensure(self, plan: TopicPlan) -> int:
        """Make sure the topic exists with at least ``plan.partitions``; return its count."""
        async with self._lock:
            known = self._partitions.get(plan.name)
            if known is not None and known >= plan.partitions:
                return known
            count = await self.partition_count(plan.name)
            if count is None:
                await self._create(plan)
                count = await self._wait_ready(plan.name, plan.partitions)
            elif count < plan.partitions:
                count = await self._too_few(plan, count)
            self._partitions[plan.name] = count
            return count

    async def _create(self, plan: TopicPlan) -> None:
        topic = NewTopic(
            plan.name,
            num_partitions=plan.partitions,
            replication_factor=plan.replication_factor,
            topic_configs=dict(plan.config),
        )
        response = await self._admin.create_topics([topic])
        for entry in response.topic_errors:
            name, code = entry[0], entry[1]
            message = entry[2] if len(entry) > 2 else ""
            if code and code != _TOPIC_ALREADY_EXISTS:
                raise _refused(code, message, f"creating Kafka topic '{name}'")
        log.info(
            "created Kafka topic %s (partitions=%d, replication_factor=%d, config=%s)",
            plan.name,
            plan.partitions,
            plan.replication_factor,
            dict(plan.config),
        )

    async def grow(self, topic: str, partitions: int) -> int:
        """Grow ``topic`` to ``partitions`` (never shrinks); return the new count."""
        async with self._lock:
            count = await self.partition_count(topic)
            if count is None:
                raise BinderError(f"Kafka topic '{topic}' does not exist")
            if count < partitions:
                count = await self._too_few(
                    TopicPlan(topic, partitions, 1, {}, auto_add_partitions=True), count
                )
            self._partitions[topic] = count
            return count

    async def _too_few(self, plan: TopicPlan, count: int) -> int:
        if not plan.auto_add_partitions:
            log.warning(
                "Kafka topic %s has %d partition(s) but %d were asked for; it is left as "
                "it is (set auto_add_partitions: true to grow it; topics never shrink)",
                plan.name,
                count,
                plan.partitions,
            )
            return count
        await self._admin.create_partitions({plan.name: NewPartitions(plan.partitions)})
        log.warning(
            "grew Kafka topic %s from %d to %d partitions (keys may now map to other partitions)",
            plan.name,
            count,
            plan.partitions,
        )
        return await self._wait_ready(plan.name, plan.partitions)

    async def _wait_ready(self, topic: str, partitions: int) -> int:
        deadline = time.monotonic() + self._timeout
        while True:
            count = await self.partition_count(topic)
            if count is not None and count >= partitions:
                return count
            if time.monotonic() > deadline:
                raise BinderError(f"Kafka topic '{topic}' did not become ready in time")
            await asyncio.sleep(0.05)

    async def message_limit(self, topic: str) -> int | None:
        """The topic's ``max.message.bytes``, None when the broker does not say (the
        client may not be allowed to describe configurations)."""
        try:
            value = (await self.describe_config(topic)).get("max.message.bytes")
            return int(value) if value is not None else None
        except Exception as exc:
            log.debug("no max.message.bytes for Kafka topic %s: %s", topic, kafka_reason(exc))
            return None

    async def describe_config(self, topic: str) -> dict[str, str]:
        """Return the topic's configuration as the broker reports it."""
        responses = await self._admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic)]
        )
        result: dict[str, str] = {}
        for response in responses:
            for resource in response.resources:
                for entry in resource[4]:
                    result[entry[0]] = entry[1]
        return result

    def forget(self, topic: str) -> None:
        """Drop the cached partition count of ``topic``."""
        self._partitions.pop(topic, None)

    @staticmethod
    def plan(
        name: str, options: Mapping[str, Any], settings: Mapping[str, Any], partitions: int = 1
    ) -> TopicPlan:
        """Combine a binding's topic options, the binder's settings and a minimum
        partition count.

        ``options`` may name only some topic options (``{}`` for a topic no binding
        describes, such as a dead-letter topic): an option absent or ``None`` (its
        default) takes the binder's setting of the same name.
        """

        def pick(key: str) -> Any:
            value = options.get(key)
            return settings[key] if value is None else value

        return TopicPlan(
            name=name,
            partitions=max(int(pick("partitions")), partitions),
            replication_factor=int(pick("replication_factor")),
            config=dict(options.get("config") or {}),
            auto_add_partitions=bool(pick("auto_add_partitions")),
        )


def _refused(code: int, message: str, doing: str) -> BinderError:
    """The error for a broker error ``code`` (with its ``message``) while ``doing``:
    :class:`~binder.errors.AccessRefused` for an authorization error."""
    error = for_code(code)(message) if message else for_code(code)()
    refused = refusal(error, doing)
    if refused is not None:
        return refused
    return BinderError(f"{doing}: {kafka_reason(error)}")
