"""The plain client implementations of the pipeline benchmark: aiokafka, aio-pika,
paho-mqtt and a plain asyncio loop, with the same guarantees as eventbinder."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from _pipeline_common import (
    KAFKA,
    KAFKA_CONSUMER,
    KAFKA_PRODUCER,
    MQTT_GROUP_SESSION_EXPIRY,
    MQTT_HOST,
    MQTT_PORT,
    RABBIT_URL,
    Case,
    InFlight,
    Tally,
    drive,
    encode,
    failing,
    payload,
)

# ------------------------------------------------------------------ plain: aiokafka


async def run_plain_kafka(case: Case) -> tuple[float, Tally]:
    """aiokafka: batch-wise relay (send all, await the acks, commit), 1 partition."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    source, sink_topic = case.names
    tally = Tally(case.count)
    producer = AIOKafkaProducer(bootstrap_servers=KAFKA, **KAFKA_PRODUCER)

    def group_consumer(topic: str, group: str) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            topic,
            bootstrap_servers=KAFKA,
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            **KAFKA_CONSUMER,
        )

    relay_in, sink_in = group_consumer(source, "fn"), group_consumer(sink_topic, "sink")
    await producer.start()
    await relay_in.start()
    await sink_in.start()
    stopping = asyncio.Event()

    async def assigned(consumer: AIOKafkaConsumer) -> None:
        while not consumer.assignment():
            await asyncio.sleep(0.01)
        for tp in consumer.assignment():
            await consumer.position(tp)

    def offsets(batch: dict[TopicPartition, list[Any]]) -> dict[TopicPartition, int]:
        return {tp: records[-1].offset + 1 for tp, records in batch.items() if records}

    async def relay() -> None:
        while not stopping.is_set():
            batch = await relay_in.getmany(timeout_ms=100)
            if not batch:
                continue
            acks = []
            for records in batch.values():
                for record in records:
                    order = json.loads(record.value)
                    acks.append(await producer.send(sink_topic, encode(order)))
            await asyncio.gather(*acks)
            await relay_in.commit(offsets(batch))

    async def sink() -> None:
        while not stopping.is_set():
            batch = await sink_in.getmany(timeout_ms=100)
            if not batch:
                continue
            for records in batch.values():
                for record in records:
                    tally.add(json.loads(record.value)["id"])
            await sink_in.commit(offsets(batch))

    acks: set[asyncio.Future[Any]] = set()

    def acked(future: asyncio.Future[Any]) -> None:
        acks.discard(future)
        if not future.cancelled() and future.exception() is not None:
            tally.fail(future.exception())  # type: ignore[arg-type]

    async def publish(i: int) -> None:
        future = await producer.send(source, encode(payload(i)))
        acks.add(future)
        future.add_done_callback(acked)

    try:
        await asyncio.wait_for(asyncio.gather(assigned(relay_in), assigned(sink_in)), 60)
        stages = [failing(tally, relay()), failing(tally, sink())]
        elapsed = await drive(case, tally, publish)
        stopping.set()
        await asyncio.gather(*stages)
        return elapsed, tally
    finally:
        stopping.set()
        for client in (relay_in, sink_in, producer):
            with contextlib.suppress(Exception):
                await client.stop()


# ------------------------------------------------------------------ plain: aio-pika


