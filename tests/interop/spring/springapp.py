"""Build and run the Spring Cloud Stream app of the interop tests (``app/`` beside this).

* :func:`require_java_and_maven` skips the calling test (fails it in CI) where Java 17+
  or Maven is missing.
* :func:`build_app` builds the app with Maven when ``pom.xml`` or a file under ``src/``
  changed since the last build (or there was none), extracts the jar and makes a
  class data sharing archive for a quick start; otherwise it costs a few ``stat``
  calls.  The local Maven repository (``~/.m2``) keeps the dependencies between builds.
* :func:`spring_app` (a :class:`SpringApp`) runs the app on one broker with the test's
  binding properties, waits until its consumer bindings are really ready (judging by
  its log), and stops it with SIGTERM (SIGKILL after a deadline).  Use it with
  ``with`` or ``async with``.

The app (``InteropApp.java``) has the functions ``relay``, ``fail``, ``member``,
``partitioned`` and ``dlqinspect``, each with one input binding ``<name>-in-0`` and
(except ``fail``) one output ``<name>-out-0``.  A run enables only the functions whose
bindings the properties name (so an unused function declares no destination), unless
the properties set ``spring.cloud.function.definition`` themselves.
"""

from __future__ import annotations

import fcntl
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import TracebackType
from typing import IO, Protocol, Self

import pytest

from binder.testing.brokers import in_ci

__all__ = [
    "APP_DIR",
    "CDS_ARCHIVE",
    "FAT_JAR",
    "FUNCTIONS",
    "JAR",
    "JAVA_OPTIONS",
    "JAVA_REASON",
    "RUN_DIR",
    "BuildError",
    "ConsumerBinding",
    "SpringApp",
    "SpringAppError",
    "SpringFactory",
    "build_app",
    "java_version",
    "require_java_and_maven",
    "spring_app",
]

#: The Maven project of the Spring Cloud Stream app.
APP_DIR = Path(__file__).resolve().parent / "app"
#: The executable jar Maven makes (``<finalName>`` in ``pom.xml``).
FAT_JAR = APP_DIR / "target" / "eventbinder-interop.jar"
#: Where :func:`build_app` extracts it (Spring Boot's ``extract``: the app's jar plus
#: ``lib/``), which starts faster than the nested jar and allows class data sharing.
RUN_DIR = APP_DIR / "target" / "run"
#: The jar the tests run (in :data:`RUN_DIR`).
JAR = RUN_DIR / FAT_JAR.name
#: The class data sharing archive of the app's classes, made by a training run of the
#: app (``-XX:ArchiveClassesAtExit``; Spring stops after the context refresh, before
#: connecting to any broker). It halves the start-up time; without it (the training
#: failed, say) the app starts all the same.
CDS_ARCHIVE = RUN_DIR / "app.jsa"
#: Written last by a successful build: the build is fresh while it is newer than
#: every source.
_BUILT = RUN_DIR / ".built"
#: The functions of ``InteropApp``; each has the input binding ``<name>-in-0``.
FUNCTIONS = ("relay", "fail", "member", "partitioned", "dlqinspect")
#: Why the interop tests cannot run (the skip reason).
JAVA_REASON = "needs Java 17+ and Maven (mvn) to build the Spring Cloud Stream app"
#: JVM options for a quick start on a small machine (2 cores): C1 only, class data
#: sharing of the JDK's classes, a small heap with the serial collector, small stacks.
JAVA_OPTIONS = (
    "-XX:TieredStopAtLevel=1",
    "-Xshare:auto",
    "-XX:+UseSerialGC",
    "-Xms64m",
    "-Xmx256m",
    "-Xss512k",
)
#: Maven's command line: batch mode, quiet (errors only), no colours, no tests.
MAVEN_COMMAND = ("mvn", "-B", "-q", "-Dstyle.color=never", "package", "-DskipTests")
#: The line Spring Boot logs once the context is refreshed and every binding started.
STARTED = re.compile(r"Started InteropApp in (?P<seconds>[\d.]+) seconds")
#: Spring Cloud Stream's Kafka binder, when a consumer's partitions are assigned:
#: ``<group>: partitions assigned: [orders-0, orders-1]`` (possibly ``[]``).
KAFKA_ASSIGNED = re.compile(r" (?P<group>\S+): partitions assigned: \[(?P<partitions>[^\]]*)\]")
#: Spring Integration's AMQP inbound adapter, once its listener container is consuming
#: the queue: ``started bean 'inbound.<queue>'``.
RABBIT_STARTED = re.compile(r"started bean 'inbound\.(?P<queue>[^']+)'")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_BINDING_KEY = re.compile(
    r"^spring\.cloud\.stream\.(?:(?:kafka|rabbit)\.)?bindings\.(?P<function>[A-Za-z]\w*)-(?:in|out)-\d+\."
)


