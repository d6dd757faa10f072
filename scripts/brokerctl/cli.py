"""The command line: verbs, broker names, the lock, brokers in parallel, exit codes
(0 fine, 1 failed, 2 usage, 3 ``status`` found one down)."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Sequence

from . import apt, kafka_cluster, rabbit_cluster
from .base import Broker
from .common import BrokerError, Settings, elapsed, err, locked, now, prepare_environment, say
from .kafka import Kafka
from .kafka_cluster import KafkaCluster
from .mqtt import Mqtt
from .procs import kill_children
from .rabbit import Rabbit
from .rabbit_cluster import RabbitCluster
from .toxiproxy import Toxiproxy

USAGE = """\
Real message brokers for local runs and CI, on loopback only.

  scripts/brokers up      [rabbit|mqtt|kafka ...]   install if needed, start, wait until they answer
  scripts/brokers down    [rabbit|mqtt|kafka ...]   stop (fine when already stopped)
  scripts/brokers restart [rabbit|mqtt|kafka ...]   down, then up
  scripts/brokers status  [rabbit|mqtt|kafka ...]   one line each; exit 3 when one is down
  scripts/brokers kafka-run CLASS [ARGS...]         run a Kafka tool class with the broker's jars,
                                                    e.g. org.apache.kafka.tools.TopicCommand
  scripts/brokers rabbit-cluster-node stop|kill|start N   stop (kill: SIGKILL) or start node N (1-3)
  scripts/brokers kafka-cluster-node stop|kill|start N    the same for a node of kafka-cluster
