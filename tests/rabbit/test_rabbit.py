"""RabbitMQ-specific behaviour against the real broker: exchange types, routing keys,
dead letters, partitions, queue arguments, prefetch and acks, pre-existing topologies,
secrets."""

from __future__ import annotations

import json
import logging
import random

import pytest

from binder.app import App
from binder.errors import AccessRefused
from binder.message import Message
from binder.spi import ConsumerSpec, Failure, ProducerSpec
from binder.testing import Collector, wait_until
from binders.rabbit.binder import RabbitBinder
from binders.rabbit.confirms import PublishFailed
from binders.rabbit.consumer import RabbitDelivery
from binders.rabbit.errors import LinkError
from binders.rabbit.settings import validate_settings
from tests.rabbit.support import (
    RecordingSink,
    bind,
    close_consumers,
    consumer_options,
    delete_later,
    fresh,
    make_binder,
    producer_options,
    read_queue,
    ready_count,
    run_on,
    wait_until_ready,
)

pytestmark = pytest.mark.broker("rabbit")


def _json(value: object, **kwargs: object) -> Message:
    return Message(json.dumps(value).encode(), content_type="application/json", **kwargs)  # type: ignore[arg-type]


async def _consume(
    binder: RabbitBinder, destination: str, group: str | None = None, **options: object
) -> Collector:
    collector = Collector()
    await bind(
        binder,
        ConsumerSpec(
            binding=f"{destination}-in",
            destination=destination,
            group=group,
            options=consumer_options(**options),
        ),
        collector,
    )
    return collector


async def _producer(binder: RabbitBinder, destination: str, **options: object):  # type: ignore[no-untyped-def]
    return await binder.bind_producer(
        ProducerSpec(
            binding=f"{destination}-out",
            destination=destination,
            options=producer_options(**options),
        )
    )


# -- exchange types -------------------------------------------------------------------


async def test_topic_exchange_routes_by_pattern(binder: RabbitBinder) -> None:
    destination = fresh("topic")
    eu = await _consume(binder, destination, binding_routing_key="orders.*.eu")
    all_orders = await _consume(binder, destination, binding_routing_key=["orders.#"])
    producer = await _producer(binder, destination, routing_key={"header": "rk"})
    for rk in ("orders.new.eu", "orders.new.us", "orders.paid.eu", "invoices.new.eu"):
        await producer.publish(_json({"rk": rk}, headers={"rk": rk}))
    await all_orders.wait_for(3)
    await producer.publish(_json({"rk": "orders.last.eu"}, headers={"rk": "orders.last.eu"}))
    await eu.wait_for(3)
    await all_orders.wait_for(4)
    assert [m.json()["rk"] for m in eu.messages] == [
        "orders.new.eu",
        "orders.paid.eu",
        "orders.last.eu",
    ]
    assert "invoices.new.eu" not in [m.json()["rk"] for m in all_orders.messages]


async def test_direct_exchange_routes_by_exact_key(binder: RabbitBinder) -> None:
    destination = fresh("direct")
    red = await _consume(binder, destination, exchange_type="direct", binding_routing_key="red")
    both = await _consume(
        binder, destination, exchange_type="direct", binding_routing_key=["red", "blue"]
    )
    producer = await _producer(
        binder, destination, exchange_type="direct", routing_key={"message_key": True}
    )
    for colour in ("red", "blue", "green", "red.dark", "red"):
        await producer.publish(_json({"c": colour}, key=colour))
    await both.wait_for(3)
    await red.wait_for(2)
    assert [m.json()["c"] for m in red.messages] == ["red", "red"]
    assert [m.json()["c"] for m in both.messages] == ["red", "blue", "red"]
    assert red.messages[0].key == "red"


async def test_direct_exchange_default_keys_use_the_destination(binder: RabbitBinder) -> None:
    destination = fresh("directdefault")
    received = await _consume(binder, destination, "g", exchange_type="direct")
    producer = await _producer(binder, destination, exchange_type="direct")
    await producer.publish(_json({"n": 1}))
    [got] = await received.wait_for(1)
    assert got.json() == {"n": 1}


