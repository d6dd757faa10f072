"""RabbitMQ (Debian rabbitmq-server): one node, rabbit@localhost, on 127.0.0.1:5672
(AMQP) and 127.0.0.1:5671 (AMQPS).

The TLS listener uses the throwaway certificate authority of certs.py (STATE/tls): the
server certificate names ``localhost`` only; a client certificate is optional, but
one that is presented must be signed by the CA and valid (``verify_peer`` without
``fail_if_no_peer_cert``), so the same port serves TLS and mutual TLS. A second user,
``eventbinder-vhost``, may do anything in the virtual host ``eventbinder-tls`` and
nothing in ``/``.

Data and logs live in STATE/rabbit. The settings are in /etc/rabbitmq/rabbitmq-env.conf
because every rabbitmq-server and rabbitmqctl run reads it (tests call ``rabbitmqctl
stop_app`` / ``start_app`` directly). As root, the Debian wrappers run both as the
rabbitmq user, with HOME=/var/lib/rabbitmq and its Erlang cookie.
"""

from __future__ import annotations

import shutil
from functools import partial
from pathlib import Path

from . import certs
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
from .procs import pid_of, port_open, run, terminate, wait_exit, wait_until

PORT = 5672
TLS_PORT = 5671
NODE = "rabbit@localhost"
ENV_CONF = Path("/etc/rabbitmq/rabbitmq-env.conf")
#: The Debian package's system user, owner of the node's folders.
USER = "rabbitmq"
#: The virtual host and the user limited to it (full permissions there, none on "/").
VHOST = "eventbinder-tls"
VHOST_USER = "eventbinder-vhost"
VHOST_PASSWORD = "eventbinder-vhost-secret"


