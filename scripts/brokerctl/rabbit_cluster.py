"""A three-node RabbitMQ cluster on loopback, next to the single node (``rabbit``).

Nodes ``rabbit-c1@localhost`` .. ``rabbit-c3@localhost`` listen for AMQP on
127.0.0.1:5681..5683 (Erlang distribution on 25681..25683, epmd shared with the single
node) and form one cluster by themselves at first boot (classic-config peer
discovery). ``up`` with no node running starts from empty data, whatever an earlier
(possibly killed) run left behind. Each node's data and logs live in
STATE/rabbit-cluster/<node>. The node's settings are RABBITMQ_* environment variables,
which take precedence over the single node's /etc/rabbitmq/rabbitmq-env.conf, so both
run side by side.

Used by the failover tests (tests/clusters/), which stop and start single nodes with
:meth:`RabbitCluster.stop_node` / :meth:`start_node` through ``scripts/brokers
rabbit-cluster-node stop|start N``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from .base import Broker
from .common import (
    HOST,
    Settings,
    append_line,
    elapsed,
    ensure_dirs,
    err,
    now,
    timestamp,
    write_atomic,
)
from .procs import pid_of, port_open, run, terminate, wait_exit, wait_until

NODES = 3
FIRST_PORT = 5681
FIRST_DIST_PORT = 25681
USER = "rabbitmq"


def node_name(index: int) -> str:
    """``rabbit-c<index>@localhost`` (index from 1)."""
    return f"rabbit-c{index}@localhost"


class RabbitCluster(Broker):
    name = "rabbit-cluster"
    requires = ((("rabbitmq-server",), "rabbitmq-server"),)

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.startup_log = self.dir / "startup.log"

    @property
    def ports(self) -> tuple[int, ...]:
        return tuple(FIRST_PORT + i for i in range(NODES))

    # ------------------------------------------------------------------- configuration
    def node_dir(self, index: int) -> Path:
        return self.dir / f"node{index}"

    def pidfile(self, index: int) -> Path:
        return self.node_dir(index) / "rabbit.pid"

    def config_text(self, index: int) -> str:
        peers = "".join(
            f"cluster_formation.classic_config.nodes.{i} = {node_name(i)}\n"
            for i in range(1, NODES + 1)
        )
        return (
            "# Written by scripts/brokers: one node of the loopback test cluster.\n"
            f"listeners.tcp.default = {HOST}:{FIRST_PORT + index - 1}\n"
            "loopback_users.guest = true\n"
            "log.file.level = info\n"
            "log.console = false\n"
            "cluster_formation.peer_discovery_backend = classic_config\n"
            f"{peers}"
            # A node that lost its peers keeps serving what it can (the tests kill one).
            "cluster_partition_handling = ignore\n"
        )

    def node_env(self, index: int) -> dict[str, str]:
        """RABBITMQ_* variables of node ``index`` (they override rabbitmq-env.conf)."""
        d = self.node_dir(index)
        return {
            **os.environ,
            "RABBITMQ_NODENAME": node_name(index),
            "RABBITMQ_USE_LONGNAME": "false",
            "RABBITMQ_NODE_IP_ADDRESS": HOST,
            "RABBITMQ_NODE_PORT": str(FIRST_PORT + index - 1),
            "RABBITMQ_DIST_PORT": str(FIRST_DIST_PORT + index - 1),
            "RABBITMQ_CONFIG_FILE": str(d / "rabbitmq.conf"),
            "RABBITMQ_MNESIA_BASE": str(d / "mnesia"),
            "RABBITMQ_LOG_BASE": str(d / "log"),
            "RABBITMQ_PID_FILE": str(self.pidfile(index)),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(d / "enabled_plugins"),
            "ERL_EPMD_ADDRESS": HOST,
        }

    def configure(self) -> None:
        for index in range(1, NODES + 1):
            d = self.node_dir(index)
            ensure_dirs(d, d / "mnesia", d / "log", owner=USER)
            for name, text in (
                ("rabbitmq.conf", self.config_text(index)),
                ("enabled_plugins", "[].\n"),
            ):
                path = d / name
                write_atomic(path, text)
                shutil.chown(path, USER, USER)

    # ---------------------------------------------------------------------- lifecycle
    def pid(self, index: int) -> int | None:
        return pid_of(self.pidfile(index), "beam")

    def ctl(self, index: int, *args: str, timeout: float) -> int:
        return run(
            ["rabbitmqctl", "-q", "-n", node_name(index), *args],
            log=self.startup_log,
            timeout=timeout,
            env=self.node_env(index),
        )

    def start_node(self, index: int) -> None:
        """Start node ``index`` unless it runs; return once it serves AMQP."""
        port = FIRST_PORT + index - 1
        if self.pid(index) is None:
            self.pidfile(index).unlink(missing_ok=True)
            append_line(self.startup_log, f"== {timestamp()} {node_name(index)} -detached")
            if (
                run(
                    ["rabbitmq-server", "-detached"],
                    log=self.startup_log,
                    cwd="/",
                    env=self.node_env(index),
                )
                != 0
            ):
                self.fail(
                    f"{node_name(index)} did not start, see {self.startup_log}", self.startup_log
                )
        if (
            self.ctl(
                index,
                "wait",
                "--timeout",
                str(self.timeout),
                str(self.pidfile(index)),
                timeout=self.timeout + 10,
            )
            != 0
        ):
            self.fail(
                f"{node_name(index)} did not boot within {self.timeout}s",
                self.startup_log,
                self.node_dir(index) / "log" / f"{node_name(index)}.log",
            )
        if not wait_until(lambda: port_open(port), self.timeout, 0.3):
            self.fail(f"{node_name(index)} does not listen on {HOST}:{port}", self.startup_log)

    def stop_node(self, index: int, *, kill: bool = False) -> None:
        """Stop node ``index`` (``kill``: SIGKILL, as a crash)."""
        pid = self.pid(index)
        if pid is None:
            return
        if kill:
            terminate(pid, 9)
        elif self.ctl(index, "stop", str(self.pidfile(index)), timeout=60) != 0:
            terminate(pid)
        wait_exit(pid, 30)
        self.pidfile(index).unlink(missing_ok=True)

    def clustered(self) -> bool:
        """Node 1 sees all nodes running."""
        out = self.dir / "cluster_status.txt"
        code = run(
            [
                "rabbitmqctl",
                "-q",
                "-n",
                node_name(1),
                "eval",
                "length(rabbit_nodes:all_running()).",
            ],
            log=out,
            append=False,
            timeout=30,
            env=self.node_env(1),
        )
        return code == 0 and out.read_text().strip() == str(NODES)

    def forget_cluster(self) -> None:
        """Drop every node's data: the next boot forms a new cluster.

        A node restarted alone waits (up to five minutes) for the tables of the peers
        that were running when it stopped; after a crash or a killed run nobody knows
        which node stopped last. The cluster holds only what tests put there, so a
        cold start begins from nothing instead.
        """
        for index in range(1, NODES + 1):
            shutil.rmtree(self.node_dir(index) / "mnesia", ignore_errors=True)

    def up(self) -> None:
        t0 = now()
        if all(port_open(p) for p in self.ports) and all(self.pid(i) for i in range(1, NODES + 1)):
            self.say(f"already up on {HOST}:{FIRST_PORT}-{FIRST_PORT + NODES - 1}")
            return
        if not any(self.pid(i) for i in range(1, NODES + 1)):
            self.forget_cluster()
        self.configure()
        self.say(f"starting {NODES} nodes (logs in {self.dir})")
        # The first node boots alone: the others find it (classic config) and join.
        for index in range(1, NODES + 1):
            self.start_node(index)
        if not wait_until(self.clustered, self.timeout, 0.5):
            self.fail(
                f"the nodes did not form one cluster within {self.timeout}s", self.startup_log
            )
        self.say(f"up on {HOST}:{FIRST_PORT}-{FIRST_PORT + NODES - 1} in {elapsed(t0)}")

    def down(self) -> None:
        t0 = now()
        if not any(self.pid(i) for i in range(1, NODES + 1)):
            self.say("already down")
            return
        for index in range(NODES, 0, -1):
            try:
                self.stop_node(index)
            except Exception as exc:  # one node's trouble must not keep the others up
                err(f"rabbit-cluster: stopping {node_name(index)}: {exc}")
        self.say(f"down in {elapsed(t0)}")

    def status(self) -> bool:
        states = [port_open(p) for p in self.ports]
        where = ", ".join(
            f"{HOST}:{p} ({'up' if s else 'down'})" for p, s in zip(self.ports, states, strict=True)
        )
        return self.status_line(all(states), where)
