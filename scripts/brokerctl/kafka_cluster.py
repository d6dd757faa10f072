"""A three-node Apache Kafka cluster (KRaft) on loopback, next to the single broker
(``kafka``).

Nodes 1 to 3 are each a broker and a controller in one ``kafka.Kafka`` process: clients
connect to 127.0.0.1:9192, 9292 and 9392 (PLAINTEXT, anonymous), the controllers listen
on 9193, 9293 and 9393 and form a static quorum (``controller.quorum.voters``).  Topics
get replication factor 3 and ``min.insync.replicas=2`` by default, so one node may die
without losing a record that was acknowledged with ``acks=all``.  Each node's storage is
formatted once, with one cluster id shared by the three (STATE/kafka-cluster/cluster.id);
its data, logs and generated server.properties live in STATE/kafka-cluster/node<i>.  The
jars are those of the single broker (kafka.py, scripts/kafka/pom.xml).

``broker.session.timeout.ms`` keeps Kafka's default (9 s): a node that dies without a
word keeps its partitions (as leader, and as a member of every in-sync replica set)
until the controller fences it after that time.  That is the stall the failover test
(tests/clusters/test_kafka_cluster.py) reports, and it stays Kafka's own figure.

The test stops and starts single nodes with :meth:`KafkaCluster.stop_node` /
:meth:`start_node` through ``scripts/brokers kafka-cluster-node stop|kill|start N``.
"""

from __future__ import annotations

import signal
import socket
import struct
import subprocess
import threading
from functools import cached_property
from pathlib import Path

from . import java
from .base import Broker
from .common import (
    HOST,
    BrokerError,
    Settings,
    append_line,
    elapsed,
    ensure_dirs,
    err,
    now,
    timestamp,
    write_atomic,
)
from .kafka import BROKER_JVM, FEATURES, LOG4J, POM, cluster_id
from .procs import alive, pid_of, port_open, run, terminate, wait_exit, wait_until

NODES = 3
#: Node i (1-3) serves clients on 9092 + 100 * i and its controller on the port after.
PORTS = tuple(9092 + 100 * i for i in range(1, NODES + 1))
CONTROLLER_PORTS = tuple(port + 1 for port in PORTS)
VOTERS = ",".join(f"{i}@{HOST}:{port}" for i, port in enumerate(CONTROLLER_PORTS, 1))
#: The single broker's JVM options with a smaller heap (three of them share 2 cores).
JVM = (*(a for a in BROKER_JVM if not a.startswith(("-Xms", "-Xmx"))), "-Xms128m", "-Xmx384m")
#: How long a node may take to stop gracefully (controlled shutdown) before SIGKILL.
STOP_WAIT = 60
#: One metadata request of the readiness probe, in seconds.
PROBE_TIMEOUT = 5.0
#: Formatting the storage of one node (a JVM start and a few files).
FORMAT_TIMEOUT = 120


def port(index: int) -> int:
    """The client port of node ``index`` (1-3)."""
    return PORTS[index - 1]


# ------------------------------------------------------------------ the metadata probe
def metadata_brokers(port: int, timeout: float = PROBE_TIMEOUT) -> set[int] | None:
    """The node ids of the brokers the broker on ``port`` lists as registered and alive
    (a Metadata request, version 4, for no topics); None when it does not answer.

    Standard library only, and no JVM per probe: ``up`` and the readiness wait ask
    every node a few times a second."""
    client = b"eventbinder-brokers"
    request = struct.pack(">hhih", 3, 4, 1, len(client)) + client  # header v1: Metadata v4
    request += struct.pack(">i?", 0, False)  # topics: none; allow_auto_topic_creation
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(struct.pack(">i", len(request)) + request)
            (size,) = struct.unpack(">i", _receive(sock, 4))
            return parse_metadata_brokers(_receive(sock, size))
    except (OSError, EOFError, struct.error, ValueError):
        return None


