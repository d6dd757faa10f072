"""The RabbitMQ binder passes the binder conformance suite against the real RabbitMQ."""

from __future__ import annotations

import pytest

from binder.message import Message
from binder.spi import Binder
from binder.testing.conformance import BinderConformance, ConformanceSettings
from binders.rabbit.binder import RabbitBinder
from binders.rabbit.topology import dead_letter_target
from tests.rabbit.conftest import URL, read_queue

pytestmark = pytest.mark.broker("rabbit")


class TestRabbitConformance(BinderConformance):
    binder_settings = {"type": "rabbit", "url": URL, "reconnect_max": 1.0}
    conformance = ConformanceSettings(receive_timeout=10.0)

    async def read_dead_letters(
        self, binder: Binder, destination: str, group: str | None, count: int, timeout: float
    ) -> list[Message]:
        """Read the durable ``<destination>.<group>.dlq`` queue."""
        assert isinstance(binder, RabbitBinder)
        queue, _ = dead_letter_target(destination, group, True)
        return await read_queue(binder, queue, count, timeout)
