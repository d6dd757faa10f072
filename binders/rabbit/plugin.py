"""Registers the ``rabbit`` binder type; kombu is imported only by :meth:`create`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from binder.plugins import hookimpl
from binder.schema import secret_keys
from binder.spi import Binder, BinderType, Direction
from binders.rabbit import settings as rabbit_settings

if TYPE_CHECKING:
    from binder.asyncapi.protocols import Broker

__all__ = ["RabbitBinderType", "binder_types"]


class RabbitBinderType:
    """RabbitMQ through kombu/py-amqp, with Spring Cloud Stream's exchange/queue layout."""

    name = "rabbit"
    description = "RabbitMQ (kombu): topic exchanges, group queues, DLX dead letters, confirms"
    requires = {"kombu": "eventbinder[rabbit]"}
    """The client library, imported only by :meth:`create`, and what installs it."""
    environment_defaults = {"url": rabbit_settings.URL_ENV}
    """Settings that, left unset, are read from an environment variable when the
    binder connects (``binder config`` shows them)."""

    def validate_settings(self, settings: Mapping[str, Any]) -> dict[str, Any]:
        """Check a ``binders.<name>`` section (url, heartbeat, ssl, reconnect_*...)."""
        return rabbit_settings.validate_settings(settings)

    def validate_binding_options(
        self, binding_options: Mapping[str, Any], direction: Direction
    ) -> dict[str, Any]:
        """Check a binding's ``rabbit:`` section for a consumer or producer."""
        return rabbit_settings.validate_binding_options(binding_options, direction)

    def secret_keys(self) -> frozenset[str]:
        """The options declared ``secret=True``: ``url`` (it may hold a password) and
        ``password``."""
        return secret_keys(
            rabbit_settings.SETTINGS,
            rabbit_settings.CONSUMER_OPTIONS,
            rabbit_settings.PRODUCER_OPTIONS,
        )

    def create(self, name: str, settings: Mapping[str, Any]) -> Binder:
        """Build an unstarted :class:`~binders.rabbit.binder.RabbitBinder`."""
        from binders.rabbit.binder import RabbitBinder

        return RabbitBinder(name, settings)

    def asyncapi(self) -> Broker:
        """How ``binder asyncapi`` describes this binder's broker."""
        from binders.rabbit.asyncapi import RabbitBroker

        return RabbitBroker()


@hookimpl
def binder_types() -> list[BinderType]:
    """The rabbit binder type."""
    return [RabbitBinderType()]
