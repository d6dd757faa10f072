"""Toxiproxy (Shopify's TCP fault injector) for the network-fault tests (tests/faults):
its HTTP API on 127.0.0.1:8474, no proxies of its own (the tests create them through
the API, e.g. ``rabbit`` 127.0.0.1:30672 -> 127.0.0.1:5672, and delete them again).

The server is built once from its Go module (``go install
github.com/Shopify/toxiproxy/v2/cmd/server@VERSION``) into CACHE/toxiproxy-VERSION,
with Go's module and build caches beside it during the build (removed after it);
``.complete`` marks a finished build.
Pid file and log in STATE/toxiproxy."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.request

from .base import Broker
from .common import HOST, BrokerError, Settings, elapsed, ensure_dirs, now, timestamp
from .procs import alive, pid_of, port_open, run, terminate, wait_exit, wait_until

VERSION = "2.5.0"
MODULE = "github.com/Shopify/toxiproxy/v2/cmd/server"
PORT = 8474
#: Where Go is installed in CI images and here; else ``go`` on PATH.
GO = "/usr/local/go/bin/go"
#: Seconds the first build may take (module downloads and compilation).
BUILD_TIMEOUT = 600


class Toxiproxy(Broker):
    name = "toxiproxy"

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.home = settings.cache / f"toxiproxy-{VERSION}"
        self.binary = self.home / "server"
        self.pidfile = self.dir / "toxiproxy.pid"
        self.log = self.dir / "toxiproxy.log"
        self.build_log = self.dir / "build.log"

    @property
    def ports(self) -> tuple[int, ...]:
        return (PORT,)

    # ------------------------------------------------------------------------- build
    def built(self) -> bool:
        try:
            return (self.home / ".complete").read_text().strip() == VERSION and (
                os.access(self.binary, os.X_OK)
            )
        except OSError:
            return False

    def go(self) -> str:
        found = GO if os.access(GO, os.X_OK) else shutil.which("go")
        if found is None:
            raise BrokerError(f"toxiproxy: no Go toolchain ({GO}, or go on PATH) to build it")
        return found

    def build(self) -> None:
        """``go install MODULE@vVERSION`` into the cache, unless built already."""
        if self.built():
            return
        t0 = now()
        ensure_dirs(self.dir)
        self.say(f"building toxiproxy-server {VERSION} into {self.home} (log {self.build_log})")
        self.binary.unlink(missing_ok=True)
        (self.home / ".complete").unlink(missing_ok=True)
        ensure_dirs(self.home)
        env = {
            **os.environ,
            "GOBIN": str(self.home),
            "GOPATH": str(self.home / "gopath"),
            "GOCACHE": str(self.home / "gocache"),
            "GOFLAGS": "-modcacherw",  # the module cache can be removed with rm -rf
            "CGO_ENABLED": "0",
        }
        argv = [self.go(), "install", f"{MODULE}@v{VERSION}"]
        code = run(argv, log=self.build_log, append=False, timeout=BUILD_TIMEOUT, env=env)
        if code != 0 or not os.access(self.binary, os.X_OK):
            self.fail(f"go install failed (exit {code}), see {self.build_log}", self.build_log)
        for scratch in ("gopath", "gocache"):  # ~170 MB of sources and objects
            shutil.rmtree(self.home / scratch, ignore_errors=True)
        (self.home / ".complete").write_text(VERSION + "\n")
        self.say(f"built in {elapsed(t0)}")

    # --------------------------------------------------------------------- lifecycle
    def configure(self) -> None:
        ensure_dirs(self.dir)

    def pid(self) -> int | None:
        return pid_of(self.pidfile, str(self.binary))

    def answers(self) -> bool:
        """``GET /proxies`` answers with a JSON object (a binary built by ``go install``
        says ``git`` for ``/version``: its version is set by release builds only)."""
        try:
            with urllib.request.urlopen(f"http://{HOST}:{PORT}/proxies", timeout=2) as r:
                return isinstance(json.loads(r.read()), dict)
        except (OSError, ValueError):
            return False

    def up(self) -> None:
        t0 = now()
        pid = self.pid()
        if pid is not None and self.answers():
            self.say(f"already up on {HOST}:{PORT} (pid {pid})")
            return
        if pid is None and port_open(PORT):
            raise BrokerError(
                f"toxiproxy: {HOST}:{PORT} is taken by a process that is not our Toxiproxy "
                f"(no live pid in {self.pidfile}); stop it first"
            )
        self.build()
        self.configure()
        started: subprocess.Popen[bytes] | None = None
        if pid is None:
            self.say(f"starting (log {self.log})")
            with self.log.open("ab") as out:
                out.write(f"== {timestamp()} starting toxiproxy-server\n".encode())
                out.flush()
                started = subprocess.Popen(
                    [str(self.binary), "-host", HOST, "-port", str(PORT)],
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    close_fds=True,
                    env={**os.environ, "LOG_LEVEL": "info"},  # not a line per API call
                )
            self.pidfile.write_text(f"{started.pid}\n")
            pid = started.pid
        running = pid

        def still_running() -> None:
            if (started.poll() is None) if started else alive(running):
                return
            self.pidfile.unlink(missing_ok=True)
            self.fail(f"toxiproxy-server exited during startup, see {self.log}", self.log)

        if not wait_until(self.answers, self.timeout, 0.1, still_running):
            self.fail(f"no answer on {HOST}:{PORT} after {self.timeout}s, see {self.log}", self.log)
        self.say(f"up on {HOST}:{PORT} (HTTP API) in {elapsed(t0)}")

    def down(self) -> None:
        t0 = now()
        pid = self.pid()
        if pid is None:
            self.say("already down")
            return
        terminate(pid)
        wait_exit(pid, 10)
        self.pidfile.unlink(missing_ok=True)
        self.say(f"down in {elapsed(t0)}")

    def status(self) -> bool:
        pid = self.pid()
        up = self.answers()
        where = f"{HOST}:{PORT} (HTTP API)"
        return self.status_line(up, where + (f" (pid {pid})" if pid is not None else ""))
