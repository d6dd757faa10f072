"""scripts/brokers' three-node Kafka cluster without a broker: the generated
server.properties, the shared cluster id and the storage formats (the Kafka tool
replaced by a fake), the metadata probe against a fake broker, and the command line
(``status kafka-cluster``, ``kafka-cluster-node stop|kill|start N``)."""

from __future__ import annotations

import os
import signal
import socket
import struct
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO / "scripts") not in sys.path:
    sys.path.insert(0, str(REPO / "scripts"))

from brokerctl import cli, common, kafka, kafka_cluster  # noqa: E402


@pytest.fixture(autouse=True)
def environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """cli.main() sets PATH and LC_ALL for the commands it runs: restored after each test."""
    monkeypatch.setenv("PATH", os.environ.get("PATH", ""))
    if "LC_ALL" in os.environ:
        monkeypatch.setenv("LC_ALL", os.environ["LC_ALL"])
    else:
        monkeypatch.delenv("LC_ALL", raising=False)


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> common.Settings:
    monkeypatch.setenv("EVENTBINDER_STATE", str(tmp_path / "state"))
    monkeypatch.setenv("EVENTBINDER_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("EVENTBINDER_BROKER_TIMEOUT", raising=False)
    return common.Settings.from_env()


@pytest.fixture
def cluster(settings: common.Settings) -> kafka_cluster.KafkaCluster:
    return kafka_cluster.KafkaCluster(settings)


def properties(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if "=" in line)
    return {k.strip(): v.strip() for k, v in pairs if not k.lstrip().startswith("#")}


# ------------------------------------------------------------------ configuration
def test_ports_and_the_static_quorum() -> None:
    assert kafka_cluster.PORTS == (9192, 9292, 9392)
    assert kafka_cluster.CONTROLLER_PORTS == (9193, 9293, 9393)
    assert kafka_cluster.VOTERS == "1@127.0.0.1:9193,2@127.0.0.1:9293,3@127.0.0.1:9393"


@pytest.mark.parametrize("index", [1, 2, 3])
def test_server_properties_of_each_node(cluster: kafka_cluster.KafkaCluster, index: int) -> None:
    conf = properties(cluster.config_text(index))
    client, controller = 9092 + 100 * index, 9093 + 100 * index
    assert conf["process.roles"] == "broker,controller"
    assert conf["node.id"] == str(index)
    assert conf["controller.quorum.voters"] == kafka_cluster.VOTERS
    assert conf["listeners"] == (
        f"PLAINTEXT://127.0.0.1:{client},CONTROLLER://127.0.0.1:{controller}"
    )
    assert conf["advertised.listeners"] == f"PLAINTEXT://127.0.0.1:{client}"
    assert conf["log.dirs"] == str(cluster.dir / f"node{index}" / "data")
    assert cluster.dir == cluster.settings.state / "kafka-cluster"
    for key, value in {
        "default.replication.factor": "3",
        "min.insync.replicas": "2",
        "offsets.topic.replication.factor": "3",
        "transaction.state.log.replication.factor": "3",
        "transaction.state.log.min.isr": "2",
        "group.initial.rebalance.delay.ms": "0",
        "group.min.session.timeout.ms": "1000",
    }.items():
        assert conf[key] == value, key
    # The stall the failover test reports is Kafka's own: its default session timeout.
    assert "broker.session.timeout.ms" not in conf


def test_the_nodes_get_a_smaller_heap_and_the_single_brokers_other_options() -> None:
    assert [a for a in kafka_cluster.JVM if a.startswith("-Xmx")] == ["-Xmx384m"]
    others = [a for a in kafka.BROKER_JVM if not a.startswith(("-Xms", "-Xmx"))]
    assert [a for a in kafka_cluster.JVM if not a.startswith(("-Xms", "-Xmx"))] == others


def test_the_jars_are_the_single_brokers(cluster: kafka_cluster.KafkaCluster) -> None:
    assert cluster.lib == kafka.Kafka(cluster.settings).lib


def _formatted(cluster: kafka_cluster.KafkaCluster, index: int, cid: str) -> None:
    data = cluster.node_dir(index) / "data"
    data.mkdir(parents=True, exist_ok=True)
    (data / "meta.properties").write_text(f"node.id={index}\ncluster.id={cid}\nversion=1\n")


def test_one_cluster_id_for_all_nodes(cluster: kafka_cluster.KafkaCluster) -> None:
    cluster.dir.mkdir(parents=True)
    first = cluster.shared_cluster_id()
    assert cluster.shared_cluster_id() == first  # kept in cluster.id
    _formatted(cluster, 2, "AAECAwQFBgcICQoLDA0ODw")
    assert cluster.shared_cluster_id() == "AAECAwQFBgcICQoLDA0ODw"  # the storage wins
    _formatted(cluster, 3, "ZZECAwQFBgcICQoLDA0ODw")
    with pytest.raises(common.BrokerError, match="different clusters"):
        cluster.shared_cluster_id()


def test_configure_formats_each_new_storage_once_with_the_shared_id(
    cluster: kafka_cluster.KafkaCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran: list[list[str]] = []

    def fake_run(argv: list[str], **_: Any) -> int:
        ran.append(argv)
        config = Path(argv[argv.index("--config") + 1])
        index = int(config.parent.name.removeprefix("node"))
        _formatted(cluster, index, argv[argv.index("--cluster-id") + 1])
        return 0

    monkeypatch.setattr(kafka_cluster, "run", fake_run)
    cluster.configure()
    assert len(ran) == 3
    ids = {argv[argv.index("--cluster-id") + 1] for argv in ran}
    assert ids == {(cluster.dir / "cluster.id").read_text().strip()}
    for argv in ran:
        assert argv[argv.index("--feature") + 1] == "share.version=0"
        assert "kafka.tools.StorageTool" in argv and "--ignore-formatted" in argv
    configs = sorted(argv[argv.index("--config") + 1] for argv in ran)
    assert configs == [str(cluster.properties(i)) for i in (1, 2, 3)]
    ran.clear()
    cluster.configure()  # all formatted: the properties are written, nothing formatted
    assert ran == []
    # A node whose storage was deleted is formatted again, into the same cluster.
    (cluster.node_dir(2) / "data" / "meta.properties").unlink()
    cluster.configure()
    assert [argv[argv.index("--cluster-id") + 1] for argv in ran] == list(ids)


# ------------------------------------------------------------------ metadata probe
def metadata_response(correlation: int, brokers: list[tuple[int, str, int, str | None]]) -> bytes:
    body = struct.pack(">iii", correlation, 0, len(brokers))
    for node, host, port, rack in brokers:
        body += struct.pack(">ih", node, len(host)) + host.encode() + struct.pack(">i", port)
        body += (
            struct.pack(">h", -1) if rack is None else struct.pack(">h", len(rack)) + rack.encode()
        )
    body += struct.pack(">h", -1) + struct.pack(">ii", 1, 0)  # cluster id, controller, topics
    return body


@pytest.fixture
def fake_broker() -> Iterator[tuple[int, list[bytes], list[bytes]]]:
    """A loopback server answering each request with the next queued response (none
    queued: it closes the connection); yields (port, requests seen, responses)."""
    requests: list[bytes] = []
    responses: list[bytes] = []
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(2)
                (size,) = struct.unpack(">i", conn.recv(4, socket.MSG_WAITALL))
                requests.append(conn.recv(size, socket.MSG_WAITALL))
                if responses:
                    answer = responses.pop(0)
                    conn.sendall(struct.pack(">i", len(answer)) + answer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1], requests, responses
    finally:
        stop.set()
        thread.join()
        server.close()


def test_the_probe_reads_the_registered_brokers(
    fake_broker: tuple[int, list[bytes], list[bytes]],
) -> None:
    port, requests, responses = fake_broker
    brokers = [(1, "127.0.0.1", 9192, None), (3, "127.0.0.1", 9392, "rack-b")]
    responses.append(metadata_response(1, brokers))
    assert kafka_cluster.metadata_brokers(port) == {1, 3}
    api_key, version, correlation = struct.unpack_from(">hhi", requests[0])
    assert (api_key, version, correlation) == (3, 4, 1)  # Metadata v4
    assert requests[0].endswith(struct.pack(">i?", 0, False))  # no topics, none created


def test_the_probe_says_none_when_the_broker_does_not_answer(
    fake_broker: tuple[int, list[bytes], list[bytes]],
) -> None:
    port, _, responses = fake_broker
    assert kafka_cluster.metadata_brokers(port, timeout=2) is None  # connection closed
    responses.append(metadata_response(99, []))  # not our correlation id
    assert kafka_cluster.metadata_brokers(port, timeout=2) is None
    responses.append(b"\x00\x00")  # too short
    assert kafka_cluster.metadata_brokers(port, timeout=2) is None
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    assert kafka_cluster.metadata_brokers(closed, timeout=2) is None


def test_the_cluster_answers_when_every_node_lists_all_three(
    cluster: kafka_cluster.KafkaCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = {9192: {1, 2, 3}, 9292: {1, 2, 3}, 9392: {1, 2, 3}}
    monkeypatch.setattr(kafka_cluster, "metadata_brokers", lambda port: seen[port])
    assert cluster.answers()
    seen[9292] = {1, 3}  # node 2 not registered (yet), as node 1 and 3 see it
    assert not cluster.answers()
    # Node 3 is down: node 1 rejoined when it and node 2 list each other.
    seen.update({9192: {1, 2}, 9292: {1, 2, 3}, 9392: None})  # type: ignore[dict-item]
    assert cluster.answers({1, 2})
    assert not cluster.answers()


# ------------------------------------------------------------------ command line
@pytest.fixture
def closed(monkeypatch: pytest.MonkeyPatch) -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    monkeypatch.setattr(kafka_cluster, "PORTS", (port, port, port))
    monkeypatch.setattr(kafka_cluster, "CONTROLLER_PORTS", (port, port, port))
    return port


def test_status_and_down_when_down(
    settings: common.Settings, closed: int, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["status", "kafka-cluster"]) == 3
    p = closed
    assert capsys.readouterr().out == (
        f"kafka-cluster: down  127.0.0.1:{p} (down), 127.0.0.1:{p} (down), 127.0.0.1:{p} (down)\n"
    )
    assert cli.main(["down", "kafka-cluster"]) == 0
    assert capsys.readouterr().out == "kafka-cluster: already down\n"


def test_up_is_quick_when_every_node_answers(
    cluster: kafka_cluster.KafkaCluster,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    cluster.write_config()
    monkeypatch.setattr(cluster, "pid", lambda index: 1000 + index)
    monkeypatch.setattr(cluster, "answers", lambda: True)

    def no(*_: Any) -> None:
        raise AssertionError("nothing is fetched or started")

    monkeypatch.setattr(cluster, "fetch", no)
    monkeypatch.setattr(cluster, "start", no)
    cluster.up()
    assert capsys.readouterr().out.startswith("kafka-cluster: already up on 127.0.0.1:9192, ")


def test_up_restarts_the_nodes_that_run_an_older_configuration(
    cluster: kafka_cluster.KafkaCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    cluster.write_config()
    for index in (1, 2, 3):
        _formatted(cluster, index, "AAECAwQFBgcICQoLDA0ODw")
    with cluster.properties(2).open("a") as f:
        f.write("# written by an older scripts/brokers\n")
    calls: list[tuple[str, Any]] = []
    monkeypatch.setattr(cluster, "pid", lambda index: 1000 + index)
    monkeypatch.setattr(cluster, "answers", lambda nodes=None: True)
    monkeypatch.setattr(cluster, "fetch", lambda: None)
    monkeypatch.setattr(cluster, "stop_nodes", lambda pids: calls.append(("stop", pids)))
    monkeypatch.setattr(cluster, "start_nodes", lambda nodes: calls.append(("start", nodes)))
    cluster.up()
    assert calls == [("stop", {2: 1002}), ("start", [2])]
    assert cluster.runs_current_config(2)


@pytest.mark.parametrize(
    ("argv", "code", "said"),
    [
        (["kafka-cluster-node"], 2, "Real message brokers"),
        (["kafka-cluster-node", "kill"], 2, "Real message brokers"),
        (["kafka-cluster-node", "restart", "1"], 2, "Real message brokers"),
        (["kafka-cluster-node", "stop", "one"], 2, "Real message brokers"),
        (["kafka-cluster-node", "start", "4"], 1, "kafka-cluster has nodes 1 to 3, not 4"),
        (["rabbit-cluster-node", "kill", "0"], 1, "rabbit-cluster has nodes 1 to 3, not 0"),
        (["mqtt-node", "kill", "1"], 1, "unknown broker 'kill'"),  # not a cluster
    ],
)
def test_cluster_node_verbs_check_their_arguments(
    argv: list[str], code: int, said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(argv) == code
    assert said in capsys.readouterr().err


@pytest.mark.parametrize(
    ("action", "call"),
    [("stop", ("stop", 2, False)), ("kill", ("stop", 2, True)), ("start", ("start", 2, None))],
)
def test_kafka_cluster_node_stops_kills_and_starts_one_node(
    action: str,
    call: tuple[str, int, bool | None],
    settings: common.Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[tuple[str, int, bool | None]] = []
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(
        kafka_cluster.KafkaCluster,
        "stop_node",
        lambda self, index, *, kill=False: calls.append(("stop", index, kill)),
    )
    monkeypatch.setattr(
        kafka_cluster.KafkaCluster,
        "start_node",
        lambda self, index: calls.append(("start", index, None)),
    )
    assert cli.main(["kafka-cluster-node", action, "2"]) == 0
    assert calls == [call]


def test_kill_is_sigkill_and_stop_is_sigterm(
    cluster: kafka_cluster.KafkaCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[tuple[int, int]] = []
    monkeypatch.setattr(cluster, "pid", lambda index: 4242)
    monkeypatch.setattr(kafka_cluster, "terminate", lambda pid, sig: sent.append((pid, sig)))
    monkeypatch.setattr(kafka_cluster, "wait_exit", lambda pid, seconds: None)
    cluster.stop_node(1, kill=True)
    cluster.stop_node(1)
    assert sent == [(4242, signal.SIGKILL), (4242, signal.SIGTERM)]


@pytest.mark.parametrize(
    ("names", "fetched"), [(["kafka", "kafka-cluster"], 1), (["kafka-cluster"], 0), (["kafka"], 0)]
)
def test_kafka_and_kafka_cluster_fetch_their_shared_jars_once_before_starting(
    names: list[str], fetched: int, settings: common.Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    monkeypatch.setattr(kafka_cluster.KafkaCluster, "fetch", lambda self: calls.append(self.name))
    cli.fetch_shared_jars(cli.brokers(names, settings))
    assert len(calls) == fetched