class Rabbit(Broker):
    name = "rabbit"
    requires = ((("rabbitmq-server",), "rabbitmq-server"),)

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.pidfile = self.dir / "rabbit.pid"
        self.log = self.dir / "log" / f"{NODE}.log"
        self.startup_log = self.dir / "startup.log"
        self.conf = self.dir / "rabbitmq.conf"
        #: Written once the vhost-limited user exists (removed before each fresh start).
        self.users_done = self.dir / "users.done"
        self.tls = certs.Authority(settings.state / "tls")

    @property
    def ports(self) -> tuple[int, ...]:
        return (PORT, TLS_PORT)

    # ------------------------------------------------------------------- configuration
    def config_text(self) -> str:
        """rabbitmq.conf."""
        t = self.tls
        return (
            "# Written by scripts/brokers. Loopback only; guest/guest works from loopback"
            " (default).\n"
            f"listeners.tcp.default = {HOST}:{PORT}\n"
            "loopback_users.guest = true\n"
            "log.file.level = info\n"
            "log.console = false\n"
            "# AMQPS with the throwaway CA (STATE/tls). A client certificate is optional; one\n"
            "# that is presented must be signed by the CA and valid (mutual TLS).\n"
            f"# certificates {self.tls.stamp()}\n"
            f"listeners.ssl.default = {HOST}:{TLS_PORT}\n"
            f"ssl_options.cacertfile = {t.ca}\n"
            f"ssl_options.certfile = {t.server}\n"
            f"ssl_options.keyfile = {t.server_key}\n"
            "ssl_options.verify = verify_peer\n"
            "ssl_options.fail_if_no_peer_cert = false\n"
            "ssl_options.versions.1 = tlsv1.3\n"
            "ssl_options.versions.2 = tlsv1.2\n"
        )

    def runs_current_config(self) -> bool:
        """The node's rabbitmq.conf (written just before it started) is today's: a node
        started by an older scripts/brokers (no TLS listener) or with other certificates
        is not."""
        try:
            return self.conf.read_text() == self.config_text()
        except OSError:
            return False

    def env_text(self) -> str:
        """/etc/rabbitmq/rabbitmq-env.conf (a shell fragment the Debian scripts source)."""
        d = self.dir
        return (
            "# Written by scripts/brokers (eventbinder): one loopback-only node for local"
            " runs and CI.\n"
            f"NODENAME={NODE}\n"
            "USE_LONGNAME=false\n"
            f"NODE_IP_ADDRESS={HOST}\n"
            f"NODE_PORT={PORT}\n"
            f"CONFIG_FILE={d}/rabbitmq.conf\n"
            f"MNESIA_BASE={d}/mnesia\n"
            f"LOG_BASE={d}/log\n"
            f"PID_FILE={self.pidfile}\n"
            "# epmd and Erlang distribution (node and CLI tools) on loopback too.\n"
            f"export ERL_EPMD_ADDRESS={HOST}\n"
            'SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"\n'
            'CTL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"\n'
            "# A durable queue costs a file handle at boot; 1024 hangs recovery past ~900"
            " queues.\n"
            'ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true\n'
        )

    def configure(self) -> None:
        certs.ensure(self.settings.state)
        ensure_dirs(self.dir, self.dir / "mnesia", self.dir / "log", owner=USER)
        self.users_done.unlink(missing_ok=True)
        write_atomic(self.conf, self.config_text())
        shutil.chown(self.conf, USER, USER)
        ensure_dirs(ENV_CONF.parent)
        env = self.env_text()
        try:
            current = ENV_CONF.read_text()
        except OSError:
            current = None
        if current is None or current.rstrip("\n") != env.rstrip("\n"):
            ENV_CONF.write_text(env)

    # ---------------------------------------------------------------------- lifecycle
    def pid(self) -> int | None:
        return pid_of(self.pidfile, "beam")

    def ctl(self, *args: str, timeout: float) -> int:
        """``rabbitmqctl -q ARGS``, its output in startup.log."""
        return run(["rabbitmqctl", "-q", *args], log=self.startup_log, timeout=timeout)

    def up(self) -> None:
        t0 = now()
        pid = self.pid()
        if pid is not None and not self.runs_current_config():
            # Started by an older scripts/brokers (no TLS listener) or with certificates
            # made anew since: restart it with today's configuration.
            self.say(
                f"pid {pid} runs without today's configuration (TLS listener "
                f"{HOST}:{TLS_PORT}, certificates), restarting it"
            )
            self.down()
            pid = None
        if pid is not None:
            if port_open(PORT) and port_open(TLS_PORT):
                self.ensure_users()
                self.say(f"already up on {HOST}:{PORT} and {HOST}:{TLS_PORT} (pid {pid})")
                return
            if not port_open(PORT):
                # The node runs but the app is stopped (rabbitmqctl stop_app) or booting.
                self.say("node runs without the app, start_app")
                self.ctl("start_app", timeout=self.timeout)
        else:
            for port in self.ports:
                if port_open(port):
                    raise BrokerError(
                        f"rabbit: {HOST}:{port} is taken by a process that is not our node "
                        f"(no live pid in {self.pidfile}); stop it first"
                    )
            self.configure()
            self.pidfile.unlink(missing_ok=True)
            self.say(f"starting (log {self.log})")
            append_line(self.startup_log, f"== {timestamp()} rabbitmq-server -detached")
            if run(["rabbitmq-server", "-detached"], log=self.startup_log, cwd="/") != 0:
                self.fail(
                    f"rabbitmq-server -detached failed, see {self.startup_log} and {self.log}",
                    self.startup_log,
                    self.log,
                )
            # Waits for the pid file, then for the app to have started.
            waited = self.ctl(
                "wait", "--timeout", str(self.timeout), str(self.pidfile), timeout=self.timeout + 10
            )
            if waited != 0:
                self.fail(
                    f"did not start within {self.timeout}s, see {self.log} and {self.startup_log}",
                    self.startup_log,
                    self.log,
                )
        for port in self.ports:
            if not wait_until(partial(port_open, port), self.timeout, 0.3):
                what = "the TLS listener: " if port == TLS_PORT else ""
                self.fail(
                    f"{what}nothing listens on {HOST}:{port} after {self.timeout}s, see {self.log}",
                    self.startup_log,
                    self.log,
                )
        self.ensure_users()
        self.say(f"up on {HOST}:{PORT} and {HOST}:{TLS_PORT} in {elapsed(t0)}")

    def ensure_users(self) -> None:
        """The virtual host ``eventbinder-tls`` and its user (idempotent: add_vhost is,
        an existing user gets its password back); once per fresh start of the node
        (``users.done``), so an ``up`` of a running broker stays quick."""
        if self.users_done.exists():
            return
        steps: list[tuple[str, ...]] = [
            ("add_vhost", VHOST),
            ("add_user", VHOST_USER, VHOST_PASSWORD),
            ("change_password", VHOST_USER, VHOST_PASSWORD),
            ("set_permissions", "-p", VHOST, VHOST_USER, ".*", ".*", ".*"),
            ("clear_permissions", "-p", "/", VHOST_USER),
        ]
        for step in steps:
            # The log gets the command, never the password; add_user exits 70 when the
            # user exists (its password is set again by the next step).
            shown = " ".join("***" if a == VHOST_PASSWORD else a for a in step)
            append_line(self.startup_log, f"== {timestamp()} rabbitmqctl {shown}")
            code = self.ctl(*step, timeout=60)
            if code != 0 and not (step[0] == "add_user" and code == 70):
                self.fail(
                    f"rabbitmqctl {step[0]} failed (exit {code}), see {self.startup_log}",
                    self.startup_log,
                )
        self.users_done.write_text(f"{VHOST_USER} in {VHOST}\n")

    def down(self) -> None:
        t0 = now()
        pid = self.pid()
        if pid is None:
            if port_open(PORT):
                err(
                    f"rabbit: {HOST}:{PORT} is in use, but not by our node "
                    f"(no live pid in {self.pidfile})"
                )
            self.say("already down")
            return
        # `rabbitmqctl stop PIDFILE` returns once the node's OS process has exited.
        if self.ctl("stop", str(self.pidfile), timeout=60) != 0:
            err("rabbit: rabbitmqctl stop failed, sending SIGTERM")
            terminate(pid)
        wait_exit(pid, 30)
        self.pidfile.unlink(missing_ok=True)
        self.say(f"down in {elapsed(t0)}")

    def status(self) -> bool:
        pid = self.pid()
        where = f"{HOST}:{PORT}, {HOST}:{TLS_PORT} (TLS)"
        if port_open(PORT) and port_open(TLS_PORT):
            how = f"pid {pid}" if pid is not None else "not started by scripts/brokers"
            return self.status_line(True, f"{where} ({how})")
        if pid is not None:
            return self.status_line(False, f"{where} (node pid {pid} runs, app stopped)")
        return self.status_line(False, where)
