"""The client libraries' internals the binders rely on, and the releases they were tested on.

Some binder fast paths reach into their client library: the RabbitMQ link reads and
writes through py-amqp's transport, the MQTT binder replaces paho's socket reads and its
PUBLISH properties decoder, the Kafka binder asks aiokafka's clients for metadata and
sequence numbers.  Where a name is missing, most of them quietly fall back to the
library's own, slower code; the others break.  So pyproject.toml bounds each of these
libraries to the releases tested (its ``[project.optional-dependencies]``), and this
module fails, naming the library, its version and what is missing, when an installed
release is outside that range or lacks a name listed here.

After an upgrade fails here: read the new release's code behind each name reported, fix
the binders module named with it, update the list below, then widen the range in
pyproject.toml.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import importlib.util
import inspect
import select
import socket
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = REPO / "pyproject.toml"


@dataclass(frozen=True)
class Internal:
    """One thing of a client library that a binders module relies on.

    ``target`` names an object built by the library's probe (a module, a class, or an
    instance made the way the binder makes it); ``name`` is an attribute path below it
    (dots for nested attributes), or None when building ``target`` is the check.
    """

    target: str
    name: str | None
    used_by: str

    def __str__(self) -> str:
        where = self.target if self.name is None else f"{self.target}.{self.name}"
        return f"{where} (used by {self.used_by})"


# One list per library (its distribution name), each entry with the binders module that
# uses it: private names (leading underscore) and undocumented internals alike.
INTERNALS: dict[str, list[Internal]] = {
    "paho-mqtt": [
        Internal("paho.mqtt._packet", "Properties", "binders.mqtt.fastprops"),
        Internal("Properties(PUBLISH)", "types", "binders.mqtt.fastprops"),
        Internal("Properties(PUBLISH)", "names", "binders.mqtt.fastprops"),
        Internal("Properties(PUBLISH)", "properties", "binders.mqtt.fastprops"),
        Internal("Properties(PUBLISH)", "packetType", "binders.mqtt.fastprops"),
        Internal("paho.mqtt.client.Client", "_sock_recv", "binders.mqtt.buffered_client"),
        Internal("paho.mqtt.client.Client", "_sock_send", "binders.mqtt.buffered_client"),
        Internal("Client()", "_sock", "binders.mqtt.buffered_client"),
        Internal("Client()", "_max_inflight_messages", "binders.mqtt.connection"),
    ],
    "amqp": [
        Internal("amqp.transport.TCPTransport", "read_frame", "binders.rabbit.link"),
        Internal("TCPTransport(connected)", "_quick_recv", "binders.rabbit.socket_io"),
        Internal("TCPTransport(connected)", "_read_buffer", "binders.rabbit.socket_io"),
        Internal("TCPTransport(connected)", "_write", "binders.rabbit.socket_io"),
        Internal("TCPTransport(connected)", "sock", "binders.rabbit.socket_io"),
        Internal("amqp.Connection", "transport", "binders.rabbit.link"),
        Internal("amqp.Connection", "on_inbound_frame", "binders.rabbit.link"),
        Internal("amqp.Connection", "sock", "binders.rabbit.link"),
        Internal("Channel(connection, 1)", "_callbacks", "binders.rabbit.link"),
        Internal("Channel(connection, 1)", "events", "binders.rabbit.link"),
        Internal("Channel(connection, 1)", "send_method", "binders.rabbit.publishing"),
        Internal("amqp.spec", "Channel.Close", "binders.rabbit.link"),
        Internal("amqp.spec", "Basic.Publish", "binders.rabbit.link"),
    ],
    "kombu": [
        # The link drives the py-amqp connection kombu hands out, not kombu's API.
        Internal("kombu.Connection(amqp://)", "connection", "binders.rabbit.link"),
        Internal("kombu.Connection(amqp://)", "transport.Connection", "binders.rabbit.link"),
    ],
    "aiokafka": [
        Internal("AIOKafkaAdminClient()", "_send_request", "binders.kafka.admin"),
        Internal(
            "MetadataRequest([topic], allow_auto_topic_creation=False)",
            None,
            "binders.kafka.admin",
        ),
        Internal("AIOKafkaConsumer()", "_client.force_metadata_update", "binders.kafka.consumer"),
        Internal("AIOKafkaProducer()", "client.force_metadata_update", "binders.kafka.producer"),
        Internal(
            "AIOKafkaProducer()", "client.cluster.partitions_for_topic", "binders.kafka.producer"
        ),
        Internal(
            "AIOKafkaProducer()",
            "client.cluster.available_partitions_for_topic",
            "binders.kafka.producer",
        ),
        Internal(
            "AIOKafkaProducer(enable_idempotence=True)",
            "_txn_manager._sequence_numbers",
            "binders.kafka.producer",
        ),
        Internal(
            "AIOKafkaProducer(enable_idempotence=True)",
            "_txn_manager.transactional_id",
            "binders.kafka.producer",
        ),
        Internal(
            "aiokafka.record.default_records.DefaultRecordBatchBuilder",
            "estimate_size_in_bytes",
            "binders.kafka.producer",
        ),
        Internal("aiokafka.conn", "create_conn", "binders.kafka.errors"),
        Internal("MetadataRequest([])", None, "binders.kafka.errors"),
    ],
}

LIBRARIES = sorted(INTERNALS)

# --------------------------------------------------------------------------- probes
# target -> a function building it; cleanups go on the exit stack.
Builders = dict[str, Callable[[contextlib.AsyncExitStack], Any]]


@contextlib.contextmanager
def listening_socket() -> Iterator[socket.socket]:
    """A TCP server socket on a free loopback port (connections wait in its backlog)."""
    server = socket.create_server(("127.0.0.1", 0))
    try:
        yield server
    finally:
        server.close()


def connected_transport(stack: contextlib.AsyncExitStack) -> Any:
    """py-amqp's plain TCP transport, connected (to a socket that only listens)."""
    from amqp.transport import TCPTransport

    server = stack.enter_context(listening_socket())
    transport = TCPTransport(f"127.0.0.1:{server.getsockname()[1]}", connect_timeout=5)
    transport.connect()  # sends the AMQP protocol header, which waits in the socket
    stack.callback(transport.close)
    return transport


