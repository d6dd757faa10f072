"""Apache Kafka 4.x in KRaft combined mode, one node: 127.0.0.1:9092 anonymous,
127.0.0.1:9093 the controller, 127.0.0.1:9094 SASL_PLAINTEXT (PLAIN eventbinder /
eventbinder-secret). The jars come from Maven Central through scripts/kafka/pom.xml
(cached in CACHE/kafka-VERSION/lib), the configuration from the template
scripts/kafka/server.properties; data and logs in STATE/kafka."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from functools import cached_property
from pathlib import Path
from typing import NoReturn

from . import java
from .base import Broker
from .common import (
    HOST,
    SCRIPTS,
    BrokerError,
    Settings,
    append_line,
    elapsed,
    ensure_dirs,
    err,
    now,
    render,
    timestamp,
    write_atomic,
)
from .procs import alive, pid_of, port_open, run, terminate, wait_exit, wait_until

PORT = 9092
CONTROLLER_PORT = 9093
SASL_PORT = 9094
SASL_USER = "eventbinder"
SASL_PASSWORD = "eventbinder-secret"
#: kafka.tools.StorageTool format --feature ...: share groups (KIP-932) off.
FEATURES = ("share.version=0",)
POM = SCRIPTS / "kafka" / "pom.xml"
TEMPLATE = SCRIPTS / "kafka" / "server.properties"
LOG4J = SCRIPTS / "kafka" / "log4j2.yaml"
BROKER_JVM = (
    "-Xms256m",
    "-Xmx512m",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-Djava.awt.headless=true",
)
#: How long one metadata request of the startup wait may take.
PROBE_TIMEOUT = 30


def cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64 without padding; like Kafka's
    Uuid.randomUuid(), never one that starts with '-' (it would read as an option)."""
    while True:
        found = base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")
        if not found.startswith("-"):
            return found


