"""Plugin entry point of the Kafka binder (``type: kafka``).

Imports no Kafka client: aiokafka is loaded only when :meth:`KafkaBinderType.create`
builds a binder.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from binder.plugins import hookimpl
from binder.schema import secret_keys, validate_section
from binders.kafka.settings import BINDER_SCHEMA, CONSUMER_SCHEMA, PRODUCER_SCHEMA

if TYPE_CHECKING:
    from binder.asyncapi.protocols import Broker
    from binder.spi import Binder, BinderType, Direction

__all__ = ["KafkaBinderType", "binder_types"]


class KafkaBinderType:
    """The ``kafka`` binder type: validates configuration and builds binders."""

    name = "kafka"
    description = "Apache Kafka through aiokafka: topics, consumer groups, replay"
    requires = {"aiokafka": "eventbinder[kafka]"}
    """The client library, imported only by :meth:`create`, and what installs it."""

    def validate_settings(self, settings: Mapping[str, Any]) -> dict[str, Any]:
        """Check a ``binders.<name>`` section of type kafka; fill in defaults."""
        return validate_section(settings, BINDER_SCHEMA)

    def validate_binding_options(
        self, options: Mapping[str, Any], direction: Direction
    ) -> dict[str, Any]:
        """Check a binding's ``kafka:`` section for a consumer or producer binding."""
        schema = CONSUMER_SCHEMA if direction == "consumer" else PRODUCER_SCHEMA
        return validate_section(options, schema)

    def secret_keys(self) -> frozenset[str]:
        """Settings never shown in output or logs: those declared ``secret=True``."""
        return secret_keys(BINDER_SCHEMA, CONSUMER_SCHEMA, PRODUCER_SCHEMA)

    def create(self, name: str, settings: Mapping[str, Any]) -> Binder:
        """Build an unstarted :class:`~binders.kafka.binder.KafkaBinder`."""
        from binders.kafka.binder import KafkaBinder

        return KafkaBinder(name, settings)

    def asyncapi(self) -> Broker:
        """How ``binder asyncapi`` describes this binder's broker."""
        from binders.kafka.asyncapi import KafkaBroker

        return KafkaBroker()


@hookimpl
def binder_types() -> list[BinderType]:
    """Register the kafka binder type."""
    return [KafkaBinderType()]