def paho_builders() -> Builders:
    def client(_stack: contextlib.AsyncExitStack) -> Any:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        return mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)

    def properties(_stack: contextlib.AsyncExitStack) -> Any:
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        return Properties(PacketTypes.PUBLISH)

    return {
        "paho.mqtt._packet": lambda _s: importlib.import_module("paho.mqtt._packet"),
        "paho.mqtt.client.Client": lambda _s: importlib.import_module("paho.mqtt.client").Client,
        "Client()": client,
        "Properties(PUBLISH)": properties,
    }


def amqp_builders() -> Builders:
    import amqp

    def channel(stack: contextlib.AsyncExitStack) -> Any:
        connection = amqp.Connection(host="127.0.0.1:1")  # never connected
        stack.callback(connection.collect)
        return amqp.Channel(connection, 1)

    return {
        "amqp.transport.TCPTransport": lambda _s: (
            importlib.import_module("amqp.transport").TCPTransport
        ),
        "TCPTransport(connected)": connected_transport,
        "amqp.Connection": lambda _s: amqp.Connection,
        "Channel(connection, 1)": channel,
        "amqp.spec": lambda _s: importlib.import_module("amqp.spec"),
    }


def kombu_builders() -> Builders:
    def connection(stack: contextlib.AsyncExitStack) -> Any:
        import kombu

        conn = kombu.Connection("amqp://guest:guest@127.0.0.1:1//")  # never connected
        stack.callback(conn.release)
        return conn

    return {"kombu.Connection(amqp://)": connection}


def aiokafka_builders() -> Builders:
    # The clients are only built (they connect in start()); built in the running loop.
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient

    servers = "127.0.0.1:1"

    def admin(stack: contextlib.AsyncExitStack) -> Any:
        client = AIOKafkaAdminClient(bootstrap_servers=servers)
        stack.push_async_callback(client.close)
        return client

    def consumer(stack: contextlib.AsyncExitStack) -> Any:
        client = AIOKafkaConsumer(bootstrap_servers=servers, enable_auto_commit=False)
        stack.push_async_callback(client.stop)
        return client

    def producer(stack: contextlib.AsyncExitStack, **kwargs: Any) -> Any:
        client = AIOKafkaProducer(bootstrap_servers=servers, **kwargs)
        stack.push_async_callback(client.stop)
        return client

    def metadata_request(_stack: contextlib.AsyncExitStack) -> Any:
        from aiokafka.protocol.metadata import MetadataRequest

        return MetadataRequest(["eventbinder"], allow_auto_topic_creation=False)

    def all_topics_request(_stack: contextlib.AsyncExitStack) -> Any:
        from aiokafka.protocol.metadata import MetadataRequest

        return MetadataRequest([])

    return {
        "AIOKafkaAdminClient()": admin,
        "MetadataRequest([])": all_topics_request,
        "aiokafka.conn": lambda _s: importlib.import_module("aiokafka.conn"),
        "MetadataRequest([topic], allow_auto_topic_creation=False)": metadata_request,
        "AIOKafkaConsumer()": consumer,
        "AIOKafkaProducer()": producer,
        "AIOKafkaProducer(enable_idempotence=True)": lambda s: producer(s, enable_idempotence=True),
        "aiokafka.record.default_records.DefaultRecordBatchBuilder": lambda _s: (
            importlib.import_module("aiokafka.record.default_records").DefaultRecordBatchBuilder
        ),
    }