class Kafka(Broker):
    name = "kafka"
    requires = ((("java",), "default-jre-headless"), (("mvn",), "maven"))

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.logs = self.dir / "logs"
        self.pidfile = self.dir / "kafka.pid"
        self.log = self.logs / "server.log"
        self.out = self.logs / "kafka.out"
        self.properties = self.dir / "server.properties"
        # Client settings for Kafka's tools on the SASL listener (--command-config).
        self.sasl_client = self.dir / "client-sasl.properties"

    @property
    def ports(self) -> tuple[int, ...]:
        return (PORT, CONTROLLER_PORT, SASL_PORT)

    @cached_property
    def version(self) -> str:
        return java.pom_property(POM, "kafka.version")

    @property
    def lib(self) -> Path:
        return self.settings.cache / f"kafka-{self.version}" / "lib"

    # ---------------------------------------------------------------------- the jars
    def fetch(self) -> None:
        java.fetch_jars(
            POM, self.lib, self.dir / "mvn.log", who="kafka", what=f"Kafka {self.version}"
        )

    def tool_command(self, *args: str) -> list[str]:
        """``java ... CLASS ARGS`` for a Kafka command line class; it logs to tools.log."""
        props = {
            "kafka.logs.dir": str(self.logs),
            "kafka.log.file": "tools.log",
            "kafka.log.level": "WARN",
            "log4j2.configurationFile": str(LOG4J),
        }
        return java.java_command(self.lib, java.TOOL_JVM, props, *args)

    def run_tool(self, args: list[str]) -> NoReturn:
        """``scripts/brokers kafka-run CLASS ARGS``: the tool replaces this process."""
        self.logs.mkdir(parents=True, exist_ok=True)
        if not (self.lib / ".complete").is_file():
            self.fetch()
        command = self.tool_command(*args)
        sys.stdout.flush()
        os.execvp(command[0], command)

    # ------------------------------------------------------------------- configuration
    def template_values(self) -> dict[str, str]:
        """What scripts/kafka/server.properties' placeholders become."""
        return {
            "@STATE_DIR@": str(self.dir),
            "@SASL_USER@": SASL_USER,
            "@SASL_PASSWORD@": SASL_PASSWORD,
        }

    def sasl_client_text(self) -> str:
        jaas = "org.apache.kafka.common.security.plain.PlainLoginModule required"
        return (
            f"# Written by scripts/brokers: Kafka tools on the SASL listener {HOST}:{SASL_PORT}\n"
            f"# (--bootstrap-server {HOST}:{SASL_PORT} --command-config {self.sasl_client}).\n"
            "security.protocol=SASL_PLAINTEXT\n"
            "sasl.mechanism=PLAIN\n"
            f'sasl.jaas.config={jaas} username="{SASL_USER}" password="{SASL_PASSWORD}";\n'
        )

    def write_config(self) -> None:
        """The folders, server.properties and client-sasl.properties."""
        ensure_dirs(self.dir, self.dir / "data", self.logs)
        write_atomic(self.properties, render(TEMPLATE, self.template_values()))
        self.sasl_client.write_text(self.sasl_client_text())

    def configure(self) -> None:
        self.write_config()
        if (self.dir / "data" / "meta.properties").exists():
            return
        cid, log = cluster_id(), self.dir / "format.log"
        self.say(f"formatting storage {self.dir / 'data'} (cluster id {cid})")
        argv = ["kafka.tools.StorageTool", "format", "--config", str(self.properties)]
        argv += ["--cluster-id", cid, *(a for f in FEATURES for a in ("--feature", f))]
        if run(self.tool_command(*argv, "--ignore-formatted"), log=log, append=False) != 0:
            self.fail(f"formatting the storage failed, see {log}", log)

    def has_sasl_listener(self) -> bool:
        """The configuration our broker runs with declares the SASL listener (a broker
        started by an older scripts/brokers does not)."""
        try:
            lines = self.properties.read_text().splitlines()
        except OSError:
            return False
        return any(x.startswith("listeners=") and f":{SASL_PORT}" in x for x in lines)

    # ---------------------------------------------------------------------- lifecycle
    def pid(self) -> int | None:
        return pid_of(self.pidfile, "kafka.Kafka")

    def answers(self) -> bool:
        """Both client ports open and a real metadata request (kafka-topics --list). The
        broker enables request processing on all its listeners together, so 9092
        answering and the SASL port being open means the SASL listener answers too."""
        if not (port_open(PORT) and port_open(SASL_PORT)):
            return False
        probe = ["org.apache.kafka.tools.TopicCommand", "--bootstrap-server", f"{HOST}:{PORT}"]
        command = self.tool_command(*probe, "--list")
        return run(command, stderr_log=self.out, timeout=PROBE_TIMEOUT) == 0

    def up(self) -> None:
        t0 = now()
        pid = self.pid()
        if pid is not None:
            if not self.has_sasl_listener():
                # Started before the SASL listener existed: restart it with today's config.
                self.say(
                    f"pid {pid} runs without the SASL listener {HOST}:{SASL_PORT}, restarting it"
                )
                self.down()
                pid = None
            elif port_open(PORT) and port_open(SASL_PORT):
                self.say(f"already up on {HOST}:{PORT} and {HOST}:{SASL_PORT} (pid {pid})")
                return
        if pid is None:  # else a broker of ours that is still starting: wait for it below
            for port in self.ports:
                if port_open(port):
                    raise BrokerError(
                        f"kafka: {HOST}:{port} is taken by a process that is not our broker "
                        f"(no live pid in {self.pidfile}); stop it first"
                    )
        ensure_dirs(self.dir, self.logs)
        self.fetch()
        started: subprocess.Popen[bytes] | None = None
        if pid is None:
            self.configure()
            started = self.start()
            pid = started.pid
        logs, running = (self.out, self.log), pid

        def still_running() -> None:
            if (started.poll() is None) if started else alive(running):
                return
            self.pidfile.unlink(missing_ok=True)
            self.fail(f"the broker exited during startup, see {self.log} and {self.out}", *logs)

        if not wait_until(self.answers, self.timeout, 0.3, still_running):
            self.fail(
                f"no answer on {HOST}:{PORT} after {self.timeout}s (pid {running} still runs), "
                f"see {self.log}",
                *logs,
            )
        self.say(
            f"up on {HOST}:{PORT} (anonymous) and {HOST}:{SASL_PORT} (SASL user {SASL_USER}) "
            f"in {elapsed(t0)}"
        )

    def start(self) -> subprocess.Popen[bytes]:
        """kafka.Kafka in a session of its own (it outlives this run), SIGHUP ignored."""
        self.say(f"starting Kafka {self.version} (log {self.log})")
        append_line(self.out, f"== {timestamp()} starting kafka.Kafka")
        props = {
            "kafka.logs.dir": str(self.logs),
            "kafka.log.file": "server.log",
            "log4j2.configurationFile": str(LOG4J),
        }
        command = java.java_command(self.lib, BROKER_JVM, props, "kafka.Kafka")
        with self.out.open("ab") as out:
            proc = subprocess.Popen(
                ["nohup", *command, str(self.properties)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
            )
        self.pidfile.write_text(f"{proc.pid}\n")
        return proc

    def down(self) -> None:
        t0 = now()
        pid = self.pid()
        if pid is None:
            if port_open(PORT):
                err(
                    f"kafka: {HOST}:{PORT} is in use, but not by our broker "
                    f"(no live pid in {self.pidfile})"
                )
            self.say("already down")
            return
        terminate(pid)
        wait_exit(pid, 60)
        self.pidfile.unlink(missing_ok=True)
        self.say(f"down in {elapsed(t0)}")

    def status(self) -> bool:
        pid = self.pid()
        up = port_open(PORT) and port_open(SASL_PORT)
        where = f"{HOST}:{PORT}, {HOST}:{SASL_PORT} (SASL) (controller {HOST}:{CONTROLLER_PORT})"
        return self.status_line(up, where + (f" (pid {pid})" if pid is not None else ""))