async def run_plain_rabbit(case: Case) -> tuple[float, Tally]:
    """aio-pika: persistent messages, pipelined confirms, ack after the output's confirm."""
    import aio_pika
    from aio_pika.abc import AbstractIncomingMessage

    source, sink_topic = case.names
    tally = Tally(case.count)
    connection = await aio_pika.connect(RABBIT_URL)
    try:
        producer_channel = await connection.channel(publisher_confirms=True)
        relay_channel = await connection.channel(publisher_confirms=True)
        sink_channel = await connection.channel()
        await relay_channel.set_qos(prefetch_count=case.rabbit_prefetch)
        await sink_channel.set_qos(prefetch_count=case.rabbit_prefetch)
        topic = aio_pika.ExchangeType.TOPIC
        source_exchange = await producer_channel.declare_exchange(source, topic, durable=True)
        out_exchange = await relay_channel.declare_exchange(sink_topic, topic, durable=True)
        relay_queue = await relay_channel.declare_queue(f"{source}.fn", durable=True)
        await relay_queue.bind(source, "#")
        sink_queue = await sink_channel.declare_queue(f"{sink_topic}.sink", durable=True)
        await sink_queue.bind(sink_topic, "#")

        def message(obj: Any) -> aio_pika.Message:
            return aio_pika.Message(
                encode(obj),
                content_type="application/json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            )

        async def relay(incoming: AbstractIncomingMessage) -> None:
            # aio-pika runs each delivery in a task of its own: many confirms in flight.
            try:
                order = json.loads(incoming.body)
                await out_exchange.publish(message(order), routing_key=sink_topic)
                await incoming.ack()
            except Exception as exc:
                tally.fail(exc)

        async def sink(incoming: AbstractIncomingMessage) -> None:
            try:
                tally.add(json.loads(incoming.body)["id"])
                await incoming.ack()
            except Exception as exc:
                tally.fail(exc)

        await relay_queue.consume(relay)
        await sink_queue.consume(sink)
        inflight = InFlight(tally)

        async def publish(i: int) -> None:
            inflight.add(source_exchange.publish(message(payload(i)), routing_key=source))

        elapsed = await drive(case, tally, publish)
        await inflight.drain()
        return elapsed, tally
    finally:
        await connection.close()


# ----------------------------------------------------------------- plain: paho-mqtt


async def run_plain_mqtt(case: Case) -> tuple[float, Tally]:
    """paho-mqtt, MQTT 5, QoS 1: three clients driven by the asyncio loop.

    paho's external-loop API (as eventbinder's binder uses it, and about twice as fast
    here as paho's own network threads): each socket is registered with the loop,
    ``loop_read`` when readable, ``loop_write`` while paho has bytes to send, and
    ``loop_misc`` every second for keepalive.
    """
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    loop = asyncio.get_running_loop()
    source, sink_topic = case.names
    tally = Tally(case.count)
    clients: list[tuple[Any, bool, asyncio.Future[None]]] = []
    timers: list[asyncio.Task[None]] = []

    async def keepalive(client: Any) -> None:
        while client.loop_misc() == mqtt.MQTT_ERR_SUCCESS:
            await asyncio.sleep(1)

    async def start_client(name: str, *, group: bool) -> Any:
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"bench-{name}-{case.tag}",
            protocol=mqtt.MQTTv5,
            manual_ack=group,
        )
        client.max_inflight_messages_set(case.mqtt_inflight)
        client.max_queued_messages_set(0)
        client.on_socket_open = lambda c, _u, sock: loop.add_reader(sock, c.loop_read)
        client.on_socket_close = lambda _c, _u, sock: loop.remove_reader(sock)
        client.on_socket_register_write = lambda c, _u, sock: loop.add_writer(sock, c.loop_write)
        client.on_socket_unregister_write = lambda _c, _u, sock: loop.remove_writer(sock)
        connected, gone = loop.create_future(), loop.create_future()
        client.on_connect = lambda *_: connected.done() or connected.set_result(None)
        client.on_disconnect = lambda *_: gone.done() or gone.set_result(None)
        properties = Properties(PacketTypes.CONNECT)
        if group:  # like eventbinder's group consumers: a persistent session
            properties.SessionExpiryInterval = MQTT_GROUP_SESSION_EXPIRY
            properties.ReceiveMaximum = case.mqtt_receive_maximum
        client.connect(MQTT_HOST, MQTT_PORT, 60, clean_start=not group, properties=properties)
        clients.append((client, group, gone))
        timers.append(asyncio.ensure_future(keepalive(client)))
        await asyncio.wait_for(connected, 10)
        return client

    async def subscribe(client: Any, topic_filter: str) -> None:
        subscribed = loop.create_future()
        client.on_subscribe = lambda *_: subscribed.done() or subscribed.set_result(None)
        client.subscribe(topic_filter, 1)
        await asyncio.wait_for(subscribed, 10)

    try:
        relay = await start_client("fn", group=True)
        outputs: dict[int, int] = {}  # mid of an output -> mid of its input

        def on_relay(client: Any, _userdata: Any, message: Any) -> None:
            try:
                order = json.loads(message.payload)
                info = client.publish(sink_topic, encode(order), 1)
                outputs[info.mid] = message.mid
            except Exception as exc:
                tally.fail(exc)

        def on_output_acked(client: Any, _u: Any, mid: int, _reason: Any, _p: Any) -> None:
            source_mid = outputs.pop(mid, None)
            if source_mid is not None:  # the output's PUBACK arrived: ack the input
                client.ack(source_mid, 1)

        relay.on_message = on_relay
        relay.on_publish = on_output_acked
        await subscribe(relay, f"$share/fn/{source}")

        sink = await start_client("sink", group=True)

        def on_sink(client: Any, _userdata: Any, message: Any) -> None:
            try:
                tally.add(json.loads(message.payload)["id"])
                client.ack(message.mid, 1)
            except Exception as exc:
                tally.fail(exc)

        sink.on_message = on_sink
        await subscribe(sink, f"$share/sink/{sink_topic}")
        producer = await start_client("producer", group=False)

        async def publish(i: int) -> None:
            producer.publish(source, encode(payload(i)), 1)

        return await drive(case, tally, publish), tally
    finally:
        for client, group, gone in clients:
            end_session = Properties(PacketTypes.DISCONNECT)
            end_session.SessionExpiryInterval = 0  # remove the group sessions again
            client.disconnect(properties=end_session if group else None)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(gone, 5)
        for timer in timers:
            timer.cancel()


# -------------------------------------------------------------------- plain: asyncio


async def run_plain_memory(case: Case) -> tuple[float, Tally]:
    """Two asyncio.Queue hops with the same JSON decode/encode as a broker pipeline."""
    tally = Tally(case.count)
    inbox: asyncio.Queue[bytes] = asyncio.Queue()
    outbox: asyncio.Queue[bytes] = asyncio.Queue()

    async def relay() -> None:
        while True:
            order = json.loads(await inbox.get())
            outbox.put_nowait(encode(order))

    async def sink() -> None:
        while True:
            tally.add(json.loads(await outbox.get())["id"])

    async def publish(i: int) -> None:
        inbox.put_nowait(encode(payload(i)))

    stages = [failing(tally, relay()), failing(tally, sink())]
    try:
        return await drive(case, tally, publish), tally
    finally:
        for stage in stages:
            stage.cancel()
        await asyncio.gather(*stages, return_exceptions=True)