async def test_fanout_exchange_ignores_routing_keys(binder: RabbitBinder) -> None:
    destination = fresh("fanout")
    first = await _consume(binder, destination, exchange_type="fanout", binding_routing_key="x")
    second = await _consume(binder, destination, "g", exchange_type="fanout")
    producer = await _producer(binder, destination, exchange_type="fanout", routing_key="zzz")
    for n in range(3):
        await producer.publish(_json({"n": n}))
    for collector in (first, second):
        await collector.wait_for(3)
        assert [m.json()["n"] for m in collector.messages] == [0, 1, 2]


async def test_headers_exchange_matches_all_or_any(binder: RabbitBinder) -> None:
    destination = fresh("headers")
    all_match = await _consume(
        binder,
        destination,
        exchange_type="headers",
        binding_arguments={"x-match": "all", "region": "eu", "tier": "gold"},
    )
    any_match = await _consume(
        binder,
        destination,
        exchange_type="headers",
        binding_arguments={"x-match": "any", "region": "eu", "tier": "gold"},
    )
    producer = await _producer(binder, destination, exchange_type="headers")
    cases = [
        {"region": "eu", "tier": "gold"},
        {"region": "eu", "tier": "silver"},
        {"region": "us", "tier": "gold"},
        {"region": "us", "tier": "silver"},
    ]
    for n, headers in enumerate(cases):
        await producer.publish(_json({"n": n}, headers=headers))
    await any_match.wait_for(3)
    await all_match.wait_for(1)
    await producer.publish(_json({"n": 9}, headers={"region": "eu", "tier": "gold"}))
    await all_match.wait_for(2)
    await any_match.wait_for(4)
    assert [m.json()["n"] for m in all_match.messages] == [0, 9]
    assert [m.json()["n"] for m in any_match.messages] == [0, 1, 2, 9]


async def test_default_exchange_publishes_to_a_queue_by_name(binder: RabbitBinder) -> None:
    queue = fresh("jobs")
    received = await _consume(binder, queue, "workers", default_exchange=True)
    producer = await _producer(binder, queue, default_exchange=True)
    await producer.publish(_json({"job": 1}))
    [got] = await received.wait_for(1)
    assert got.json() == {"job": 1}


# -- groups, durability, queue arguments ----------------------------------------------


async def test_required_groups_keep_messages_until_the_group_consumes(
    binder: RabbitBinder,
) -> None:
    destination, group = fresh("required"), fresh("g")
    producer = await binder.bind_producer(
        ProducerSpec("out", destination, required_groups=(group,), options=producer_options())
    )
    for n in range(3):
        await producer.publish(_json({"n": n}))
    received = await _consume(binder, destination, group)
    await received.wait_for(3)
    assert [m.json()["n"] for m in received.messages] == [0, 1, 2]


async def test_max_length_overflow_is_dead_lettered(binder: RabbitBinder) -> None:
    destination, group = fresh("maxlen"), fresh("g")
    producer = await binder.bind_producer(
        ProducerSpec(
            "out", destination, required_groups=(group,), options=producer_options(max_length=2)
        )
    )
    for n in range(5):
        await producer.publish(_json({"n": n}))
    dropped = await read_queue(binder, f"{destination}.{group}.dlq", 3)
    assert [m.json()["n"] for m in dropped] == [0, 1, 2]
    kept = await _consume(binder, destination, group, max_length=2)
    await kept.wait_for(2)
    assert [m.json()["n"] for m in kept.messages] == [3, 4]


async def test_quorum_queue_redelivers_with_delivery_count(binder: RabbitBinder) -> None:
    destination, group = fresh("quorum"), fresh("g")

    def fail_twice(message: Message) -> bool:
        return message.delivery_attempt <= 2

    received = Collector(fail=fail_twice)
    await bind(
        binder,
        ConsumerSpec("in", destination, group, options=consumer_options(queue_type="quorum")),
        received,
    )
    producer = await _producer(binder, destination, queue_type="quorum")
    await producer.publish(_json({"n": 1}))
    [got] = await received.wait_for(1)
    assert [m.delivery_attempt for m in received.attempts] == [1, 2, 3]
    assert got.json() == {"n": 1}
    # Its DLQ is a quorum queue too: an equivalent declaration is accepted.
    await binder._publisher.call(
        lambda: binder._publisher._admin.queue_declare(
            f"{destination}.{group}.dlq",
            durable=True,
            auto_delete=False,
            arguments={"x-queue-type": "quorum"},
        )
    )