No names means rabbit, mqtt and kafka. See docs/brokers.md.

  rabbit  RabbitMQ (Debian rabbitmq-server)  127.0.0.1:5672, guest/guest, node rabbit@localhost;
                                             127.0.0.1:5671 amqps (CA in $EVENTBINDER_STATE/tls),
                                             eventbinder-vhost/eventbinder-vhost-secret in vhost eventbinder-tls
  mqtt    Mosquitto (Debian mosquitto)       127.0.0.1:1883 anonymous,
                                             127.0.0.1:1884 eventbinder/eventbinder-secret,
                                             localhost:8883 TLS (+ sensors-only: sensors/# only),
                                             localhost:8884 mutual TLS
  kafka   Apache Kafka 4.x, KRaft, 1 node    127.0.0.1:9092 anonymous (controller 127.0.0.1:9093),
                                             127.0.0.1:9094 SASL_PLAINTEXT, PLAIN eventbinder/eventbinder-secret,
                                             localhost:9095 SSL, localhost:9096 SASL_SSL SCRAM-SHA-512
                                             (eventbinder-scram, orders-only: ACLs for orders-only.* only);
          jars from Maven Central via scripts/kafka/pom.xml, cached
  rabbit-cluster  3 RabbitMQ nodes, one cluster   127.0.0.1:5681-5683 (rabbit-c1..3@localhost), guest/guest;
                  not started unless named
  kafka-cluster   3 Kafka KRaft nodes, broker+controller each   127.0.0.1:9192, 9292, 9392
                  (controllers 9193, 9293, 9393), anonymous; replication factor 3,
                  min.insync.replicas 2; not started unless named
  toxiproxy       Toxiproxy 2.5.0 fault proxy, built once with Go   API 127.0.0.1:8474; not started unless named

Environment:
  EVENTBINDER_STATE   pid files, data, logs, generated configs (default /tmp/eventbinder-brokers)
  EVENTBINDER_CACHE   Kafka jars (default $HOME/.cache/eventbinder)
  EVENTBINDER_BROKER_TIMEOUT   seconds each broker may take to answer (default 90)
"""  # noqa: E501 (the help text keeps its columns)

#: The brokers by command-line name. A new broker (or cluster) is a module with a
#: Broker subclass and a line here.
BROKERS: dict[str, type[Broker]] = {
    "rabbit": Rabbit,
    "mqtt": Mqtt,
    "kafka": Kafka,
    "rabbit-cluster": RabbitCluster,
    "kafka-cluster": KafkaCluster,
    "toxiproxy": Toxiproxy,
}
#: The clusters whose nodes ``<name>-node stop|kill|start N`` stops and starts, with
#: their number of nodes.
CLUSTERS: dict[str, tuple[type[RabbitCluster | KafkaCluster], int]] = {
    "rabbit-cluster": (RabbitCluster, rabbit_cluster.NODES),
    "kafka-cluster": (KafkaCluster, kafka_cluster.NODES),
}
#: What no names means.
DEFAULT = ("rabbit", "mqtt", "kafka")
#: Names people try, and the one to say instead.
HINTS = {"rabbitmq": "rabbit", "mosquitto": "mqtt"}
#: Exit codes.
FAILED, USAGE_ERROR, DOWN = 1, 2, 3


class UsageError(Exception):
    """Print the usage, exit 2."""


def brokers(names: Sequence[str], settings: Settings) -> list[Broker]:
    """The brokers named (all of DEFAULT for none)."""
    for name in names:
        if name in HINTS:
            raise BrokerError(f"unknown broker '{name}' (say {HINTS[name]})")
        if name not in BROKERS:
            raise BrokerError(f"unknown broker '{name}' ({', '.join(BROKERS)})")
    return [BROKERS[name](settings) for name in names or DEFAULT]


def run_all(action: str, chosen: list[Broker]) -> None:
    """``action`` (up, down) of each broker, in parallel threads when there are several;
    raises when one failed (after all have finished)."""
    if len(chosen) == 1:
        getattr(chosen[0], action)()
        return
    failed: list[str] = []

    def work(broker: Broker) -> None:
        try:
            getattr(broker, action)()
        except BrokerError as e:
            err(f"error: {e}")
            failed.append(broker.name)
        except Exception as e:
            err(f"error: {broker.name}: {action} failed: {type(e).__name__}: {e}")
            failed.append(broker.name)

    threads = [threading.Thread(target=work, args=(b,), daemon=True) for b in chosen]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failed:
        names = " ".join(b.name for b in chosen)
        raise BrokerError(f"{action} failed for some of: {names} (see above)")


def need_root(why: str) -> None:
    if os.geteuid() != 0:
        raise BrokerError(f"run as root{why}")


def command(argv: Sequence[str]) -> int:
    if not argv:
        raise UsageError
    verb, names = argv[0], list(argv[1:])
    settings = Settings.from_env()
    if verb == "kafka-run":
        if not names:
            raise UsageError
        Kafka(settings).run_tool(names)
    if verb.endswith("-node") and verb.removesuffix("-node") in CLUSTERS:
        return _cluster_node(verb.removesuffix("-node"), names, settings)
    chosen = brokers(names, settings)
    if verb == "up":
        need_root(" (it installs packages and writes /etc/rabbitmq)")
        with locked(settings.state):
            t0 = now()
            apt.apt_install(apt.missing_packages(chosen), settings.state)
            fetch_shared_jars(chosen)
            run_all("up", chosen)
            if len(names) != 1:
                say(f"brokers: {' '.join(b.name for b in chosen)} up in {elapsed(t0)}")
    elif verb == "down":
        with locked(settings.state):
            run_all("down", chosen)
    elif verb == "restart":
        need_root("")
        with locked(settings.state):
            apt.apt_install(apt.missing_packages(chosen), settings.state)
            fetch_shared_jars(chosen)
            run_all("down", chosen)
            run_all("up", chosen)
    elif verb == "status":
        states = [b.status() for b in chosen]
        return 0 if all(states) else DOWN
    elif verb in ("-h", "--help", "help"):
        raise UsageError
    else:
        err(f"unknown command '{verb}'")
        raise UsageError
    return 0


def fetch_shared_jars(chosen: list[Broker]) -> None:
    """kafka and kafka-cluster use the same jar folder: when both are named, it is
    fetched once, before they start in parallel threads (which would fetch it twice
    into one folder at the same time)."""
    names = {b.name for b in chosen}
    if {"kafka", "kafka-cluster"} <= names:
        KafkaCluster(chosen[0].settings).fetch()


def _cluster_node(name: str, args: list[str], settings: Settings) -> int:
    """``<cluster>-node stop|kill|start N``: one node of a running cluster."""
    if len(args) != 2 or args[0] not in ("stop", "kill", "start") or not args[1].isdigit():
        raise UsageError
    kind, nodes = CLUSTERS[name]
    index = int(args[1])
    if not 1 <= index <= nodes:
        raise BrokerError(f"{name} has nodes 1 to {nodes}, not {index}")
    need_root("")
    cluster = kind(settings)
    if args[0] == "start":
        cluster.start_node(index)
    else:
        cluster.stop_node(index, kill=args[0] == "kill")
    return 0


def main(argv: Sequence[str]) -> int:
    prepare_environment()
    try:
        return command(argv)
    except UsageError:
        sys.stderr.write(USAGE)
        return USAGE_ERROR
    except (BrokerError, OSError) as e:
        err(f"error: {e}")
        return FAILED
    except KeyboardInterrupt:
        kill_children()
        return 130
