"""Apache Kafka 4.x in KRaft combined mode, one node: 127.0.0.1:9092 anonymous,
127.0.0.1:9093 the controller, 127.0.0.1:9094 SASL_PLAINTEXT (PLAIN eventbinder /
eventbinder-secret), localhost:9095 SSL (mutual TLS for a client that presents a
certificate) and localhost:9096 SASL_SSL (SCRAM-SHA-512 users eventbinder-scram and
orders-only), with ACLs (StandardAuthorizer): orders-only may use only the topics and
groups named ``orders-only.*``; 127.0.0.1:19092 FAULTS, plaintext but advertised as
127.0.0.1:19192, where the network fault tests put a Toxiproxy proxy. The jars come
from Maven Central through scripts/kafka/pom.xml (cached in CACHE/kafka-VERSION/lib),
the configuration from the templates scripts/kafka/server.properties and
scripts/kafka/tls.properties, the certificates from certs.py (STATE/tls); data and
logs in STATE/kafka."""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import sys
from functools import cached_property
from pathlib import Path
from typing import NoReturn

from . import certs, java
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
SSL_PORT = 9095
SASL_SSL_PORT = 9096
#: The listener the fault tests reach through a proxy on FAULTS_ADVERTISED_PORT.
FAULTS_PORT = 19092
FAULTS_ADVERTISED_PORT = 19192
SASL_USER = "eventbinder"
SASL_PASSWORD = "eventbinder-secret"
#: The host name clients use for the TLS listeners (the only name in the server
#: certificate); the listeners bind 127.0.0.1 and advertise this name.
TLS_HOST = certs.SERVER_NAME
#: The SASL mechanism of the SASL_SSL listener.
SCRAM_MECHANISM = "SCRAM-SHA-512"
SCRAM_USER = "eventbinder-scram"
SCRAM_PASSWORD = "eventbinder-scram-secret"
LIMITED_USER = "orders-only"
LIMITED_PASSWORD = "orders-only-secret"
#: Its users, name -> password: SCRAM_USER may do anything, LIMITED_USER what its ACLs
#: allow.
SCRAM_USERS = {SCRAM_USER: SCRAM_PASSWORD, LIMITED_USER: LIMITED_PASSWORD}
#: LIMITED_USER may use the topics and consumer groups whose names start with this.
LIMITED_PREFIX = "orders-only."
#: The principal of a client certificate (its CN, see ssl.principal.mapping.rules).
CLIENT_CERT_USER = certs.CLIENT_NAME
#: May do anything: 9092's anonymous clients (and the controller, the broker itself and
#: TLS clients without a certificate), the PLAIN user, the full-access SCRAM user and the
#: tests' client certificate.
SUPER_USERS = ("ANONYMOUS", SASL_USER, SCRAM_USER, CLIENT_CERT_USER)
#: kafka.tools.StorageTool format --feature ...: share groups (KIP-932) off.
FEATURES = ("share.version=0",)
POM = SCRIPTS / "kafka" / "pom.xml"
TEMPLATE = SCRIPTS / "kafka" / "server.properties"
TLS_TEMPLATE = SCRIPTS / "kafka" / "tls.properties"
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
#: How long one Kafka tool run that sets up users or ACLs may take.
TOOL_TIMEOUT = 60
#: The steps of Kafka.secure(), as its messages name them.
STEP_NAMES = {"scram": "SCRAM users", "acls": "ACLs"}


def cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64 without padding; like Kafka's
    Uuid.randomUuid(), never one that starts with '-' (it would read as an option)."""
    while True:
        found = base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")
        if not found.startswith("-"):
            return found


def property_keys(text: str) -> set[str]:
    """The keys a .properties text sets (comments and blank lines left out)."""
    keys = set()
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith(("#", "!")) and "=" in stripped:
            keys.add(stripped.split("=", 1)[0].strip())
    return keys


def overlay(base: str, extra: str) -> str:
    """``base`` followed by ``extra``; a key ``extra`` sets again is commented out in
    ``base`` (so each key is set once, and both files stay readable)."""
    again = property_keys(extra)
    lines = []
    for line in base.splitlines():
        key = line.split("=", 1)[0].strip() if "=" in line else ""
        if key in again:  # a comment's "key" starts with # and is never in it
            lines.append(f"# (set again below) {line}")
        else:
            lines.append(line)
    return "\n".join(lines) + "\n\n" + extra


class Kafka(Broker):
    name = "kafka"
    requires = ((("java",), "default-jre-headless"), (("mvn",), "maven"), (("openssl",), "openssl"))

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.logs = self.dir / "logs"
        self.pidfile = self.dir / "kafka.pid"
        self.log = self.logs / "server.log"
        self.out = self.logs / "kafka.out"
        self.properties = self.dir / "server.properties"
        # Client settings for Kafka's tools on the SASL listener (--command-config).
        self.sasl_client = self.dir / "client-sasl.properties"
        self.tls = certs.Authority(settings.state / "tls")
        # The server's key and certificate in one PEM file (ssl.keystore.type=PEM).
        self.keystore = self.dir / "server-keystore.pem"
        # The SCRAM users and ACLs already in the cluster metadata, one line each:
        # "<step> <cluster id> <digest of what was asked>".
        self.security_done = self.dir / "security.done"

    @property
    def ports(self) -> tuple[int, ...]:
        return (PORT, CONTROLLER_PORT, SASL_PORT, SSL_PORT, SASL_SSL_PORT, FAULTS_PORT)

    @property
    def client_ports(self) -> tuple[int, ...]:
        return (PORT, SASL_PORT, SSL_PORT, SASL_SSL_PORT, FAULTS_PORT)

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

    def tls_template_values(self) -> dict[str, str]:
        """What scripts/kafka/tls.properties' placeholders become."""
        return {
            "@TLS_KEYSTORE@": str(self.keystore),
            "@TLS_CA@": str(self.tls.ca),
            "@TLS_HOST@": TLS_HOST,
            "@SUPER_USERS@": ";".join(f"User:{user}" for user in SUPER_USERS),
            "@CLIENT_CERT_USER@": CLIENT_CERT_USER,
            "@CERTIFICATES@": self.tls.stamp(),
        }

    def config_text(self) -> str:
        """server.properties: the base template with the TLS template over it."""
        base = render(TEMPLATE, self.template_values())
        return overlay(base, render(TLS_TEMPLATE, self.tls_template_values()))

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
        """The folders, server.properties and client-sasl.properties (the certificates
        are read for their digest; certs.ensure makes them, see configure)."""
        ensure_dirs(self.dir, self.dir / "data", self.logs)
        write_atomic(self.properties, self.config_text())
        self.sasl_client.write_text(self.sasl_client_text())

    def write_keystore(self) -> None:
        """The server's key and certificate in one file, readable by us only."""
        text = self.tls.server_key.read_text() + self.tls.server.read_text()
        new = self.keystore.with_name(self.keystore.name + ".new")
        new.write_text(text)
        new.chmod(0o600)
        new.replace(self.keystore)

    def configure(self) -> None:
        certs.ensure(self.settings.state)
        self.write_config()
        self.write_keystore()
        if (self.dir / "data" / "meta.properties").exists():
            return
        cid, log = cluster_id(), self.dir / "format.log"
        self.say(f"formatting storage {self.dir / 'data'} (cluster id {cid})")
        argv = ["kafka.tools.StorageTool", "format", "--config", str(self.properties)]
        argv += ["--cluster-id", cid, *(a for f in FEATURES for a in ("--feature", f))]
        for user, password in SCRAM_USERS.items():
            argv += ["--add-scram", f"{SCRAM_MECHANISM}=[name={user},password={password}]"]
        if run(self.tool_command(*argv, "--ignore-formatted"), log=log, append=False) != 0:
            self.fail(f"formatting the storage failed, see {log}", log)
        # The users are in the bootstrap metadata: no kafka-configs run for them.
        self.security_done.unlink(missing_ok=True)
        append_line(self.security_done, self.step_line("scram", cid, self.scram_digest()))

    def runs_current_config(self) -> bool:
        """The configuration our broker runs with (written just before it started) is
        today's: a broker started by an older scripts/brokers (without the TLS listeners,
        say) or with other certificates is not."""
        try:
            return self.properties.read_text() == self.config_text()
        except OSError:
            return False

    # ----------------------------------------------------------- users and ACLs
    def scram_digest(self) -> str:
        spec = repr((SCRAM_MECHANISM, sorted(SCRAM_USERS.items())))
        return hashlib.sha256(spec.encode()).hexdigest()[:16]

    def scram_commands(self) -> list[list[str]]:
        """kafka-configs runs that set the SCRAM users' passwords (idempotent)."""
        return [
            [
                "org.apache.kafka.tools.ConfigCommand",
                *("--bootstrap-server", f"{HOST}:{PORT}", "--alter"),
                *("--add-config", f"{SCRAM_MECHANISM}=[password={password}]"),
                *("--entity-type", "users", "--entity-name", user),
            ]
            for user, password in SCRAM_USERS.items()
        ]

    def acl_commands(self) -> list[list[str]]:
        """The kafka-acls run that lets LIMITED_USER use its own topics and groups (by
        name prefix) and nothing else; adding an ACL that exists is a no-op."""
        return [
            [
                "org.apache.kafka.tools.AclCommand",
                *("--bootstrap-server", f"{HOST}:{PORT}", "--add"),
                *("--allow-principal", f"User:{LIMITED_USER}", "--operation", "All"),
                *("--topic", LIMITED_PREFIX, "--group", LIMITED_PREFIX),
                *("--resource-pattern-type", "prefixed"),
            ]
        ]

    def security_steps(self) -> list[tuple[str, str, list[list[str]]]]:
        """(step, digest of what it asks, tool runs) for the users and the ACLs."""
        acls = self.acl_commands()
        acl_digest = hashlib.sha256(repr(acls).encode()).hexdigest()[:16]
        return [
            ("scram", self.scram_digest(), self.scram_commands()),
            ("acls", acl_digest, acls),
        ]

    @staticmethod
    def step_line(step: str, cid: str, digest: str) -> str:
        return f"{step} {cid} {digest}"

    def stored_cluster_id(self) -> str | None:
        """The cluster id of the formatted storage (data/meta.properties)."""
        try:
            text = (self.dir / "data" / "meta.properties").read_text()
        except OSError:
            return None
        for line in text.splitlines():
            if line.startswith("cluster.id="):
                return line.split("=", 1)[1].strip()
        return None

    def pending_security(self) -> list[tuple[str, list[list[str]]]]:
        """The steps not yet done on this storage (its cluster id), with their lines."""
        cid = self.stored_cluster_id() or "unknown"
        try:
            done = set(self.security_done.read_text().splitlines())
        except OSError:
            done = set()
        return [
            (self.step_line(step, cid, digest), commands)
            for step, digest, commands in self.security_steps()
            if self.step_line(step, cid, digest) not in done
        ]

    def secure(self) -> None:
        """Create the SCRAM users and the ACLs the running broker lacks (over 9092, as
        the anonymous super user); each step once per storage."""
        pending = self.pending_security()
        if not pending:
            return
        t0, log = now(), self.logs / "security.log"
        for line, commands in pending:
            step = line.split()[0]
            for argv in commands:
                if run(self.tool_command(*argv), log=log, timeout=TOOL_TIMEOUT) != 0:
                    self.fail(f"setting up the {STEP_NAMES[step]} failed, see {log}", log)
            append_line(self.security_done, line)
        steps = " and ".join(STEP_NAMES[line.split()[0]] for line, _ in pending)
        self.say(f"{steps} set up in {elapsed(t0)}")

    # ---------------------------------------------------------------------- lifecycle
    def pid(self) -> int | None:
        return pid_of(self.pidfile, "kafka.Kafka")

    def ports_open(self) -> bool:
        return all(port_open(port) for port in self.client_ports)

    def answers(self) -> bool:
        """Every client port open and a real metadata request (kafka-topics --list). The
        broker enables request processing on all its listeners together, so 9092
        answering and the other ports being open means those listeners answer too."""
        if not self.ports_open():
            return False
        probe = ["org.apache.kafka.tools.TopicCommand", "--bootstrap-server", f"{HOST}:{PORT}"]
        command = self.tool_command(*probe, "--list")
        return run(command, stderr_log=self.out, timeout=PROBE_TIMEOUT) == 0

    def where(self) -> str:
        return (
            f"{HOST}:{PORT}, {HOST}:{SASL_PORT} (SASL), {TLS_HOST}:{SSL_PORT} (SSL), "
            f"{TLS_HOST}:{SASL_SSL_PORT} (SASL_SSL)"
        )

    def up(self) -> None:
        t0 = now()
        pid = self.pid()
        if pid is not None:
            if not self.runs_current_config():
                # Started by an older scripts/brokers or with other certificates.
                self.say(f"pid {pid} runs an older configuration, restarting it")
                self.down()
                pid = None
            elif self.ports_open():
                self.secure()
                self.say(f"already up on {self.where()} (pid {pid})")
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
        self.secure()
        self.say(
            f"up on {HOST}:{PORT} (anonymous), {HOST}:{SASL_PORT} (SASL user {SASL_USER}), "
            f"{TLS_HOST}:{SSL_PORT} (SSL), {TLS_HOST}:{SASL_SSL_PORT} (SASL_SSL, "
            f"{SCRAM_MECHANISM}) and {HOST}:{FAULTS_PORT} (for a proxy on "
            f"{HOST}:{FAULTS_ADVERTISED_PORT}) in {elapsed(t0)}"
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
        up = self.ports_open()
        where = f"{self.where()} (controller {HOST}:{CONTROLLER_PORT})"
        return self.status_line(up, where + (f" (pid {pid})" if pid is not None else ""))
