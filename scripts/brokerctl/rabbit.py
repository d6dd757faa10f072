"""RabbitMQ (Debian rabbitmq-server): one node, rabbit@localhost, on 127.0.0.1:5672.

Data and logs live in STATE/rabbit. The settings are in /etc/rabbitmq/rabbitmq-env.conf
because every rabbitmq-server and rabbitmqctl run reads it (tests call ``rabbitmqctl
stop_app`` / ``start_app`` directly). As root, the Debian wrappers run both as the
rabbitmq user, with HOME=/var/lib/rabbitmq and its Erlang cookie.
"""

from __future__ import annotations

import shutil
from pathlib import Path

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
NODE = "rabbit@localhost"
ENV_CONF = Path("/etc/rabbitmq/rabbitmq-env.conf")
#: The Debian package's system user, owner of the node's folders.
USER = "rabbitmq"


class Rabbit(Broker):
    name = "rabbit"
    requires = ((("rabbitmq-server",), "rabbitmq-server"),)

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.pidfile = self.dir / "rabbit.pid"
        self.log = self.dir / "log" / f"{NODE}.log"
        self.startup_log = self.dir / "startup.log"

    @property
    def ports(self) -> tuple[int, ...]:
        return (PORT,)

    # ------------------------------------------------------------------- configuration
    def config_text(self) -> str:
        """rabbitmq.conf."""
        return (
            "# Written by scripts/brokers. Loopback only; guest/guest works from loopback"
            " (default).\n"
            f"listeners.tcp.default = {HOST}:{PORT}\n"
            "loopback_users.guest = true\n"
            "log.file.level = info\n"
            "log.console = false\n"
        )

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
        ensure_dirs(self.dir, self.dir / "mnesia", self.dir / "log", owner=USER)
        conf = self.dir / "rabbitmq.conf"
        write_atomic(conf, self.config_text())
        shutil.chown(conf, USER, USER)
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
        if pid is not None:
            if port_open(PORT):
                self.say(f"already up on {HOST}:{PORT} (pid {pid})")
                return
            # The node runs but the app is stopped (rabbitmqctl stop_app) or still booting.
            self.say("node runs without the app, start_app")
            self.ctl("start_app", timeout=self.timeout)
        else:
            if port_open(PORT):
                raise BrokerError(
                    f"rabbit: {HOST}:{PORT} is taken by a process that is not our node "
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
        if not wait_until(lambda: port_open(PORT), self.timeout, 0.3):
            self.fail(
                f"nothing listens on {HOST}:{PORT} after {self.timeout}s, see {self.log}",
                self.startup_log,
                self.log,
            )
        self.say(f"up on {HOST}:{PORT} in {elapsed(t0)}")

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
        if port_open(PORT):
            how = f"pid {pid}" if pid is not None else "not started by scripts/brokers"
            return self.status_line(True, f"{HOST}:{PORT} ({how})")
        if pid is not None:
            return self.status_line(False, f"{HOST}:{PORT} (node pid {pid} runs, app stopped)")
        return self.status_line(False, f"{HOST}:{PORT}")
