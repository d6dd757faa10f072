"""Mosquitto (Debian mosquitto): 127.0.0.1:1883 anonymous, 127.0.0.1:1884 with a
password file (eventbinder / eventbinder-secret). Configuration from the template
scripts/mosquitto.conf, data and logs in STATE/mqtt."""

from __future__ import annotations

import os

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
USER = "eventbinder"
PASSWORD = "eventbinder-secret"
TEMPLATE = SCRIPTS / "mosquitto.conf"


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

    @property
    def ports(self) -> tuple[int, ...]:
        return (PORT, AUTH_PORT)

    # ------------------------------------------------------------------- configuration
    def template_values(self) -> dict[str, str]:
        """What scripts/mosquitto.conf's placeholders become."""
        return {"@BIND_ADDRESS@": HOST, "@STATE_DIR@": str(self.dir), "@RUN_USER@": "root"}

    def write_config(self) -> None:
        """The folders and mosquitto.conf."""
        ensure_dirs(self.dir, self.dir / "data")
        write_atomic(self.conf, render(TEMPLATE, self.template_values()))

    def configure(self) -> None:
        self.write_config()
        if self.passwd.is_file() and self.passwd.stat().st_size > 0:
            return
        new = self.passwd.with_name("passwd.new")
        new.unlink(missing_ok=True)
        os.close(os.open(new, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
        if run(["mosquitto_passwd", "-b", new, USER, PASSWORD]) != 0:
            raise BrokerError(f"mqtt: mosquitto_passwd could not write {new}")
        new.replace(self.passwd)

    # ---------------------------------------------------------------------- lifecycle
    def pid(self) -> int | None:
        return pid_of(self.pidfile, "mosquitto")

    def answers(self) -> bool:
        """A real MQTT round trip on both listeners ($SYS topics are retained)."""
        sub = ["mosquitto_sub", "-h", HOST, "-t", "$SYS/broker/version", "-C", "1", "-W", "3"]
        return (
            run([*sub, "-p", str(PORT)]) == 0
            and run([*sub, "-p", str(AUTH_PORT), "-u", USER, "-P", PASSWORD]) == 0
        )

    def up(self) -> None:
        t0 = now()
        pid = self.pid()
        if pid is not None and port_open(PORT) and port_open(AUTH_PORT):
            self.say(f"already up on {HOST}:{PORT} and {HOST}:{AUTH_PORT} (pid {pid})")
            return
        if pid is not None:
            err(f"mqtt: pid {pid} runs but does not listen, restarting it")
            terminate(pid)
            wait_exit(pid, 20)
        for port in (PORT, AUTH_PORT):
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
            self.fail(
                f"no answer on {HOST}:{PORT}/{AUTH_PORT} after {self.timeout}s, see {self.log}",
                *logs,
            )
        self.say(
            f"up on {HOST}:{PORT} (anonymous) and {HOST}:{AUTH_PORT} (user {USER}) in {elapsed(t0)}"
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
        up = port_open(PORT) and port_open(AUTH_PORT)
        where = f"{HOST}:{PORT}, {HOST}:{AUTH_PORT} (auth)"
        return self.status_line(up, where + (f" (pid {pid})" if pid is not None else ""))
