"""Java brokers: jars fetched from Maven Central by a dependency-list pom and cached,
and Java command line classes run with them."""

from __future__ import annotations

import hashlib
import re
import shutil
from collections.abc import Sequence
from pathlib import Path

from .common import BrokerError, elapsed, log_hint, now, say
from .procs import run

#: Quick JVM start for short-lived tool runs.
TOOL_JVM = ("-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-Xshare:auto", "-Xmx256m")


def pom_property(pom: Path, name: str) -> str:
    """A ``<properties>`` value of the pom, e.g. ``kafka.version``."""
    found = re.search(rf"<{re.escape(name)}>(.*?)</{re.escape(name)}>", pom.read_text())
    if not found:
        raise BrokerError(f"{pom} has no <{name}>")
    return found[1]


def fetched(pom: Path, lib: Path) -> bool:
    """``lib`` holds the jars of this very pom (its .complete marker has the pom's hash)."""
    stamp = lib / ".complete"
    want = hashlib.sha256(pom.read_bytes()).hexdigest()
    try:
        return stamp.read_text().rstrip("\n") == want
    except OSError:
        return False


def fetch_jars(pom: Path, lib: Path, log: Path, *, who: str, what: str) -> None:
    """``mvn dependency:copy-dependencies`` of ``pom`` into ``lib``, unless done already;
    ``lib/.complete`` (the pom's SHA-256) marks a finished copy."""
    if fetched(pom, lib):
        return
    t0 = now()
    say(f"{who}: fetching {what} jars from Maven Central into {lib} (log {log})")
    shutil.rmtree(lib, ignore_errors=True)
    lib.mkdir(parents=True)
    argv: list[str | Path] = ["mvn", "-B", "-q", "-Dstyle.color=never", "-f", pom]
    argv += ["dependency:copy-dependencies"]
    argv += ["-DincludeScope=runtime", f"-DoutputDirectory={lib}"]
    if run(argv, log=log, append=False) != 0:
        log_hint(log)
        shutil.rmtree(lib, ignore_errors=True)
        raise BrokerError(f"{who}: could not fetch the jars with Maven, see {log}")
    (lib / ".complete").write_text(hashlib.sha256(pom.read_bytes()).hexdigest() + "\n")
    jars = sum(1 for _ in lib.rglob("*.jar"))
    say(f"{who}: jars fetched in {elapsed(t0)} ({jars} jars)")


def java_command(lib: Path, jvm: Sequence[str], props: dict[str, str], *args: str) -> list[str]:
    """``java JVM -Dk=v... -cp 'lib/*' ARGS``."""
    return ["java", *jvm, *(f"-D{k}={v}" for k, v in props.items()), "-cp", f"{lib}/*", *args]
