"""Mosquitto (Debian mosquitto): 127.0.0.1:1883 anonymous, 127.0.0.1:1884 with a
password file (eventbinder / eventbinder-secret), and two TLS listeners with the
throwaway CA of certs.py (server certificate for ``localhost`` only) and an ACL file
(scripts/mosquitto.acl): 127.0.0.1:8883 with passwords (eventbinder, and sensors-only /
sensors-only-secret limited to ``sensors/#``), 127.0.0.1:8884 requiring a client
certificate signed by that CA, whose common name is the user name. Configuration from
the templates scripts/mosquitto.conf and scripts/mosquitto-tls.conf, data and logs in
STATE/mqtt."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from . import certs
from .base import Broker
from .common import (
    HOST,
    SCRIPTS,
    BrokerError,
    Settings,
    elapsed,
    ensure_dirs,
    err,
    now,
    render,
    write_atomic,
)
from .procs import find_process, pid_of, port_open, run, terminate, wait_exit, wait_until

PORT = 1883
AUTH_PORT = 1884
#: TLS with a password (and the ACL); mutual TLS (client certificate, and the ACL).
TLS_PORT = 8883
MTLS_PORT = 8884
USER = "eventbinder"
PASSWORD = "eventbinder-secret"
#: A user of the TLS listener that the ACL limits to ``sensors/#``.
LIMITED_USER = "sensors-only"
LIMITED_PASSWORD = "sensors-only-secret"
#: The users of the TLS listener's password file (1884's file has USER only).
TLS_USERS = ((USER, PASSWORD), (LIMITED_USER, LIMITED_PASSWORD))
#: Where clients connect for TLS: the only name in the server certificate.
TLS_HOST = certs.SERVER_NAME
TEMPLATE = SCRIPTS / "mosquitto.conf"
TLS_TEMPLATE = SCRIPTS / "mosquitto-tls.conf"
ACL = SCRIPTS / "mosquitto.acl"


def users(passwd: Path) -> set[str]:
    """The user names in a Mosquitto password file (none when it is missing)."""
    try:
        lines = passwd.read_text().splitlines()
    except FileNotFoundError:
        return set()
    return {line.split(":", 1)[0] for line in lines if ":" in line}


def add_users(passwd: Path, wanted: Sequence[tuple[str, str]]) -> None:
    """Add the users of ``wanted`` (name, password) missing from the password file
    (idempotent: users present keep their line). The file is written through
    ``NAME.new`` (mode 0600) and a rename, never half written."""
    have = users(passwd)
    missing = [(user, password) for user, password in wanted if user not in have]
    if not missing:
        return
    new = passwd.with_name(passwd.name + ".new")
    new.unlink(missing_ok=True)
    os.close(os.open(new, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
    if passwd.exists():
        new.write_bytes(passwd.read_bytes())
    for user, password in missing:
        if run(["mosquitto_passwd", "-b", new, user, password]) != 0:
            raise BrokerError(f"mqtt: mosquitto_passwd could not add {user} to {new}")
    new.replace(passwd)


class Mqtt(Broker):
    name = "mqtt"
    requires = (
        (("mosquitto",), "mosquitto"),
        (("mosquitto_pub", "mosquitto_sub"), "mosquitto-clients"),
    )

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.conf = self.dir / "mosquitto.conf"
        self.pidfile = self.dir / "mosquitto.pid"
        self.log = self.dir / "mosquitto.log"
        self.startup_log = self.dir / "startup.log"
        self.passwd = self.dir / "passwd"
        self.tls_passwd = self.dir / "passwd-tls"
        self.acl = self.dir / "acl"
        self.tls = certs.Authority(settings.state / "tls")

    @property
    def ports(self) -> tuple[int, ...]:
        return (PORT, AUTH_PORT, TLS_PORT, MTLS_PORT)

    # ------------------------------------------------------------------- configuration
    def template_values(self) -> dict[str, str]:
        """What scripts/mosquitto.conf's placeholders become."""
        return {"@BIND_ADDRESS@": HOST, "@STATE_DIR@": str(self.dir), "@RUN_USER@": "root"}

    def tls_template_values(self) -> dict[str, str]:
        """What scripts/mosquitto-tls.conf's placeholders become."""
        return {
            "@BIND_ADDRESS@": HOST,
            "@STATE_DIR@": str(self.dir),
            "@TLS_DIR@": str(self.tls.folder),
            "@CERTIFICATES@": self.tls.stamp(),
        }

    def config_text(self) -> str:
        """mosquitto.conf: the plain-text template, then the TLS listeners."""
        main = render(TEMPLATE, self.template_values())
        return main.rstrip("\n") + "\n\n" + render(TLS_TEMPLATE, self.tls_template_values())

    def write_config(self) -> None:
        """The folders, mosquitto.conf and the ACL file (not the certificates)."""
        ensure_dirs(self.dir, self.dir / "data")
        write_atomic(self.conf, self.config_text())
        write_atomic(self.acl, ACL.read_text())

    def configure(self) -> None:
        certs.ensure(self.settings.state)
        self.write_config()
        add_users(self.passwd, [(USER, PASSWORD)])
        add_users(self.tls_passwd, TLS_USERS)

    def runs_current_config(self) -> bool:
        """The files the running broker read at its start are today's: mosquitto.conf
        (TLS listeners, certificates), the ACL and the TLS listener's users. A broker
        started by an older scripts/brokers (no TLS listeners) or with other
        certificates is not."""
        try:
            return (
                self.conf.read_text() == self.config_text()
                and self.acl.read_text() == ACL.read_text()
                and users(self.tls_passwd) >= {user for user, _ in TLS_USERS}
            )
        except OSError:
            return False

    # ---------------------------------------------------------------------- lifecycle
    def pid(self) -> int | None:
        return pid_of(self.pidfile, "mosquitto")

    def answers(self) -> bool:
        """A real MQTT round trip on every listener ($SYS topics are retained): the TLS
        ones through ``localhost``, verifying the server certificate with the CA."""
        sub = ["mosquitto_sub", "-t", "$SYS/broker/version", "-C", "1", "-W", "3"]
        plain = [*sub, "-h", HOST]
        tls = [*sub, "-h", TLS_HOST, "--cafile", str(self.tls.ca)]
        client = ["--cert", str(self.tls.client), "--key", str(self.tls.client_key)]
        return (
            run([*plain, "-p", str(PORT)]) == 0
            and run([*plain, "-p", str(AUTH_PORT), "-u", USER, "-P", PASSWORD]) == 0
            and run([*tls, "-p", str(TLS_PORT), "-u", USER, "-P", PASSWORD]) == 0
            and run([*tls, "-p", str(MTLS_PORT), *client]) == 0
        )

    def up(self) -> None:
        t0 = now()
        pid = self.pid()
        if pid is not None:
            silent = [p for p in self.ports if not port_open(p)]
            if not silent and self.runs_current_config():
                self.say(f"already up on {self.where()} (pid {pid})")
                return
            if silent:
                why = "does not listen on " + ", ".join(f"{HOST}:{p}" for p in silent)
            else:
                why = "runs without today's configuration (TLS listeners, certificates, ACL)"
            err(f"mqtt: pid {pid} {why}, restarting it")
            terminate(pid)
            wait_exit(pid, 20)
        for port in self.ports:
            if port_open(port):
                raise BrokerError(
                    f"mqtt: {HOST}:{port} is taken by a process that is not our Mosquitto "
                    f"(no live pid in {self.pidfile}); stop it first"
                )
        self.configure()
        self.pidfile.unlink(missing_ok=True)
        self.say(f"starting (log {self.log})")
        logs = (self.startup_log, self.log)
        if run(["mosquitto", "-c", self.conf, "-d"], log=self.startup_log) != 0:
            self.fail(f"mosquitto failed to start, see {self.log} and {self.startup_log}", *logs)

        def still_running() -> None:
            if self.pid() is None and not find_process(f"mosquitto -c {self.conf}"):
                self.fail(f"mosquitto exited during startup, see {self.log}", *logs)

        if not wait_until(self.answers, self.timeout, 0.2, still_running):
            ports = "/".join(str(p) for p in self.ports)
            self.fail(f"no answer on {HOST}:{ports} after {self.timeout}s, see {self.log}", *logs)
        self.say(f"up on {self.where()} in {elapsed(t0)}")

    def where(self) -> str:
        """Every listener and what it wants, for the output."""
        return (
            f"{HOST}:{PORT} (anonymous), {HOST}:{AUTH_PORT} (user {USER}), "
            f"{TLS_HOST}:{TLS_PORT} (TLS, users {USER} and {LIMITED_USER}), "
            f"{TLS_HOST}:{MTLS_PORT} (mutual TLS)"
        )

    def down(self) -> None:
        t0 = now()
        pid = self.pid()
        if pid is None:
            if port_open(PORT):
                err(
                    f"mqtt: {HOST}:{PORT} is in use, but not by our Mosquitto "
                    f"(no live pid in {self.pidfile})"
                )
            self.say("already down")
            return
        # SIGTERM: Mosquitto writes its persistence file, then exits.
        terminate(pid)
        wait_exit(pid, 30)
        self.pidfile.unlink(missing_ok=True)
        self.say(f"down in {elapsed(t0)}")

    def status(self) -> bool:
        pid = self.pid()
        up = all(port_open(p) for p in self.ports)
        where = (
            f"{HOST}:{PORT}, {HOST}:{AUTH_PORT} (auth), {TLS_HOST}:{TLS_PORT} (TLS), "
            f"{TLS_HOST}:{MTLS_PORT} (mutual TLS)"
        )
        return self.status_line(up, where + (f" (pid {pid})" if pid is not None else ""))
