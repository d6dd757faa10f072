"""Registers the ``mqtt`` binder type; loaded through the ``binder.binders`` entry point.

Never imports paho-mqtt: :meth:`MqttBinderType.create` imports the binder lazily.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from binder.plugins import hookimpl
from binder.schema import secret_keys
from binder.spi import Binder, BinderType, Direction
from binders.mqtt import settings as mqtt_settings

if TYPE_CHECKING:
    from binder.asyncapi.protocols import Broker

__all__ = ["MqttBinderType", "binder_types"]


class MqttBinderType:
    """MQTT 5 / 3.1.1 brokers through paho-mqtt (extra ``mqtt``)."""

    name = "mqtt"
    description = "MQTT 5 or 3.1.1 broker via paho-mqtt (shared subscriptions for groups)"
    requires = {"paho.mqtt": "eventbinder[mqtt]"}
    """The client library, imported only by :meth:`create`, and what installs it."""

    def validate_settings(self, settings: Mapping[str, Any]) -> dict[str, Any]:
        """Check a ``binders.<name>`` section of type mqtt; fill in defaults."""
        return mqtt_settings.validate_settings(settings)

    def validate_binding_options(
        self, options: Mapping[str, Any], direction: Direction
    ) -> dict[str, Any]:
        """Check a binding's ``mqtt:`` section (qos, retain, client_id, session_expiry)."""
        return mqtt_settings.validate_binding_options(options, direction)

    def secret_keys(self) -> frozenset[str]:
        """The options declared ``secret=True``: ``password`` and ``url`` (which may
        embed credentials)."""
        return secret_keys(
            mqtt_settings.SETTINGS, mqtt_settings.CONSUMER_OPTIONS, mqtt_settings.PRODUCER_OPTIONS
        )

    def create(self, name: str, settings: Mapping[str, Any]) -> Binder:
        """Build an unstarted binder; imports paho-mqtt only now."""
        from binders.mqtt.binder import MqttBinder

        return MqttBinder(name, settings)

    def asyncapi(self) -> Broker:
        """How ``binder asyncapi`` describes this binder's broker."""
        from binders.mqtt.asyncapi import MqttBroker

        return MqttBroker()


@hookimpl
def binder_types() -> list[BinderType]:
    """The mqtt binder type."""
    return [MqttBinderType()]