def _receive(sock: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise EOFError("the broker closed the connection")
        data += chunk
    return bytes(data)


def parse_metadata_brokers(response: bytes) -> set[int]:
    """The broker ids of a Metadata v4 response (after its size): correlation id 1,
    throttle time, then the brokers: [node_id int32, host string, port int32, rack
    nullable string]."""
    correlation, _throttle, count = struct.unpack_from(">iii", response)
    if correlation != 1 or not 0 <= count <= 1000:
        raise ValueError("not a Metadata response")
    offset, found = 12, set()
    for _ in range(count):
        node, host_size = struct.unpack_from(">ih", response, offset)
        offset += 6 + host_size + 4
        (rack_size,) = struct.unpack_from(">h", response, offset)
        offset += 2 + max(rack_size, 0)
        found.add(node)
    return found


class KafkaCluster(Broker):
    name = "kafka-cluster"
    requires = ((("java",), "default-jre-headless"), (("mvn",), "maven"))

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.logs = self.dir / "logs"  # Maven's and the tools' logs; each node has its own
        self.cluster_id_file = self.dir / "cluster.id"

    @property
    def ports(self) -> tuple[int, ...]:
        return (*PORTS, *CONTROLLER_PORTS)

    @cached_property
    def version(self) -> str:
        return java.pom_property(POM, "kafka.version")

    @property
    def lib(self) -> Path:
        """The single broker's jar folder (the same pom, the same cache)."""
        return self.settings.cache / f"kafka-{self.version}" / "lib"

    # ---------------------------------------------------------------------- files
    def node_dir(self, index: int) -> Path:
        return self.dir / f"node{index}"

    def pidfile(self, index: int) -> Path:
        return self.node_dir(index) / "kafka.pid"

    def properties(self, index: int) -> Path:
        return self.node_dir(index) / "server.properties"

    def node_log(self, index: int) -> Path:
        return self.node_dir(index) / "logs" / "server.log"

    def node_out(self, index: int) -> Path:
        return self.node_dir(index) / "logs" / "kafka.out"

    def config_text(self, index: int) -> str:
        client, controller = PORTS[index - 1], CONTROLLER_PORTS[index - 1]
        return f"""\
# Written by scripts/brokers (scripts/brokerctl/kafka_cluster.py): node {index} of the
# loopback test cluster, broker and controller in one process.
process.roles=broker,controller
node.id={index}
controller.quorum.voters={VOTERS}
controller.listener.names=CONTROLLER
listeners=PLAINTEXT://{HOST}:{client},CONTROLLER://{HOST}:{controller}
advertised.listeners=PLAINTEXT://{HOST}:{client}
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs={self.node_dir(index) / "data"}

# Every topic on all three nodes; a write with acks=all needs two of them.
num.partitions=1
default.replication.factor=3
min.insync.replicas=2
offsets.topic.replication.factor=3
offsets.topic.num.partitions=3
transaction.state.log.replication.factor=3
transaction.state.log.min.isr=2
transaction.state.log.num.partitions=3
# Share groups (KIP-932) are off: the storage is formatted with share.version=0.

# Test-friendly, as the single broker: groups join at once, short sessions allowed.
group.initial.rebalance.delay.ms=0
group.min.session.timeout.ms=1000
auto.create.topics.enable=true
delete.topic.enable=true
# broker.session.timeout.ms stays Kafka's default (9000): see kafka_cluster.py.

# Three JVMs on a small machine.
num.network.threads=2
num.io.threads=2
num.replica.fetchers=1
num.recovery.threads.per.data.dir=1
background.threads=2
log.retention.hours=24
log.segment.bytes=104857600
log.retention.check.interval.ms=300000
"""

    def write_config(self) -> None:
        ensure_dirs(self.dir, self.logs)
        for index in range(1, NODES + 1):
            d = self.node_dir(index)
            ensure_dirs(d, d / "data", d / "logs")
            write_atomic(self.properties(index), self.config_text(index))

    def stored_cluster_id(self, index: int) -> str | None:
        """The cluster id of node ``index``'s formatted storage."""
        try:
            text = (self.node_dir(index) / "data" / "meta.properties").read_text()
        except OSError:
            return None
        for line in text.splitlines():
            if line.startswith("cluster.id="):
                return line.split("=", 1)[1].strip()
        return None

    def shared_cluster_id(self) -> str:
        """The cluster id of the formatted nodes (they must agree), else the one of
        cluster.id, else a new one; written to cluster.id."""
        stored = {i: self.stored_cluster_id(i) for i in range(1, NODES + 1)}
        ids = {cid for cid in stored.values() if cid}
        if len(ids) > 1:
            raise BrokerError(
                f"{self.name}: the nodes' storages belong to different clusters ({stored}); "
                f"run `scripts/brokers down {self.name}` and delete {self.dir}"
            )
        cid = next(iter(ids), None)
        if cid is None:
            try:
                cid = self.cluster_id_file.read_text().strip() or None
            except OSError:
                cid = None
        cid = cid or cluster_id()
        write_atomic(self.cluster_id_file, cid + "\n")
        return cid

    def tool_command(self, *args: str) -> list[str]:
        """``java ... CLASS ARGS`` for a Kafka command line class; it logs to tools.log."""
        props = {
            "kafka.logs.dir": str(self.logs),
            "kafka.log.file": "tools.log",
            "kafka.log.level": "WARN",
            "log4j2.configurationFile": str(LOG4J),
        }
        return java.java_command(self.lib, java.TOOL_JVM, props, *args)

    def format_node(self, index: int, cid: str) -> None:
        log = self.node_dir(index) / "format.log"
        argv = ["kafka.tools.StorageTool", "format", "--config", str(self.properties(index))]
        argv += ["--cluster-id", cid, *(a for f in FEATURES for a in ("--feature", f))]
        argv += ["--ignore-formatted"]
        if run(self.tool_command(*argv), log=log, append=False, timeout=FORMAT_TIMEOUT) != 0:
            self.fail(f"formatting the storage of node {index} failed, see {log}", log)

    def configure(self) -> None:
        """The folders and server.properties of each node; the storages not yet
        formatted are formatted (in parallel) with the shared cluster id."""
        self.write_config()
        todo = [i for i in range(1, NODES + 1) if self.stored_cluster_id(i) is None]
        if not todo:
            return
        cid, t0 = self.shared_cluster_id(), now()
        nodes = ", ".join(map(str, todo))
        self.say(f"formatting the storage of node(s) {nodes} (cluster id {cid})")
        failures: list[BaseException] = []

        def work(index: int) -> None:
            try:
                self.format_node(index, cid)
            except BaseException as e:  # re-raised below, in this thread
                failures.append(e)

        threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in todo]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if failures:
            raise failures[0]
        self.say(f"storage formatted in {elapsed(t0)}")

    def fetch(self) -> None:
        """The jars, unless the single broker (or an earlier run) fetched them."""
        ensure_dirs(self.dir, self.logs)
        java.fetch_jars(
            POM, self.lib, self.logs / "mvn.log", who=self.name, what=f"Kafka {self.version}"
        )

    # ---------------------------------------------------------------------- state
    def pid(self, index: int) -> int | None:
        """The live node ``index`` of ours (its command line names its properties)."""
        return pid_of(self.pidfile(index), str(self.properties(index)))

    def registered(self, index: int) -> set[int] | None:
        """The brokers node ``index`` sees registered (None: it does not answer)."""
        return metadata_brokers(port(index))

    def answers(self, nodes: set[int] | None = None) -> bool:
        """Each of ``nodes`` (default: all three) answers a metadata request and lists
        every one of them as a registered broker."""
        nodes = set(range(1, NODES + 1)) if nodes is None else nodes
        return all((self.registered(i) or set()) >= nodes for i in nodes)

    def runs_current_config(self, index: int) -> bool:
        try:
            return self.properties(index).read_text() == self.config_text(index)
        except OSError:
            return False

    def where(self) -> str:
        return ", ".join(f"{HOST}:{p}" for p in PORTS)

    # ---------------------------------------------------------------------- lifecycle
    def start(self, index: int) -> subprocess.Popen[bytes]:
        """kafka.Kafka for node ``index`` in a session of its own, SIGHUP ignored."""
        logs = self.node_dir(index) / "logs"
        append_line(self.node_out(index), f"== {timestamp()} starting kafka.Kafka node {index}")
        props = {
            "kafka.logs.dir": str(logs),
            "kafka.log.file": "server.log",
            "log4j2.configurationFile": str(LOG4J),
        }
        command = java.java_command(self.lib, JVM, props, "kafka.Kafka")
        with self.node_out(index).open("ab") as out:
            proc = subprocess.Popen(
                ["nohup", *command, str(self.properties(index))],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
            )
        self.pidfile(index).write_text(f"{proc.pid}\n")
        return proc

    def check_ports_free(self, index: int) -> None:
        for p in (PORTS[index - 1], CONTROLLER_PORTS[index - 1]):
            if port_open(p):
                raise BrokerError(
                    f"{self.name}: {HOST}:{p} is taken by a process that is not node {index} "
                    f"(no live pid in {self.pidfile(index)}); stop it first"
                )

    def start_nodes(self, indexes: list[int]) -> None:
        """Start the nodes ``indexes`` (not running) and wait until they and the nodes
        already running answer and list each other as registered brokers."""
        started: dict[int, subprocess.Popen[bytes]] = {}
        for index in indexes:
            self.check_ports_free(index)
        for index in indexes:
            started[index] = self.start(index)
        running = {i: pid for i in range(1, NODES + 1) if (pid := self.pid(i)) is not None}
        expected = set(running)

        def still_running() -> None:
            for index, pid in running.items():
                proc = started.get(index)
                if (proc.poll() is None) if proc else alive(pid):
                    continue
                self.pidfile(index).unlink(missing_ok=True)
                self.fail(
                    f"node {index} exited during startup, see {self.node_log(index)} "
                    f"and {self.node_out(index)}",
                    self.node_out(index),
                    self.node_log(index),
                )

        if not wait_until(lambda: self.answers(expected), self.timeout, 0.3, still_running):
            seen = {i: self.registered(i) for i in sorted(expected)}
            self.fail(
                f"nodes {sorted(expected)} do not all list each other after {self.timeout}s "
                f"(node: brokers it lists, None = no answer: {seen}), see the logs in "
                f"{self.dir}/node*/logs",
                *(self.node_log(i) for i in sorted(expected)),
            )

    def up(self) -> None:
        t0 = now()
        pids = {i: self.pid(i) for i in range(1, NODES + 1)}
        if all(pids.values()) and self.answers():
            stale = [i for i in pids if not self.runs_current_config(i)]
            if not stale:
                self.say(f"already up on {self.where()}")
                return
        ensure_dirs(self.dir, self.logs)
        self.fetch()
        stale = [i for i, pid in pids.items() if pid and not self.runs_current_config(i)]
        if stale:
            # Started by an older scripts/brokers: start them again with today's.
            nodes = ", ".join(map(str, stale))
            self.say(f"node(s) {nodes} run an older configuration, restarting them")
            self.stop_nodes({i: pids[i] for i in stale})
            pids.update(dict.fromkeys(stale))
        self.configure()
        missing = [i for i, pid in pids.items() if pid is None]
        if missing:
            nodes = ", ".join(map(str, missing))
            self.say(f"starting Kafka {self.version} node(s) {nodes} (logs in {self.dir})")
        self.start_nodes(missing)
        self.say(f"up on {self.where()} (3 brokers, controllers {VOTERS}) in {elapsed(t0)}")

    def start_node(self, index: int) -> None:
        """Start node ``index`` unless it runs; return once it has rejoined: it and the
        other running nodes list each other as registered brokers."""
        t0 = now()
        if self.pid(index) is None:
            self.fetch()
            self.configure()
            self.start_nodes([index])
        else:
            running = {i for i in range(1, NODES + 1) if self.pid(i) is not None}
            if not wait_until(lambda: self.answers(running), self.timeout, 0.3):
                self.fail(f"node {index} runs but has not rejoined nodes {sorted(running)}")
        self.say(f"node {index} up on {HOST}:{port(index)} in {elapsed(t0)}")

    def stop_node(self, index: int, *, kill: bool = False) -> None:
        """Stop node ``index`` (``kill``: SIGKILL, as a crash; else SIGTERM, which makes
        a controlled shutdown: its partitions get other leaders first)."""
        pid = self.pid(index)
        if pid is None:
            return
        terminate(pid, signal.SIGKILL if kill else signal.SIGTERM)
        wait_exit(pid, STOP_WAIT)
        self.pidfile(index).unlink(missing_ok=True)

    def down(self) -> None:
        t0 = now()
        pids = {i: self.pid(i) for i in range(1, NODES + 1)}
        if not any(pids.values()):
            for p in PORTS:
                if port_open(p):
                    err(f"{self.name}: {HOST}:{p} is in use, but not by a node of ours")
            self.say("already down")
            return
        self.stop_nodes(pids)
        self.say(f"down in {elapsed(t0)}")

    def stop_nodes(self, pids: dict[int, int | None]) -> None:
        """SIGTERM to all of ``pids`` (node -> pid) at once, then wait for each."""
        for pid in pids.values():
            if pid is not None:
                terminate(pid)
        for index, pid in pids.items():
            if pid is not None:
                wait_exit(pid, STOP_WAIT)
                self.pidfile(index).unlink(missing_ok=True)

    def status(self) -> bool:
        states = [port_open(p) for p in PORTS]
        where = ", ".join(
            f"{HOST}:{p} ({'up' if s else 'down'})" for p, s in zip(PORTS, states, strict=True)
        )
        return self.status_line(all(states), where)