BUILDERS: dict[str, Callable[[], Builders]] = {
    "paho-mqtt": paho_builders,
    "amqp": amqp_builders,
    "kombu": kombu_builders,
    "aiokafka": aiokafka_builders,
}

# -------------------------------------------------------------------------- helpers


def unread(sock: socket.socket) -> bytes:
    """What waits in a non-blocking socket, left there."""
    try:
        return sock.recv(65_536, socket.MSG_PEEK)
    except BlockingIOError:
        return b""


def installed_version(library: str) -> Version:
    try:
        return Version(importlib.metadata.version(library))
    except importlib.metadata.PackageNotFoundError:
        pytest.skip(f"{library} is not installed (pip install -e '.[all]')")


def declared_ranges(library: str) -> set[str]:
    """Every version range pyproject.toml's [project] gives ``library``."""
    project = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]
    requirements = list(project.get("dependencies", []))
    for extra in project.get("optional-dependencies", {}).values():
        requirements.extend(extra)
    return {
        str(req.specifier)
        for req in map(Requirement, requirements)
        if canonicalize_name(req.name) == canonicalize_name(library)
    }


def range_in_pyproject(library: str) -> SpecifierSet:
    ranges = declared_ranges(library)
    assert len(ranges) == 1, (
        f"pyproject.toml should give {library} one version range (the tested one) in "
        f"every extra that lists it, found {sorted(ranges) or 'none'}"
    )
    return SpecifierSet(ranges.pop())


def resolve(obj: Any, path: str) -> Any:
    """Follow a dotted attribute path; the last step does not run properties."""
    *parents, last = path.split(".")
    for part in parents:
        obj = getattr(obj, part)
    try:
        return inspect.getattr_static(obj, last)
    except AttributeError:
        owner = getattr(obj, "__name__", None) or f"{type(obj).__name__} object"
        raise AttributeError(f"{owner} has no attribute {last!r}") from None


async def missing_internals(library: str) -> list[str]:
    """The library's listed internals that are not there, each with the reason."""
    builders = BUILDERS[library]()
    missing: list[str] = []
    async with contextlib.AsyncExitStack() as stack:
        built: dict[str, Any] = {}
        for internal in INTERNALS[library]:
            if internal.target not in built:
                try:
                    built[internal.target] = builders[internal.target](stack)
                except Exception as exc:
                    built[internal.target] = exc
            target = built[internal.target]
            if isinstance(target, Exception):
                missing.append(f"{internal}: {type(target).__name__}: {target}")
                continue
            if internal.name is None:
                continue
            try:
                resolve(target, internal.name)
            except AttributeError as exc:
                missing.append(f"{internal}: {exc}")
    return missing


# ---------------------------------------------------------------------------- tests


@pytest.mark.parametrize("library", LIBRARIES)
def test_installed_release_is_in_the_tested_range(library: str) -> None:
    version = installed_version(library)
    tested = range_in_pyproject(library)
    assert any(spec.operator in {"<", "<=", "==", "~=", "==="} for spec in tested), (
        f"pyproject.toml gives {library} no upper bound ({tested}): the binders use its "
        "internals, so it must stop below the next release not tested"
    )
    assert tested.contains(version, prereleases=True), (
        f"{library} {version} is installed, outside the tested range {tested} of "
        f"pyproject.toml. The binders use its internals ({len(INTERNALS[library])} listed in "
        f"{Path(__file__).name}); run the whole test suite on {library} {version}, then "
        "widen the range."
    )


@pytest.mark.parametrize("library", LIBRARIES)
async def test_every_internal_the_binders_use_is_there(library: str) -> None:
    version = installed_version(library)
    missing = await missing_internals(library)
    assert not missing, (
        f"{library} {version} lacks internals the binders rely on (tested range "
        f"{range_in_pyproject(library)} in pyproject.toml); without them a binder falls back to "
        "a slow path or breaks:\n  " + "\n  ".join(missing)
    )


@pytest.mark.parametrize(
    "internal",
    [pytest.param(i, id=f"{lib}:{i.target}.{i.name}") for lib in LIBRARIES for i in INTERNALS[lib]],
)
def test_each_listed_internal_is_still_used(internal: Internal) -> None:
    spec = importlib.util.find_spec(internal.used_by)
    assert spec is not None and spec.origin is not None, f"no module {internal.used_by}"
    source = Path(spec.origin).read_text(encoding="utf-8")
    word = (internal.name or internal.target.partition("(")[0]).rsplit(".", 1)[-1]
    assert word in source, (
        f"{internal.used_by} no longer mentions {word!r}: drop {internal} from "
        f"INTERNALS in {Path(__file__).name}, or name the module that uses it now"
    )


