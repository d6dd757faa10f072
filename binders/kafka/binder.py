"""The Kafka binder: one producer and one admin client per binder, one consumer per
consumer binding."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from binder.errors import BinderError
from binder.spi import (
    Capabilities,
    ConsumerBinding,
    ConsumerSpec,
    DeliverySink,
    ProducerBinding,
    ProducerSpec,
    require,
)
from binders.kafka.admin import TopicProvisioner
from binders.kafka.client import client_kwargs, describe_connection
from binders.kafka.connectivity import ConnectionWatch
from binders.kafka.consumer import KafkaConsumerBinding, dead_letter_topic
from binders.kafka.errors import diagnose_connection, kafka_errors
from binders.kafka.producer import KafkaProducerBinding, RecordSender
from binders.kafka.settings import parse_reset_target

__all__ = ["CAPABILITIES", "KafkaBinder", "dead_letter_topic"]

log = logging.getLogger(__name__)

CAPABILITIES = Capabilities(
    consumer_groups=True,
    anonymous_subscribers=True,
    ordering=True,
    durable=True,
    replay=True,
    native_headers=True,
    partitioning=True,
    redelivery_on_nack=True,
)


class KafkaBinder:
    """A connection to one Kafka cluster (see ``docs/binders/kafka.md``)."""

    capabilities = CAPABILITIES

    def __init__(self, name: str, settings: Mapping[str, Any]) -> None:
        self.name = name
        self.settings = dict(settings)
        self._client_kwargs = client_kwargs(self.settings)
        self._producer: AIOKafkaProducer | None = None
        self._admin: AIOKafkaAdminClient | None = None
        self._provisioner: TopicProvisioner | None = None
        self._consumers: list[KafkaConsumerBinding] = []
        self._producers: list[KafkaProducerBinding] = []
        self._closed = False
        self._sender: RecordSender | None = None
        self._watch: ConnectionWatch | None = None

    def __repr__(self) -> str:
        return f"<KafkaBinder {self.name} {describe_connection(self.settings)}>"

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Connect the producer and the admin client.

        Raises :class:`~binder.errors.AccessRefused` when a broker refuses the login
        (wrong SASL user or password, a mechanism the listener does not offer), and
        :class:`~binder.errors.BinderError` when Kafka cannot be reached; neither
        message holds a secret.
        """
        if self._producer is not None:
            return
        settings = self.settings
        producer = AIOKafkaProducer(
            **self._client_kwargs,
            acks=settings["acks"] if settings["acks"] != -1 else "all",
            enable_idempotence=settings["enable_idempotence"],
            linger_ms=settings["linger_ms"],
            max_batch_size=settings["max_batch_size"],
            # Records go through send_batch, which aiokafka does not size-check: the
            # RecordSender checks each binding's own max_request_size.
            max_request_size=settings["max_request_size"],
            compression_type=settings["compression_type"],
        )
        admin = AIOKafkaAdminClient(**self._client_kwargs)
        watch = ConnectionWatch(self.name, request_timeout_ms=settings["request_timeout_ms"])
        watch.watch(producer.client)
        watch.watch(admin._client)
        try:
            # Bounded: aiokafka retries some start requests for ever (InitProducerId when
            # the cluster advertises addresses its certificates do not hold).
            async with asyncio.timeout(settings["request_timeout_ms"] / 1000):
                await producer.start()
                await admin.start()
        except Exception as exc:
            with contextlib.suppress(Exception):
                await producer.stop()
            with contextlib.suppress(Exception):
                await admin.close()
            watch.close()
            raise await diagnose_connection(settings, self._client_kwargs, exc) from None
        self._producer, self._admin, self._watch = producer, admin, watch
        self._provisioner = TopicProvisioner(admin, settings["request_timeout_ms"] / 1000)
        self._closed = False
        log.info("Kafka binder %s connected to %s", self.name, describe_connection(settings))

    async def close(self) -> None:
        """Close every binding, flush the producer, disconnect; idempotent."""
        if self._closed:
            return
        self._closed = True
        consumers, self._consumers = self._consumers, []
        await asyncio.gather(*(c.close() for c in consumers), return_exceptions=True)
        producers, self._producers = self._producers, []
        for producer_binding in producers:
            with contextlib.suppress(Exception):
                await producer_binding.close()
        if self._sender is not None:
            with contextlib.suppress(Exception):
                await self._sender.close()
        if self._producer is not None:
            with contextlib.suppress(Exception):
                await self._producer.stop()
        if self._admin is not None:
            with contextlib.suppress(Exception):
                await self._admin.close()
        if self._watch is not None:
            self._watch.close()
        self._producer = self._admin = self._provisioner = None
        self._sender, self._watch = None, None

    def connections(self) -> dict[str, bool]:
        """Each broker of the cluster, as its clients know it: not lost? (A broker is
        lost from a broken or timed-out connection until it answers again.)"""
        if self._producer is None or self._watch is None:
            return {}
        lost = self._watch.lost
        brokers = self._producer.client.cluster.brokers()
        found = {f"{b.host}:{b.port}": True for b in brokers}
        found.update(dict.fromkeys(lost, False))
        return found

    def reconnects(self) -> int:
        """Brokers lost and answering again (see :class:`ConnectionWatch`)."""
        return self._watch.recoveries if self._watch is not None else 0

    def _sender_for(self, producer: AIOKafkaProducer) -> RecordSender:
        if self._sender is None:
            self._sender = RecordSender(
                producer,
                linger_ms=self.settings["linger_ms"],
                max_batch_size=self.settings["max_batch_size"],
                # A compressed batch may fit where its uncompressed records would not:
                # the broker judges those.
                check_topic_limits=self.settings["compression_type"] is None,
                spring_header_types=self.settings["spring_header_types"],
                request_timeout_ms=self.settings["request_timeout_ms"],
                delivery_timeout_ms=self.settings["delivery_timeout_ms"],
            )
        return self._sender

    def _started(self) -> tuple[AIOKafkaProducer, TopicProvisioner]:
        if self._producer is None or self._provisioner is None:
            raise BinderError(f"Kafka binder '{self.name}' is not started")
        return self._producer, self._provisioner

    # -------------------------------------------------------------- provisioning

    async def provision(
        self, destination: str, group: str | None, options: Mapping[str, Any]
    ) -> None:
        """Create the topic when missing; groups need no storage in Kafka."""
        await self._ensure_topic(destination, options, 1)

    async def _ensure_topic(self, topic: str, options: Mapping[str, Any], minimum: int) -> int:
        _, provisioner = self._started()
        plan = provisioner.plan(topic, options, self.settings, partitions=minimum)
        with kafka_errors(f"provisioning Kafka topic '{topic}'"):
            if not self.settings["auto_create_topics"]:
                count = await provisioner.partition_count(topic)
                if count is None:
                    raise BinderError(
                        f"Kafka topic '{topic}' does not exist and auto_create_topics is false"
                    )
                return count
            return await provisioner.ensure(plan)

    async def topic_config(self, topic: str) -> dict[str, str]:
        """Return ``topic``'s configuration as the broker reports it."""
        _, provisioner = self._started()
        with kafka_errors(f"describing Kafka topic '{topic}'"):
            return await provisioner.describe_config(topic)

    # ------------------------------------------------------------------ binding

    def dead_letter_destination(self, destination: str, group: str | None) -> str:
        """``error.<destination>.<group>``, as Spring Cloud Stream names it."""
        return dead_letter_topic(destination, group)

    async def bind_consumer(self, spec: ConsumerSpec, sink: DeliverySink) -> ConsumerBinding:
        """Join the group and return once partitions are assigned and positioned."""
        producer, provisioner = self._started()
        if spec.group is not None:
            require(self.capabilities, "consumer_groups", self.name, "consumer groups")
        if spec.instance_count > 1:
            require(self.capabilities, "partitioning", self.name, "partitioned consumers")
        partitions = await self._ensure_topic(spec.destination, spec.options, 1)
        if spec.instance_count > 1 and spec.instance_count > partitions:
            log.warning(
                "topic %s has %d partition(s) for %d instances: some instances get none",
                spec.destination,
                partitions,
                spec.instance_count,
            )
        binding = KafkaConsumerBinding(
            spec,
            sink,
            settings=self.settings,
            client_kwargs=self._client_kwargs,
            sender=self._sender_for(producer),
            provisioner=provisioner,
            partitions=partitions,
        )
        if self._watch is not None:
            self._watch.watch(binding.client)
        with kafka_errors(f"binding consumer '{spec.binding}' to Kafka topic '{spec.destination}'"):
            await binding.start(self.settings["assignment_timeout"])
        self._consumers.append(binding)
        return binding

    async def bind_producer(self, spec: ProducerSpec) -> ProducerBinding:
        """Provision the topic with at least ``spec.partition_count`` partitions.

        The binding sends records up to its ``max_request_size`` option (default: the
        binder's) and, without compression, up to the topic's ``max.message.bytes``.
        """
        producer, provisioner = self._started()
        if spec.partition_count > 1:
            require(self.capabilities, "partitioning", self.name, "partition_count > 1")
        partitions = await self._ensure_topic(spec.destination, spec.options, spec.partition_count)
        sender = self._sender_for(producer)
        with kafka_errors(f"binding producer '{spec.binding}' to Kafka topic '{spec.destination}'"):
            if partitions < spec.partition_count:
                # The core sends to partitions 0..partition_count-1, so the binding cannot
                # work on fewer: grow the topic (logged as a warning) rather than fail.
                partitions = await provisioner.grow(spec.destination, spec.partition_count)
                for consumer in self._consumers:
                    if consumer.spec.destination == spec.destination:
                        consumer.refresh_metadata()
            limit = await provisioner.message_limit(spec.destination)
            await sender.know(spec.destination, partitions, message_limit=limit)
        max_request_size = spec.options.get("max_request_size") or self.settings["max_request_size"]
        binding = KafkaProducerBinding(spec, producer, sender, partitions, int(max_request_size))
        self._producers.append(binding)
        return binding

    # ------------------------------------------------------------------- replay

    async def reset_offsets(
        self, destination: str, group: str, to: str | float | datetime = "earliest"
    ) -> dict[int, int]:
        """Move ``group``'s committed offsets on ``destination`` for a replay.

        ``to`` is ``"earliest"``, ``"latest"``, a POSIX timestamp or a datetime / ISO
        string (the first record at or after it; the end of a partition with none).
        The group must have no active member (stop the app first); returns the new
        offset per partition.
        """
        _, provisioner = self._started()
        target = parse_reset_target(to)
        with kafka_errors(f"resetting group '{group}' on Kafka topic '{destination}'"):
            count = await provisioner.partition_count(destination)
            if count is None:
                raise BinderError(f"Kafka topic '{destination}' does not exist")
            tps = [TopicPartition(destination, p) for p in range(count)]
            consumer = AIOKafkaConsumer(
                **self._client_kwargs, group_id=group, enable_auto_commit=False
            )
            await consumer.start()
            try:
                consumer.assign(tps)
                if target == "earliest":
                    offsets = await consumer.beginning_offsets(tps)
                elif target == "latest":
                    offsets = await consumer.end_offsets(tps)
                else:
                    millis = int(target * 1000)
                    found = await consumer.offsets_for_times(dict.fromkeys(tps, millis))
                    ends = await consumer.end_offsets(tps)
                    offsets = {tp: found[tp].offset if found[tp] else ends[tp] for tp in tps}
                await consumer.commit(offsets)
            finally:
                await consumer.stop()
        log.info("reset group %s on %s to %s", group, destination, to)
        return {tp.partition: offset for tp, offset in offsets.items()}
