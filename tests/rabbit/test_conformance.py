"""The RabbitMQ binder passes the binder conformance suite against the real RabbitMQ."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from binder.message import Message
from binder.plugins import BinderRegistry, load_registry
from binder.spi import Binder
from binder.testing.conformance import BinderConformance, ConformanceSettings
from binders.rabbit.binder import RabbitBinder
from tests.rabbit.support import URL, read_queue, track

pytestmark = pytest.mark.broker("rabbit")


class TestRabbitConformance(BinderConformance):
    binder_settings = {"type": "rabbit", "url": URL, "reconnect_max": 1.0}
    # The blocking-handler test: RabbitMQ closes a connection that missed two
    # heartbeats; with a 2 s heartbeat a handler blocking 3.5 s on the event loop would
    # cost the session (it runs in a worker thread, so it must not).
    # The refused-credentials test: the ``password`` setting overrides the URL's.
    conformance = ConformanceSettings(
        receive_timeout=10.0,
        session_settings={"heartbeat": 2.0},
        block_for=3.5,
        refused_settings={"password": "conformance-wrong-password"},
        refused_secret="conformance-wrong-password",
    )

    @pytest.fixture
    def registry(self) -> BinderRegistry:
        """The real registry, with every rabbit binder it creates tracked for clean-up."""
        registry = load_registry()
        registry.types["rabbit"] = _Tracking(registry.types["rabbit"])
        return registry

    async def read_dead_letters(
        self, binder: Binder, destination: str, group: str | None, count: int, timeout: float
    ) -> list[Message]:
        """Read the durable DLQ (a queue, not an exchange one could subscribe to)."""
        assert isinstance(binder, RabbitBinder)
        queue = binder.dead_letter_destination(destination, group)
        return await read_queue(binder, queue, count, timeout)


class _Tracking:
    """The rabbit binder type, registering each binder it creates with ``track``."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.name = inner.name
        self.description = inner.description

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def create(self, name: str, settings: Mapping[str, Any]) -> Binder:
        return track(self._inner.create(name, settings))