async def test_pre_existing_topology_is_used_as_is_with_declare_false(
    binder: RabbitBinder,
) -> None:
    import kombu

    destination, group = fresh("existing"), "legacy"
    queue_name = f"{destination}.{group}"
    delete_later(exchanges=(destination,), queues=(queue_name,))
    with kombu.Connection("amqp://guest:guest@127.0.0.1:5672//") as conn:
        channel = conn.channel()
        exchange = kombu.Exchange(destination, "direct", durable=False)
        queue = kombu.Queue(queue_name, exchange, routing_key="only", durable=False)
        queue(channel).declare()
    received = await _consume(binder, destination, group, declare=False)
    anonymous = await _consume(
        binder, destination, declare=False, exchange_type="direct", binding_routing_key="only"
    )
    producer = await _producer(
        binder, destination, declare=False, exchange_type="direct", routing_key="only"
    )
    await producer.publish(_json({"n": 1}))
    [got] = await received.wait_for(1)
    assert got.json() == {"n": 1}
    [copy] = await anonymous.wait_for(1)
    assert copy.json() == {"n": 1}


# -- partitions -----------------------------------------------------------------------


async def test_partitions_route_to_instance_queues(binder: RabbitBinder) -> None:
    destination, group = fresh("parts"), fresh("g")
    instances = [Collector(), Collector()]
    for index, collector in enumerate(instances):
        await bind(
            binder,
            ConsumerSpec(
                "in",
                destination,
                group,
                instance_index=index,
                instance_count=2,
                options=consumer_options(),
            ),
            collector,
        )
    producer = await binder.bind_producer(
        ProducerSpec("out", destination, partition_count=2, options=producer_options())
    )
    for n in range(10):
        message = _json({"n": n}, key=f"k{n}")
        message.partition = n % 2
        await producer.publish(message)
    for index, collector in enumerate(instances):
        await collector.wait_for(5)
        assert [m.json()["n"] for m in collector.messages] == list(range(index, 10, 2))
        assert {m.partition for m in collector.messages} == {index}


# -- dead letters ---------------------------------------------------------------------


async def test_dead_letter_carries_spring_and_failure_headers(binder: RabbitBinder) -> None:
    """Through the runtime: retries, then the dead letter with the failure headers and
    the exchange and routing key the message arrived with."""
    destination, group = fresh("dead"), fresh("g")
    app = App("dead")
    attempts: list[int] = []

    @app.consumer(destination, group=group)
    def reject(payload: dict, message: Message) -> None:
        attempts.append(message.delivery_attempt)
        raise ValueError(f"no stock for item {payload['id']}")

    async with run_on(binder, app, {"reject-in-0": {"max_attempts": 3, "backoff_initial": 0.01}}):
        producer = await _producer(binder, destination, routing_key="orders.eu")
        sent = _json({"id": 42}, headers={"tenant": "acme"}, key="c-7")
        await producer.publish(sent)
        [dead] = await read_queue(binder, f"{destination}.{group}.dlq", 1)
    assert attempts == [1, 2, 3]
    assert dead.json() == {"id": 42}
    assert dead.content_type == "application/json"
    assert dead.key == "c-7"
    assert dead.message_id == sent.message_id
    headers = dead.headers
    assert headers["tenant"] == "acme"
    assert headers["x-exception-message"] == "no stock for item 42"
    assert "ValueError: no stock for item 42" in headers["x-exception-stacktrace"]
    assert headers["x-exception-type"] == "builtins.ValueError"
    assert headers["x-original-exchange"] == destination
    assert headers["x-original-routingKey"] == "orders.eu"
    assert headers["x-original-destination"] == destination
    assert headers["x-original-group"] == group
    assert headers["x-delivery-attempts"] == "3"