# -- Java and Maven ----------------------------------------------------------------


@cache
def java_version() -> int | None:
    """The feature release of ``java`` on the PATH (8 for 1.8, 17 for 17.0.15), or
    None when there is no ``java`` or its ``-version`` cannot be read."""
    java = shutil.which("java")
    if java is None:
        return None
    try:
        done = subprocess.run(
            [java, "-version"], capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = re.search(r'version "(\d+)(?:\.(\d+))?', done.stderr + done.stdout)
    if found is None:
        return None
    major = int(found.group(1))
    return int(found.group(2) or 0) if major == 1 else major


def _missing() -> str | None:
    """What is missing to build and run the app, or None."""
    version = java_version()
    if version is None:
        return "no java on the PATH"
    if version < 17:
        return f"java on the PATH is Java {version}"
    if shutil.which("javac") is None:
        return "no javac on the PATH: a JRE, Maven needs a JDK"
    if shutil.which("mvn") is None:
        return "no mvn on the PATH"
    return None


def require_java_and_maven() -> None:
    """Skip the calling test where Java 17+ or Maven is missing; fail it when ``CI`` is
    true (missing infrastructure is an error in CI, as a missing broker is)."""
    missing = _missing()
    if missing is None:
        return
    reason = f"{JAVA_REASON} ({missing})"
    if in_ci():
        pytest.fail(f"CI=true and the test {reason}", pytrace=False)
    pytest.skip(reason)


# -- building ------------------------------------------------------------------------


class BuildError(RuntimeError):
    """Maven could not build the app; the message ends with Maven's last lines."""


def _sources() -> Iterable[Path]:
    """Every input of the build: the POM, everything under ``src/`` and the folders
    (a deleted or renamed file changes its folder's modification time)."""
    yield APP_DIR / "pom.xml"
    src = APP_DIR / "src"
    yield src
    yield from src.rglob("*")


def _stale() -> bool:
    """True when the app was never built, or a source changed since."""
    try:
        built = _BUILT.stat().st_mtime
    except FileNotFoundError:
        return True
    return any(path.stat().st_mtime > built for path in _sources())


def _tail(text: str, lines: int) -> str:
    return "\n".join(_ANSI.sub("", text).rstrip().splitlines()[-lines:])


def _run(command: Sequence[str], what: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """Run a build step in the app's folder; :class:`BuildError` with the last 40
    lines of its output when it fails or outlasts ``timeout``."""
    shown = " ".join(command)
    try:
        done = subprocess.run(
            command,
            cwd=APP_DIR,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as timed_out:
        output = timed_out.output or ""
        text = output.decode(errors="replace") if isinstance(output, bytes) else output
        raise BuildError(
            f"{what} (`{shown}` in {APP_DIR}) did not finish within {timeout:g}s; "
            f"its last lines:\n{_tail(text, 40)}"
        ) from None
    if done.returncode != 0:
        raise BuildError(
            f"{what} (`{shown}` in {APP_DIR}) failed with exit code {done.returncode}; "
            f"its last lines:\n{_tail(done.stdout, 40)}"
        )
    return done


def _train_class_data(timeout: float) -> None:
    """Make :data:`CDS_ARCHIVE` with a training run that stops after the context
    refresh (both binders' contexts are created then; no broker is contacted).  Best
    effort: without the archive the app starts all the same, only slower; the run's
    output stays in ``cds-training.log``."""
    command = [
        "java",
        f"-XX:ArchiveClassesAtExit={CDS_ARCHIVE}",
        "-Dspring.context.exit=onRefresh",
        *JAVA_OPTIONS,
        "-jar",
        str(JAR),
        # output bindings are bound during the refresh: one on each binder
        "--spring.cloud.function.definition=relay;member",
        "--spring.cloud.stream.bindings.relay-out-0.binder=kafka",
        "--spring.cloud.stream.bindings.member-out-0.binder=rabbit",
    ]
    log = RUN_DIR / "cds-training.log"
    try:
        with open(log, "wb") as out:
            done = subprocess.run(
                command,
                cwd=RUN_DIR,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                check=False,
            )
        trained = done.returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        trained = False
    if not trained:
        CDS_ARCHIVE.unlink(missing_ok=True)


def build_app(*, timeout: float = 900.0) -> Path:
    """The app's jar (:data:`JAR`), built first when it was never built or
    ``pom.xml`` or a file under ``src/`` changed since.

    The build runs ``mvn -B -q package -DskipTests``, extracts the executable jar into
    :data:`RUN_DIR` and makes the class data sharing archive (see
    :data:`CDS_ARCHIVE`).  The local Maven repository (``~/.m2``) keeps the
    dependencies, so only the first build downloads them.  An exclusive lock
    (``target/.build.lock``) keeps two processes from building at once; the second
    finds the build fresh when it gets the lock.  A failed or timed-out step raises
    :class:`BuildError` with its last 40 lines of output.
    """
    if not _stale():
        return JAR
    target = FAT_JAR.parent
    target.mkdir(exist_ok=True)
    with open(target / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _stale():  # built by another process while we waited
            return JAR
        shutil.rmtree(RUN_DIR, ignore_errors=True)
        _run(MAVEN_COMMAND, "the Maven build of the Spring app", timeout)
        if not FAT_JAR.exists():
            raise BuildError(f"Maven succeeded but made no {FAT_JAR}")
        extract = ("java", "-Djarmode=tools", "-jar", str(FAT_JAR), "extract")
        _run((*extract, "--destination", str(RUN_DIR)), "extracting the Spring app", 300)
        _train_class_data(300)
        _BUILT.touch()
    return JAR


# -- running ---------------------------------------------------------------------------


class SpringAppError(RuntimeError):
    """The Spring app did not start, or not in time; the message ends with its log."""


@dataclass(frozen=True)
class ConsumerBinding:
    """An input binding of the running app, and where it consumes from."""

    name: str
    destinations: tuple[str, ...]
    group: str | None

    def ready_on_kafka(self, group: str, topics: set[str]) -> bool:
        """True when a ``<group>: partitions assigned: [...]`` line with these topics
        (``topics`` taken from its partitions) is about this binding.  An empty
        assignment counts for a named group: the other members of the group have
        every partition, but this member has joined."""
        if self.group is None:
            if not group.startswith("anonymous."):
                return False
        elif group != self.group:
            return False
        return bool(topics & set(self.destinations)) or (not topics and self.group is not None)

    def rabbit_queues(self) -> tuple[str, ...]:
        """The queue name of each destination (``<destination>.<group>``), or its prefix
        for an anonymous consumer (``<destination>.anonymous.``)."""
        suffix = "anonymous." if self.group is None else self.group
        return tuple(f"{destination}.{suffix}" for destination in self.destinations)


def _functions(properties: Mapping[str, str]) -> tuple[str, ...]:
    """The functions a run enables: the definition the properties give, else each
    function a binding property names, in order."""
    definition = properties.get("spring.cloud.function.definition")
    if definition is not None:
        return tuple(name for name in re.split(r"[;,]", definition) if name)
    named: dict[str, None] = {}
    for key in properties:
        found = _BINDING_KEY.match(key)
        if found is not None:
            named[found.group("function")] = None
    unknown = sorted(set(named) - set(FUNCTIONS))
    if unknown:
        raise ValueError(f"no function {', '.join(unknown)} in the app; it has {FUNCTIONS}")
    if not named:
        raise ValueError(
            "the properties name no binding (spring.cloud.stream.bindings.<function>-in-0"
            ".destination=...), so the app would consume nothing"
        )
    return tuple(named)


class SpringApp:
    """The Spring Cloud Stream app running on one broker (see :func:`spring_app`).

    ``start()`` launches it and ``wait_ready()`` waits until Spring Boot says it started
    and every consumer binding is ready: on Kafka its partitions are assigned (the
    binder's ``partitions assigned`` line), on RabbitMQ its listener container consumes
    the queue.  (A Kafka consumer without group management, ``auto-rebalance-enabled:
    false``, logs no assignment and is never seen as ready.)  ``stop()`` sends SIGTERM
    and, after ``stop_timeout``, SIGKILL.  ``with`` / ``async with`` do all three (the
    async form waits in a thread).
    """

    def __init__(
        self,
        broker: str,
        properties: Mapping[str, str],
        *,
        log_path: Path,
        jar: Path = JAR,
        java_options: Sequence[str] = JAVA_OPTIONS,
        ready_timeout: float = 120.0,
        stop_timeout: float = 20.0,
    ) -> None:
        if broker not in ("rabbit", "kafka"):
            raise ValueError(f"broker must be 'rabbit' or 'kafka', not {broker!r}")
        self.broker = broker
        self.properties = dict(properties)
        self.functions = _functions(self.properties)
        self.log_path = log_path
        self.ready_timeout = ready_timeout
        self.stop_timeout = stop_timeout
        #: Seconds from the launch until ready (``None`` before).
        self.startup_seconds: float | None = None
        #: What Spring Boot itself reports ("Started InteropApp in N seconds").
        self.boot_seconds: float | None = None
        self.consumers = tuple(
            ConsumerBinding(
                name,
                tuple(self._binding(name, "destination", name).split(",")),
                self.properties.get(f"spring.cloud.stream.bindings.{name}.group") or None,
            )
            for name in (f"{function}-in-0" for function in self.functions)
        )
        arguments = {
            "spring.cloud.stream.default-binder": broker,
            "spring.rabbitmq.host": "127.0.0.1",
            "spring.rabbitmq.port": "5672",
            "spring.kafka.bootstrap-servers": "127.0.0.1:9092",
            "spring.cloud.stream.kafka.binder.brokers": "127.0.0.1:9092",
            "spring.cloud.function.definition": ";".join(self.functions),
            **self.properties,
        }
        archive = jar.parent / CDS_ARCHIVE.name
        class_data = [f"-XX:SharedArchiveFile={archive}"] if archive.exists() else []
        self.command = [
            "java",
            *java_options,
            *class_data,
            "-jar",
            str(jar),
            *(f"--{key}={value}" for key, value in arguments.items()),
        ]
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._started_at = 0.0

    def _binding(self, binding: str, key: str, default: str) -> str:
        return self.properties.get(f"spring.cloud.stream.bindings.{binding}.{key}", default)

    def __repr__(self) -> str:
        return f"<SpringApp {self.broker} {';'.join(self.functions)} log={self.log_path}>"

    # -- life cycle ---------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        """The JVM's process id while it runs."""
        return None if self._process is None else self._process.pid

    def start(self) -> None:
        """Launch the JVM, its output (stdout and stderr) going to ``log_path``."""
        if self._process is not None:
            raise RuntimeError(f"{self!r} was started already")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed by stop()
        self._log.write(("$ " + " ".join(self.command) + "\n").encode())
        self._log.flush()
        self._started_at = time.monotonic()
        self._process = subprocess.Popen(
            self.command,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C of pytest reaches it only through stop()
        )

    def log_text(self) -> str:
        """Everything the app logged so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 60) -> str:
        """The app's last ``lines`` log lines."""
        return _tail(self.log_text(), lines)

    def _unready(self, log: str) -> list[str]:
        """What the app has not reported yet, judging by ``log``."""
        waiting = [] if STARTED.search(log) else ["Spring Boot's 'Started InteropApp' line"]
        if self.broker == "kafka":
            assigned = [
                (found.group("group"), _topics(found.group("partitions")))
                for found in KAFKA_ASSIGNED.finditer(log)
            ]
            waiting += [
                f"partitions assigned to {consumer.name} ({','.join(consumer.destinations)})"
                for consumer in self.consumers
                if not any(consumer.ready_on_kafka(group, topics) for group, topics in assigned)
            ]
        else:
            started = [found.group("queue") for found in RABBIT_STARTED.finditer(log)]
            waiting += [
                f"{consumer.name} consuming queue {queue}"
                for consumer in self.consumers
                for queue in consumer.rabbit_queues()
                if not any(
                    name == queue or (queue.endswith(".") and name.startswith(queue))
                    for name in started
                )
            ]
        return waiting

    def problems(self, limit: int = 8) -> str:
        """The last ``limit`` warnings, errors and ``Caused by:`` lines of the app's log
        (what went wrong, for an assertion message), or a note that there are none."""
        lines = [
            line[:400]
            for line in self.log_text().splitlines()
            if (" WARN " in line or " ERROR " in line or line.startswith("Caused by:"))
            and "Failed to locate function" not in line  # Spring's harmless early lookup
        ]
        if not lines:
            return f"no warning or error in {self.log_path}"
        return f"{self.log_path} says:\n" + "\n".join(lines[-limit:])

    def _report(self) -> str:
        """Its warnings and errors, then the last lines of its log."""
        return f"{self.problems()}\nlast lines:\n{self.log_tail(25)}"

    def wait_ready(self, timeout: float | None = None) -> None:
        """Wait until the app started and each consumer binding is ready (see the
        class), looking at its log every 50 ms; :class:`SpringAppError` with the log's
        tail when the JVM exits first or ``timeout`` (``ready_timeout``) passes."""
        process = self._require_process()
        limit = self.ready_timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        while True:
            log = self.log_text()
            waiting = self._unready(log)
            if not waiting:
                self.startup_seconds = time.monotonic() - self._started_at
                started = STARTED.search(log)
                self.boot_seconds = float(started.group("seconds")) if started else None
                return
            code = process.poll()
            if code is not None:
                raise SpringAppError(
                    f"the Spring app ({self.broker}) exited with {code} before it was ready; "
                    f"{self._report()}"
                )
            if time.monotonic() >= deadline:
                self.stop()
                raise SpringAppError(
                    f"the Spring app ({self.broker}) was not ready within {limit:g}s: no "
                    f"{'; no '.join(waiting)}; {self._report()}"
                )
            time.sleep(0.05)  # polling the log, bounded by the deadline above

    def wait_for_log(self, pattern: str | re.Pattern[str], timeout: float = 30.0) -> re.Match[str]:
        """The first match of ``pattern`` in the app's log, waiting for it (every 50 ms)
        until ``timeout``; an :class:`AssertionError` with the log's tail after that."""
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        while True:
            found = regex.search(self.log_text())
            if found is not None:
                return found
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"the Spring app logged nothing matching {regex.pattern!r} within "
                    f"{timeout:g}s; last lines:\n{self.log_tail()}"
                )
            time.sleep(0.05)  # polling the log, bounded by the deadline above

    def stop(self) -> int | None:
        """SIGTERM (a graceful Spring shutdown), SIGKILL when the JVM is still there
        after ``stop_timeout``; returns its exit code (None when it never started)."""
        process = self._process
        if process is None:
            return None
        try:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(self.stop_timeout)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(30)
            return process.returncode
        finally:
            if self._log is not None:
                self._log.close()
                self._log = None

    def _require_process(self) -> subprocess.Popen[bytes]:
        if self._process is None:
            raise RuntimeError(f"{self!r} is not started")
        return self._process

    # -- context managers -----------------------------------------------------------

    def __enter__(self) -> Self:
        self.start()
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        import asyncio

        # Launched from the caller's thread; only the waiting happens in a worker.
        self.start()
        try:
            await asyncio.to_thread(self.wait_ready)
        except BaseException:
            await asyncio.to_thread(self.stop)
            raise
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        import asyncio

        await asyncio.to_thread(self.stop)


class SpringFactory(Protocol):
    """The ``spring`` fixture: ``spring(broker, properties, name="spring")`` makes a
    :class:`SpringApp` (not started; ``async with`` it), stopped at the test's end."""

    def __call__(
        self, broker: str, properties: Mapping[str, str], *, name: str = "spring"
    ) -> SpringApp: ...


def _topics(partitions: str) -> set[str]:
    """``{"orders"}`` from ``"orders-0, orders-1"``."""
    return {item.strip().rsplit("-", 1)[0] for item in partitions.split(",") if item.strip()}


def spring_app(
    broker: str,
    properties: Mapping[str, str],
    *,
    log_path: Path,
    jar: Path = JAR,
    java_options: Sequence[str] = JAVA_OPTIONS,
    ready_timeout: float = 120.0,
    stop_timeout: float = 20.0,
) -> SpringApp:
    """The Spring app on ``broker`` (``"rabbit"`` or ``"kafka"``) with ``properties``
    (Spring property names without ``--``, e.g.
    ``{"spring.cloud.stream.bindings.relay-in-0.destination": "orders"}``), logging to
    ``log_path``; use it as a context manager::

        async with spring_app("kafka", props, log_path=tmp_path / "spring.log") as app:
            ...  # every consumer binding of the app is ready here

    The app is ready when the ``with`` block starts (see :class:`SpringApp`) and
    stopped when it ends.
    """
    return SpringApp(
        broker,
        properties,
        log_path=log_path,
        jar=jar,
        java_options=java_options,
        ready_timeout=ready_timeout,
        stop_timeout=stop_timeout,
    )
