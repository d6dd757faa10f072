"""The conformance suite, run on the third-party ``loopback`` binder.

Not collected by the main test run (the name does not start with ``test_``): the
loopback distribution is installed into a temporary directory only, so
``test_thirdparty_binder.py`` runs this module in a subprocess with that directory on
``PYTHONPATH``.  The binder is found through its entry point, like any binder.
"""

from __future__ import annotations

import asyncio
from typing import Any

from binder.message import Message
from binder.spi import ConsumerSpec, ProducerSpec
from binder.testing import consume
from binder.testing.conformance import BinderConformance, wait_until

QUEUE_SIZE = 64


class TestLoopbackConformance(BinderConformance):
    binder_settings = {"type": "loopback", "queue_size": QUEUE_SIZE}

    async def read_dead_letters(
        self, binder: Any, destination: str, group: str | None, count: int, timeout: float
    ) -> list[Message]:
        def matching() -> list[Message]:
            return [
                m for m in binder.dead_letters if m.headers["x-original-destination"] == destination
            ]

        await wait_until(lambda: len(matching()) >= count, timeout, f"{count} dead letter(s)")
        return matching()[:count]

    # -- loopback specifics --------------------------------------------------------------

    async def test_full_queue_holds_publishers_until_the_subscriber_closes(
        self, binder: Any
    ) -> None:
        started, release = asyncio.Event(), asyncio.Event()

        async def stuck(message: Message) -> None:
            started.set()
            await release.wait()

        # The engine holds one message (in the handler): the queue behind it fills up.
        consumer = await consume(
            binder, ConsumerSpec(binding="bp-in-0", destination="bp", prefetch=1), stuck
        )
        producer = await binder.bind_producer(ProducerSpec(binding="bp-out-0", destination="bp"))
        await producer.publish(Message(b"0"))
        await asyncio.wait_for(started.wait(), self.timeout)  # the handler holds message 0
        for n in range(QUEUE_SIZE):
            await producer.publish(Message(str(n + 1).encode()))
        assert consumer.queue.full()
        blocked = asyncio.ensure_future(producer.publish(Message(b"one too many")))
        for _ in range(5):
            await asyncio.sleep(0)  # yield to the loop
        assert not blocked.done(), "backpressure: a publish waits while the queue is full"
        closing = asyncio.create_task(consumer.close())
        release.set()  # the engine drains (the handler returns), then the binding closes
        await asyncio.wait_for(blocked, self.timeout)  # released by the close
        await asyncio.wait_for(closing, self.timeout)

    async def test_each_binder_instance_has_its_own_subscribers(self, registry: Any) -> None:
        binder_type = registry.get("loopback")
        first = binder_type.create("a", binder_type.validate_settings({}))
        second = binder_type.create("b", binder_type.validate_settings({}))
        got: list[Message] = []

        async def collect(message: Message) -> None:
            got.append(message)

        await consume(second, ConsumerSpec(binding="x-in-0", destination="x"), collect)
        producer = await first.bind_producer(ProducerSpec(binding="x-out-0", destination="x"))
        await producer.publish(Message(b"only for first"))
        assert second._subscribers["x"][0].queue.empty()
        await first.close()
        await second.close()
        assert got == []