async def test_dead_letter_to_a_named_queue(binder: RabbitBinder) -> None:
    destination, group, dlq = fresh("deadnamed"), fresh("g"), fresh("parking")
    app = App("deadnamed")

    @app.consumer(destination, group=group)
    def reject(payload: dict) -> None:
        raise KeyError("k")

    async with run_on(binder, app, {"reject-in-0": {"dead_letter": dlq, "max_attempts": 1}}):
        producer = await _producer(binder, destination)
        await producer.publish(_json({"id": 1}))
        [dead] = await read_queue(binder, dlq, 1)
    assert dead.json() == {"id": 1}
    assert dead.headers["x-exception-message"] == "'k'"


def test_conventional_dead_letter_destination_is_the_dlq_queue() -> None:
    binder = RabbitBinder("names", validate_settings({"url": "amqp://h//"}))
    assert binder.dead_letter_destination("orders", "billing") == "orders.billing.dlq"
    assert binder.dead_letter_destination("orders", None) == "orders.anonymous.dlq"


async def test_dead_letters_of_messages_with_one_id_do_not_collide(binder: RabbitBinder) -> None:
    """Each dead letter carries the origin of its own delivery, even when two deliveries
    share a message id (a producer retrying, a message published twice)."""
    destination, group = fresh("sameid"), fresh("g")
    sink = RecordingSink()
    binding = await binder.bind_consumer(
        ConsumerSpec(
            "in",
            destination,
            group,
            dead_letter=binder.dead_letter_destination(destination, group),
            options=consumer_options(),
        ),
        sink,
    )
    producer = await _producer(binder, destination, routing_key={"header": "rk"})
    first = _json({"n": 1}, headers={"rk": "first.key"})
    second = first.copy(headers={"rk": "second.key"})  # the same message id
    second.payload = json.dumps({"n": 2}).encode()
    await producer.publish(first)
    await producer.publish(second)
    await wait_until(lambda: len(sink.deliveries) == 2, 10.0, "both deliveries")
    for delivery in reversed(sink.deliveries):  # the later one first
        failure = Failure("builtins.ValueError", "no", "trace", 1, destination, group)
        await binding.dead_letter(delivery, failure)
        delivery.ack()
    dead = await read_queue(binder, f"{destination}.{group}.dlq", 2)
    assert {m.message_id for m in dead} == {first.message_id}
    origins = {m.json()["n"]: m.headers["x-original-routingKey"] for m in dead}
    assert origins == {1: "first.key", 2: "second.key"}
    await binding.close()


# -- prefetch and acknowledgements ------------------------------------------------------


async def test_core_prefetch_is_the_basic_qos(binder: RabbitBinder) -> None:
    destination, group = fresh("qos"), fresh("g")
    sink = RecordingSink()
    await binder.bind_consumer(
        ConsumerSpec("in", destination, group, prefetch=5, options=consumer_options()), sink
    )
    producer = await _producer(binder, destination)
    for n in range(20):
        await producer.publish(_json({"n": n}))
    await wait_until(lambda: len(sink.deliveries) >= 5, 10.0, "the first deliveries")
    # 15 ready, 5 delivered and unacked: RabbitMQ holds the rest back (basic.qos 5).
    await wait_until_ready(binder, f"{destination}.{group}", 15)
    assert len(sink.deliveries) == 5
    assert [d.message.json()["n"] for d in sink.deliveries] == [0, 1, 2, 3, 4]
    for delivery in sink.deliveries:
        delivery.ack()
    await wait_until(lambda: len(sink.deliveries) == 10, 10.0, "the next 5")


