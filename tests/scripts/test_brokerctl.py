"""scripts/brokers (the package scripts/brokerctl) without brokers: the command line and
its exit codes, the configuration files it writes, status on closed ports, the lock and
the process helpers."""

from __future__ import annotations

import fcntl
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO / "scripts") not in sys.path:
    sys.path.insert(0, str(REPO / "scripts"))

from brokerctl import apt, base, cli, common, kafka, mqtt, procs, rabbit  # noqa: E402

PLACEHOLDER = re.compile(r"@[A-Z_]+@")


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
    state = tmp_path / "state"
    monkeypatch.setenv("EVENTBINDER_STATE", str(state))
    monkeypatch.setenv("EVENTBINDER_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("EVENTBINDER_BROKER_TIMEOUT", raising=False)
    return common.Settings.from_env()


def free_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@pytest.fixture
def closed_ports(monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """Every broker's ports moved to one that nothing listens on."""
    port = free_port()
    for module, names in (
        (rabbit, ["PORT", "TLS_PORT"]),
        (mqtt, ["PORT", "AUTH_PORT", "TLS_PORT", "MTLS_PORT"]),
        (kafka, ["PORT", "CONTROLLER_PORT", "SASL_PORT", "SSL_PORT", "SASL_SSL_PORT"]),
    ):
        for name in names:
            monkeypatch.setattr(module, name, port)
    yield port


# ---------------------------------------------------------------------- command line
def test_no_arguments_prints_the_usage_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == 2
    usage = capsys.readouterr().err
    assert "scripts/brokers status  [rabbit|mqtt|kafka ...]" in usage
    assert "EVENTBINDER_BROKER_TIMEOUT" in usage


@pytest.mark.parametrize("argv", [["help"], ["-h"], ["--help"], ["kafka-run"]])
def test_help_and_kafka_run_without_a_class_exit_2(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(argv) == 2
    assert "Real message brokers" in capsys.readouterr().err


def test_unknown_command_is_named_before_the_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["start", "rabbit"]) == 2
    assert capsys.readouterr().err.startswith("brokers: unknown command 'start'\n")


@pytest.mark.parametrize(
    ("name", "said"),
    [
        ("rabbitmq", "unknown broker 'rabbitmq' (say rabbit)"),
        ("mosquitto", "unknown broker 'mosquitto' (say mqtt)"),
        ("zookeeper", "unknown broker 'zookeeper' ({known})"),
    ],
)
@pytest.mark.parametrize("verb", ["up", "down", "status", "help", "start"])
def test_unknown_broker_names_exit_1_with_a_hint(
    verb: str, name: str, said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # names are checked before the verb, as the shell script did
    assert cli.main([verb, "rabbit", name]) == 1
    known = ", ".join(cli.BROKERS)
    assert capsys.readouterr().err == f"brokers: error: {said.format(known=known)}\n"


@pytest.mark.parametrize(
    ("verb", "why"), [("up", " (it installs packages and writes /etc/rabbitmq)"), ("restart", "")]
)
def test_up_and_restart_need_root(
    verb: str, why: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert cli.main([verb, "mqtt"]) == 1
    assert capsys.readouterr().err == f"brokers: error: run as root{why}\n"


def test_the_wrapper_runs_the_tool() -> None:
    wrapper = REPO / "scripts" / "brokers"
    usage = subprocess.run([wrapper], capture_output=True, text=True, timeout=60, check=False)
    assert usage.returncode == 2, usage.stderr
    assert "scripts/brokers kafka-run CLASS" in usage.stderr
    wrong = subprocess.run(
        [wrapper, "status", "rabbitmq"], capture_output=True, text=True, timeout=60, check=False
    )
    said = "brokers: error: unknown broker 'rabbitmq' (say rabbit)\n"
    assert (wrong.returncode, wrong.stderr) == (1, said)


# --------------------------------------------------------------------------- status
def test_status_exits_3_and_says_down_when_nothing_listens(
    settings: common.Settings, closed_ports: int, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["status"]) == 3
    p = closed_ports
    assert capsys.readouterr().out.splitlines() == [
        f"rabbit: down  127.0.0.1:{p}, 127.0.0.1:{p} (TLS)",
        f"mqtt:   down  127.0.0.1:{p}, 127.0.0.1:{p} (auth), localhost:{p} (TLS), "
        f"localhost:{p} (mutual TLS)",
        f"kafka:  down  127.0.0.1:{p}, 127.0.0.1:{p} (SASL), localhost:{p} (SSL), "
        f"localhost:{p} (SASL_SSL) (controller 127.0.0.1:{p})",
    ]


def test_status_is_0_when_the_port_answers(
    settings: common.Settings,
    closed_ports: int,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        monkeypatch.setattr(rabbit, "PORT", port)
        monkeypatch.setattr(rabbit, "TLS_PORT", port)
        assert cli.main(["status", "rabbit"]) == 0
        assert cli.main(["status", "rabbit", "kafka"]) == 3
    assert capsys.readouterr().out.splitlines()[0] == (
        f"rabbit: up    127.0.0.1:{port}, 127.0.0.1:{port} (TLS) (not started by scripts/brokers)"
    )


def test_down_when_down_is_fine(
    settings: common.Settings, closed_ports: int, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["down"]) == 0
    lines = sorted(capsys.readouterr().out.splitlines())
    assert lines == ["kafka: already down", "mqtt: already down", "rabbit: already down"]
    assert (settings.state / "brokers.lock").exists()


# ------------------------------------------------------------------ generated files
def test_mosquitto_conf_from_the_template(settings: common.Settings) -> None:
    broker = mqtt.Mqtt(settings)
    broker.write_config()
    text = (settings.state / "mqtt" / "mosquitto.conf").read_text()
    assert not PLACEHOLDER.search(text)
    lines = text.splitlines()
    assert "listener 1883 127.0.0.1" in lines
    assert "listener 1884 127.0.0.1" in lines
    assert f"password_file {settings.state}/mqtt/passwd" in lines
    assert f"pid_file {settings.state}/mqtt/mosquitto.pid" in lines
    assert f"log_dest file {settings.state}/mqtt/mosquitto.log" in lines
    assert "user root" in lines
    assert (settings.state / "mqtt" / "data").is_dir()
    template = set(PLACEHOLDER.findall(mqtt.TEMPLATE.read_text()))
    assert set(broker.template_values()) == template


def properties(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {k: v for k, v in pairs if not k.startswith("#")}


def test_kafka_server_properties_and_jaas(settings: common.Settings) -> None:
    broker = kafka.Kafka(settings)
    assert not broker.runs_current_config()
    broker.write_config()
    folder = settings.state / "kafka"
    conf = properties(folder / "server.properties")
    assert not PLACEHOLDER.search((folder / "server.properties").read_text())
    assert conf["listeners"] == (
        "PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093,SASL_PLAINTEXT://127.0.0.1:9094,"
        "SSL://127.0.0.1:9095,SASL_SSL://127.0.0.1:9096,FAULTS://127.0.0.1:19092"
    )
    assert conf["log.dirs"] == f"{folder}/data"
    assert conf["listener.name.sasl_plaintext.plain.sasl.jaas.config"] == (
        "org.apache.kafka.common.security.plain.PlainLoginModule required "
        'user_eventbinder="eventbinder-secret";'
    )
    client = properties(folder / "client-sasl.properties")
    assert client == {
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": "PLAIN",
        "sasl.jaas.config": "org.apache.kafka.common.security.plain.PlainLoginModule required "
        'username="eventbinder" password="eventbinder-secret";',
    }
    assert {p.name for p in folder.iterdir()} >= {"data", "logs"}
    assert broker.runs_current_config()
    old = (folder / "server.properties").read_text().replace(",SASL_SSL://127.0.0.1:9096", "")
    (folder / "server.properties").write_text(old)
    assert not broker.runs_current_config()  # `up` restarts such a broker


def test_kafka_version_and_jar_folder_follow_the_pom(settings: common.Settings) -> None:
    version = re.search(r"<kafka.version>(.*)</kafka.version>", kafka.POM.read_text())
    assert version
    broker = kafka.Kafka(settings)
    assert broker.version == version[1]
    assert broker.lib == settings.cache / f"kafka-{version[1]}" / "lib"
    tool = "org.apache.kafka.tools.TopicCommand"
    command = broker.tool_command(tool, "--list")
    assert command[:2] == ["java", "-XX:TieredStopAtLevel=1"]
    assert command[-4:] == ["-cp", f"{broker.lib}/*", tool, "--list"]


def test_cluster_ids_are_kafka_uuids() -> None:
    for _ in range(50):
        assert re.fullmatch(r"[A-Za-z0-9_-]{22}", kafka.cluster_id())


def test_a_cluster_id_never_starts_with_a_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    draws = iter([b"\xf8" + bytes(15), bytes(range(16))])  # the first encodes as "-AAA..."
    monkeypatch.setattr(os, "urandom", lambda n: next(draws))
    assert kafka.cluster_id() == "AAECAwQFBgcICQoLDA0ODw"


def test_rabbitmq_files(settings: common.Settings) -> None:
    broker = rabbit.Rabbit(settings)
    folder = settings.state / "rabbit"
    env = broker.env_text().splitlines()
    assert "NODENAME=rabbit@localhost" in env
    assert f"CONFIG_FILE={folder}/rabbitmq.conf" in env
    assert f"PID_FILE={folder}/rabbit.pid" in env
    assert "export ERL_EPMD_ADDRESS=127.0.0.1" in env
    assert env[-1] == 'ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true'
    assert "listeners.tcp.default = 127.0.0.1:5672" in broker.config_text().splitlines()


def test_missing_packages_are_listed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    missing = {"mvn", "mosquitto_sub"}
    monkeypatch.setattr(base.shutil, "which", lambda c: None if c in missing else c)
    s = common.Settings(Path("/nonexistent"), Path("/nonexistent"), 90)
    chosen = [kafka.Kafka(s), mqtt.Mqtt(s), kafka.Kafka(s), rabbit.Rabbit(s)]
    assert apt.missing_packages(chosen) == ["maven", "mosquitto-clients"]


def test_service_starts_blocked_only_while_installing(tmp_path: Path) -> None:
    policy = tmp_path / "policy-rc.d"
    with apt.services_blocked(policy):
        assert policy.read_text().endswith("exit 101\n")
        assert os.access(policy, os.X_OK)
    assert not policy.exists()
    policy.write_text("#!/bin/sh\nexit 0\n")  # a machine's own policy is kept
    with apt.services_blocked(policy):
        pass
    assert policy.read_text() == "#!/bin/sh\nexit 0\n"


def test_commands_get_sbin_on_path_and_a_utf8_locale(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/usr/bin:/sbin")
    common.prepare_environment()
    common.prepare_environment()
    assert os.environ["PATH"] == "/usr/bin:/sbin:/usr/local/sbin:/usr/sbin"
    assert os.environ["LC_ALL"] == "C.UTF-8"


def test_settings_from_the_environment(tmp_path: Path) -> None:
    default = common.Settings.from_env({"HOME": "/home/x"})
    assert default == common.Settings(
        Path("/tmp/eventbinder-brokers"), Path("/home/x/.cache/eventbinder"), 90
    )
    env = {"EVENTBINDER_STATE": str(tmp_path), "EVENTBINDER_BROKER_TIMEOUT": "5"}
    assert common.Settings.from_env(env).timeout == 5
    with pytest.raises(common.BrokerError, match="EVENTBINDER_BROKER_TIMEOUT"):
        common.Settings.from_env({"EVENTBINDER_BROKER_TIMEOUT": "soon"})


# --------------------------------------------------------------- parallel runs, lock
class Fake(base.Broker):
    name = "fake"
    ran: list[str] = []

    @property
    def ports(self) -> tuple[int, ...]:
        return ()

    def configure(self) -> None:
        pass

    def up(self) -> None:
        self.ran.append(self.name)
        if self.name == "bad":
            raise common.BrokerError("bad: it broke")

    def down(self) -> None:
        pass

    def status(self) -> bool:
        return True


def test_brokers_run_in_parallel_and_one_failure_fails_the_run(
    settings: common.Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    good, bad, other = (type(n, (Fake,), {"name": n})(settings) for n in ("good", "bad", "other"))
    Fake.ran.clear()
    t0 = time.monotonic()
    with pytest.raises(common.BrokerError) as failed:
        cli.run_all("up", [good, bad, other])
    assert time.monotonic() - t0 < 0.5
    assert sorted(Fake.ran) == ["bad", "good", "other"]
    assert str(failed.value) == "up failed for some of: good bad other (see above)"
    assert capsys.readouterr().err == "brokers: error: bad: it broke\n"


def test_the_lock_waits_then_gives_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(common, "LOCK_WAIT", 0.3)
    with (tmp_path / "brokers.lock").open("a") as other:
        fcntl.flock(other, fcntl.LOCK_EX)
        with pytest.raises(common.BrokerError, match="still holds"), common.locked(tmp_path):
            pass
    assert "waiting for another scripts/brokers run" in capsys.readouterr().out


def test_a_daemon_started_under_the_lock_does_not_hold_it(tmp_path: Path) -> None:
    with common.locked(tmp_path):
        daemon = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        with (tmp_path / "brokers.lock").open("a") as again:
            fcntl.flock(again, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free once the run ends
    finally:
        daemon.kill()
        daemon.wait()


# --------------------------------------------------------------------- processes
def test_pid_files(tmp_path: Path) -> None:
    pidfile = tmp_path / "x.pid"
    assert procs.pid_of(pidfile, "python") is None  # no file
    pidfile.write_text(f"{os.getpid()}\n")
    assert procs.pid_of(pidfile, "python") == os.getpid()
    assert procs.pid_of(pidfile, "beam") is None  # someone else's pid
    gone = subprocess.Popen(["true"])
    gone.wait()
    pidfile.write_text(str(gone.pid))
    assert procs.pid_of(pidfile, "true") is None  # stale
    pidfile.write_text("garbage")
    assert procs.pid_of(pidfile, "python") is None


def test_run_routes_output_and_times_out(tmp_path: Path) -> None:
    log, errors = tmp_path / "out.log", tmp_path / "err.log"
    assert procs.run(["sh", "-c", "echo out; echo err >&2; exit 3"], log=log) == 3
    assert log.read_text() == "out\nerr\n"
    assert procs.run(["sh", "-c", "echo out; echo err >&2"], log=log, stderr_log=errors) == 0
    assert log.read_text() == "out\nerr\nout\n"
    assert errors.read_text() == "err\n"
    t0 = time.monotonic()
    assert procs.run(["sh", "-c", "sleep 30 & sleep 30"], timeout=0.3) == 124
    assert time.monotonic() - t0 < 5


def test_wait_until(capsys: pytest.CaptureFixture[str]) -> None:
    tries = iter([False, False, True])
    assert procs.wait_until(lambda: next(tries), 5, 0.01)
    assert not procs.wait_until(lambda: False, 0.05, 0.01)

    def gone() -> None:
        raise common.BrokerError("exited")

    with pytest.raises(common.BrokerError, match="exited"):
        procs.wait_until(lambda: False, 5, 0.01, gone)