# The fast paths themselves: with the installed releases the binders' own guards take
# them (each would otherwise fall back without a word).


def test_mqtt_reads_go_through_buffered_client_and_fast_properties(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    version = installed_version("paho-mqtt")
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    from binders.mqtt import fastprops
    from binders.mqtt.buffered_client import BufferedClient

    monkeypatch.delenv("EVENTBINDER_MQTT_FAST_PROPERTIES", raising=False)
    assert fastprops.install(), f"paho-mqtt {version}: fastprops.install() found no decoder"

    props = Properties(PacketTypes.PUBLISH)
    props.ContentType = "application/json"
    props.UserProperty = [("k", "v")]
    body = len(b"t").to_bytes(2, "big") + b"t" + props.pack() + b"{}"
    publish = bytes([0x30, len(body)]) + body  # QoS 0 PUBLISH to "t"

    client = BufferedClient(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    received: list[mqtt.MQTTMessage] = []
    client.on_message = lambda _c, _u, msg: received.append(msg)
    ours, broker = socket.socketpair()
    with ours, broker:
        ours.setblocking(False)
        client._sock = ours
        try:
            broker.sendall(publish * 3)
            client.loop_read()  # paho handles one packet per call here
            assert not unread(ours) and client.buffered(), (
                f"paho-mqtt {version} reads its socket without BufferedClient._sock_recv "
                "(it should have taken all three packets with one read)"
            )
            while client.buffered():
                client.loop_read()
        finally:
            client._sock = None
    assert [msg.payload for msg in received] == [b"{}"] * 3
    message = received[0]
    assert type(message.properties) is fastprops.FastPublishProperties, (
        f"paho-mqtt {version} decodes PUBLISH properties without paho.mqtt._packet.Properties"
    )
    assert message.properties.ContentType == "application/json"
    assert message.properties.UserProperty == [("k", "v")]


def test_rabbit_socket_io_serves_py_amqp_reads_and_writes() -> None:
    version = installed_version("amqp")
    from amqp.transport import TCPTransport

    from binders.rabbit.socket_io import SocketIO

    with listening_socket() as server:
        transport = TCPTransport(f"127.0.0.1:{server.getsockname()[1]}", connect_timeout=5)
        transport.connect()
        peer, _ = server.accept()
        with peer, contextlib.closing(transport):
            peer.settimeout(5)
            assert peer.recv(8) == b"AMQP\x00\x00\x09\x01"  # written through _write
            transport.sock.settimeout(2)  # a read that bypassed SocketIO fails, not hangs
            io = SocketIO.install(transport)
            assert io is not None, f"amqp {version}: SocketIO.install() refused the transport"

            heartbeat = b"\x08\x00\x00\x00\x00\x00\x00\xce"  # type 8, channel 0
            peer.sendall(heartbeat * 2)
            for _ in range(2):
                while not io.frame_ready():
                    assert select.select([transport.sock], [], [], 5)[0], "no bytes came"
                    io.fill()  # takes what the socket has: py-amqp must read it from here
                try:
                    frame = transport.read_frame()
                except TimeoutError:
                    pytest.fail(
                        f"amqp {version}: read_frame() waited on the socket instead of "
                        "reading SocketIO's buffer through the transport's _quick_recv"
                    )
                assert frame[:2] == (8, 0)
            assert not io.frame_ready()

            peer.setblocking(False)
            with io.batched():
                transport.write(b"one")
                transport.write(b"two")
                assert not unread(peer), (
                    f"amqp {version}: write() sent at once, not through the transport's _write"
                )
            peer.settimeout(5)
            assert peer.recv(16) == b"onetwo"


def test_rabbit_link_drives_the_py_amqp_connection_kombu_hands_out() -> None:
    installed_version("kombu")
    amqp_version = installed_version("amqp")
    import amqp
    import kombu
    from amqp import spec

    conn = kombu.Connection("amqp://guest:guest@127.0.0.1:1//")
    try:
        assert issubclass(conn.transport.Connection, amqp.Connection), (
            f"kombu {importlib.metadata.version('kombu')}: amqp:// no longer gives "
            "py-amqp's Connection"
        )
    finally:
        conn.release()
    channel = amqp.Channel(amqp.Connection(host="127.0.0.1:1"), 1)
    assert spec.Channel.Close in channel._callbacks, (
        f"amqp {amqp_version}: Channel._callbacks has no Channel.Close handler to wrap"
    )
    # The link adds its confirm callbacks to these sets.
    assert isinstance(channel.events["basic_ack"], set)
    assert isinstance(channel.events["basic_nack"], set)