async def test_acks_in_any_order_settle_exactly_what_was_acked(
    binder: RabbitBinder, caplog: pytest.LogCaptureFixture
) -> None:
    """Acks settled out of order, with rejects among them (coalesced into multiple acks
    where that is safe): every acked message is gone, every rejected one comes back,
    and the channel never sees an unknown delivery tag."""
    destination, group = fresh("acks"), fresh("g")
    caplog.set_level(logging.WARNING, logger="binders")
    sink = RecordingSink()
    binding = await binder.bind_consumer(
        ConsumerSpec("in", destination, group, prefetch=64, options=consumer_options()), sink
    )
    producer = await _producer(binder, destination)
    count = 60
    for n in range(count):
        await producer.publish(_json({"n": n}))
    await wait_until(lambda: len(sink.deliveries) == count, 10.0, f"{count} deliveries")
    first = list(sink.deliveries)
    rejected = {7, 8, 30, 59}
    order = list(range(count))
    random.Random(1).shuffle(order)
    link = binder._consumer_link
    assert link is not None
    assert link._io is not None  # plain TCP: the buffered socket I/O is in use
    for chunk in (order[:20], order[20:45], order[45:]):
        for index in sorted(chunk, key=lambda i: (i % 3, i)):  # runs with gaps
            delivery = first[index]
            if delivery.message.json()["n"] in rejected:
                delivery.nack()
            else:
                delivery.ack()
        # one batch per I/O thread turn at least: the next chunk comes separately
        await wait_until(lambda: not link._commands, 10.0, "the I/O thread to take the acks")
    await wait_until(
        lambda: len(sink.deliveries) == count + len(rejected), 10.0, "the rejected ones again"
    )
    again = sink.deliveries[count:]
    assert sorted(d.message.json()["n"] for d in again) == sorted(rejected)
    assert all(d.message.delivery_attempt == 2 for d in again)
    for delivery in again:
        delivery.ack()
    await binding.close()  # the acks go out before the channel closes
    assert await ready_count(binder, f"{destination}.{group}") == 0  # nothing left unacked
    assert isinstance(first[0], RabbitDelivery)
    assert not [r for r in caplog.records if "channel error" in r.getMessage()]
    assert link.reconnects == 0


# -- connection, secrets --------------------------------------------------------------


async def test_failover_uses_the_next_url() -> None:
    binder = await make_binder(
        url=["amqp://guest:guest@127.0.0.1:1//", "amqp://guest:guest@127.0.0.1:5672//"]
    )
    try:
        destination = fresh("failover")
        received = await _consume(binder, destination)
        producer = await _producer(binder, destination)
        await producer.publish(_json({"n": 1}))
        await received.wait_for(1)
    finally:
        await close_consumers()
        await binder.close()


async def test_unreachable_broker_error_is_one_sentence_without_the_password() -> None:
    binder = RabbitBinder(
        "secret",
        validate_settings(
            {"url": "amqp://guest:hunter2-secret@127.0.0.1:1//", "connect_timeout": 2.0}
        ),
    )
    with pytest.raises(LinkError) as caught:
        await binder.start()
    assert str(caught.value) == "RabbitMQ is unreachable at 127.0.0.1:1 (connection refused)"
    assert not isinstance(caught.value, AccessRefused)  # worth retrying
    assert "hunter2-secret" not in repr(binder)
    await binder.close()


async def test_publish_to_missing_exchange_fails_and_channel_recovers(
    binder: RabbitBinder,
) -> None:
    missing = fresh("missing")
    bad = await _producer(binder, missing, declare=False)
    with pytest.raises(PublishFailed) as caught:
        await bad.publish(_json({"n": 1}))
    assert (
        str(caught.value) == f"RabbitMQ refused basic.publish: no exchange '{missing}' in vhost '/'"
    )
    destination = fresh("after")
    received = await _consume(binder, destination)
    good = await _producer(binder, destination)
    await good.publish(_json({"n": 2}))
    [got] = await received.wait_for(1)
    assert got.json() == {"n": 2}


async def test_consuming_a_missing_queue_fails_at_bind_time_in_one_sentence(
    binder: RabbitBinder,
) -> None:
    """``declare: false`` and no such queue: the bind fails, saying what RabbitMQ
    refused, and the binder goes on working."""
    missing, group = fresh("missing"), fresh("g")
    with pytest.raises(LinkError) as caught:
        await _consume(binder, missing, group, declare=False)
    assert str(caught.value) == (
        f"RabbitMQ refused basic.consume: no queue '{missing}.{group}' in vhost '/'"
    )
    destination = fresh("after")
    received = await _consume(binder, destination, group)
    await (await _producer(binder, destination)).publish(_json({"n": 1}))
    [got] = await received.wait_for(1)
    assert got.json() == {"n": 1}
