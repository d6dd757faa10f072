"""docker-compose.yml runs the brokers of scripts/brokers: same versions, ports, listeners.

There is no Docker engine where eventbinder is developed, so the file is checked without
one: its YAML, the image tags against the versions scripts/brokers runs (Debian's
packages, the Kafka version of scripts/kafka/pom.xml), the published ports against the
ports of scripts/brokers, and the broker configurations the containers write from the same
templates (scripts/mosquitto.conf, scripts/kafka/server.properties), rendered here with
the containers' own sed expressions. ``docker compose config`` runs where Docker Compose
is installed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yml"
POM = REPO / "scripts" / "kafka" / "pom.xml"
# scripts/brokers is the Python package scripts/brokerctl: its values are read from it.
if str(REPO / "scripts") not in sys.path:
    sys.path.insert(0, str(REPO / "scripts"))

from brokerctl import cli, common, kafka, mqtt, rabbit  # noqa: E402
from brokerctl.base import Broker as Ours  # noqa: E402

SETTINGS = common.Settings(state=Path("/state"), cache=Path("/cache"), timeout=90)


@dataclass(frozen=True)
class Broker:
    """A compose service and what it mirrors in scripts/brokers."""

    ours: str  # the broker's name in scripts/brokers: rabbit, mqtt, kafka
    image: str  # the image repository
    debian: str | None  # the Debian package scripts/brokers installs, if any
    template: str | None  # the configuration template the container fills in


SERVICES = {
    "rabbitmq": Broker("rabbit", "rabbitmq", "rabbitmq-server", None),
    "mosquitto": Broker("mqtt", "eclipse-mosquitto", "mosquitto", "scripts/mosquitto.conf"),
    "kafka": Broker("kafka", "apache/kafka", None, "scripts/kafka/server.properties"),
}
# Template placeholders whose value differs in a container by design (paths, the address
# to listen on, the user to run as); every other one must get scripts/brokers' value.
CONTAINER_SPECIFIC = {"@STATE_DIR@", "@BIND_ADDRESS@", "@RUN_USER@"}
PLACEHOLDER = re.compile(r"@[A-Z_]+@")


# -------------------------------------------------------------------------- helpers


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    return data


def service(name: str) -> dict[str, Any]:
    services = compose()["services"]
    assert name in services, f"docker-compose.yml has no service {name!r}"
    spec: dict[str, Any] = services[name]
    return spec


def command(name: str) -> str:
    """The service's shell script, as the container's shell gets it."""
    parts = service(name).get("command") or []
    script = parts if isinstance(parts, str) else "\n".join(parts)
    # compose's escape for a literal $; continued lines joined
    return script.replace("$$", "$").replace("\\\n", " ")


def ours(name: str) -> Ours:
    """scripts/brokers' broker ``name`` (rabbit, mqtt, kafka)."""
    return cli.BROKERS[name](SETTINGS)


#: Listeners scripts/brokers adds with its throwaway certificates, and Kafka's listener
#: for the fault tests' proxy; the compose file, which has no certificates and no
#: proxy, leaves them out (docs/brokers.md says so).
TLS_ONLY_PORTS = {
    rabbit.TLS_PORT,
    mqtt.TLS_PORT,
    mqtt.MTLS_PORT,
    kafka.SSL_PORT,
    kafka.SASL_SSL_PORT,
    kafka.FAULTS_PORT,
}


def brokers_ports(name: str) -> set[int]:
    """The ports scripts/brokers gives one broker, without its TLS (and fault) listeners."""
    ports = set(ours(name).ports) - TLS_ONLY_PORTS
    assert ports, f"scripts/brokers gives {name} no ports"
    return ports


def brokers_template_values(name: str) -> dict[str, str]:
    """What scripts/brokers puts for each placeholder of the broker's template."""
    broker = ours(name)
    assert isinstance(broker, mqtt.Mqtt | kafka.Kafka), f"{name} has no template"
    return broker.template_values()


def kafka_version() -> str:
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    version = ET.parse(POM).getroot().findtext("m:properties/m:kafka.version", namespaces=ns)
    assert version, "scripts/kafka/pom.xml has no <kafka.version>"
    return version


def debian_version(package: str) -> str | None:
    """The version of ``package`` scripts/brokers installs here: the installed one, else
    apt's candidate; None where neither dpkg nor apt knows it."""
    env = {**os.environ, "LC_ALL": "C"}

    def run(*args: str) -> str:
        if shutil.which(args[0]) is None:
            return ""
        result = subprocess.run(
            args, capture_output=True, text=True, env=env, timeout=60, check=False
        )
        return result.stdout if result.returncode == 0 else ""

    status, _, version = run("dpkg-query", "-W", "-f=${Status}\t${Version}", package).partition(
        "\t"
    )
    if status.endswith(" installed") and version:
        return version
    candidate = re.search(r"^\s*Candidate:\s*(\S+)", run("apt-cache", "policy", package), re.M)
    if candidate and candidate.group(1) != "(none)":
        return candidate.group(1)
    return None


def upstream(debian: str) -> str:
    """3.10.8 of 3.10.8-1.1+deb12u1 (no epoch, no Debian revision)."""
    return re.sub(r"^\d+:", "", debian).rpartition("-")[0] or debian


def published_ports(name: str) -> list[tuple[str, int, int]]:
    """(host address, host port, container port) of each port the service publishes."""
    ports = []
    for entry in service(name).get("ports") or []:
        match = re.fullmatch(r"([0-9.]+):(\d+):(\d+)", str(entry))
        assert match, (
            f"docker-compose.yml: {name} publishes {entry!r}; write ports as "
            "'ADDRESS:PORT:PORT' (bound to scripts/brokers' address)"
        )
        ports.append((match[1], int(match[2]), int(match[3])))
    return ports


# A sed expression the renderer understands: [/ADDRESS/]s|PATTERN|REPLACEMENT|[g], where
# ADDRESS and PATTERN use no groups, alternatives or repetition counts (the same regular
# expressions in sed and Python) and REPLACEMENT no back-references.
SED_EXPRESSION = re.compile(
    r"(?:/(?P<address>[^/]*)/)?s\|(?P<pattern>[^|]*)\|(?P<new>[^|]*)\|(?P<g>g?)"
)


@dataclass(frozen=True)
class Substitution:
    address: str | None
    pattern: str
    new: str
    every: bool

    def apply(self, line: str) -> str:
        if self.address is not None and not re.search(self.address, line):
            return line
        return re.sub(self.pattern, lambda _m: self.new, line, count=0 if self.every else 1)


def sed_expressions(script: str, template: str, variables: dict[str, str]) -> list[Substitution]:
    """The -e expressions of the one sed command in ``script`` that reads ``template``;
    ``$NAME`` inside double quotes takes its value from ``variables`` if it has one."""
    commands = [line for line in script.splitlines() if "sed " in line and template in line]
    assert len(commands) == 1, f"expected one sed command reading {template}, found {commands}"
    expressions = []
    for quote, text in re.findall(r"-e\s+(['\"])(.*?)\1", commands[0]):
        if quote == '"':
            text = re.sub(r"\$\{?(\w+)\}?", lambda m: variables.get(m[1], m[0]), text)
        match = SED_EXPRESSION.fullmatch(text)
        assert match, f"sed expression {text!r} is not of the form [/RE/]s|RE|TEXT|[g]"
        for regex in (match["address"] or "", match["pattern"]):
            assert not re.search(r"[(){}+?|]", regex), f"sed regex {regex!r}: keep it plain"
        assert not re.search(r"[&\\]", match["new"]), f"sed replacement {match['new']!r}"
        expressions.append(
            Substitution(match["address"], match["pattern"], match["new"], bool(match["g"]))
        )
    return expressions


def render(template: str, expressions: list[Substitution]) -> list[str]:
    lines = (REPO / template).read_text(encoding="utf-8").splitlines()
    for expression in expressions:
        lines = [expression.apply(line) for line in lines]
    return lines


def placeholder_values(expressions: list[Substitution]) -> dict[str, str]:
    return {e.pattern: e.new for e in expressions if PLACEHOLDER.fullmatch(e.pattern)}


def shell_assignments(script: str) -> dict[str, str]:
    return dict(re.findall(r"^\s*(\w+)=(\S+)\s*$", script, re.M))


def properties(lines: list[str]) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))
    return {key.strip(): value.strip() for key, value in pairs}


def listeners(value: str) -> list[tuple[str, str, int]]:
    """(name, host, port) of a Kafka listeners value."""
    found = re.findall(r"(\w+)://([^:,]*):(\d+)", value)
    return [(name, host, int(port)) for name, host, port in found]


# ---------------------------------------------------------------------------- tests


def test_compose_runs_the_three_brokers() -> None:
    assert set(compose()["services"]) == set(SERVICES)


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_image_runs_the_version_scripts_brokers_runs(name: str) -> None:
    broker = SERVICES[name]
    image = service(name).get("image", "")
    repository, _, tag = image.rpartition(":")
    assert repository == broker.image, f"{name}: image {image!r}, expected {broker.image}:TAG"
    if broker.debian is None:
        expected, source = kafka_version(), "the Kafka version of scripts/kafka/pom.xml"
    else:
        debian = debian_version(broker.debian)
        if debian is None:
            pytest.skip(
                f"neither dpkg nor apt knows {broker.debian} here, so the version "
                "scripts/brokers would install is unknown (apt-get update first)"
            )
        expected = upstream(debian)
        source = f"Debian's {broker.debian} {debian}, which scripts/brokers installs here"
    assert tag == expected, (
        f"docker-compose.yml runs {image} but {source}: use {broker.image}:{expected} "
        "(and update the versions in its header comment)"
    )


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_ports_are_those_of_scripts_brokers(name: str) -> None:
    broker = SERVICES[name]
    host = common.HOST
    ports = published_ports(name)
    for address, outside, inside in ports:
        assert address == host, f"{name}: port {outside} bound to {address}, not {host}"
        assert outside == inside, f"{name}: host port {outside} maps to container port {inside}"
    published = {outside for _, outside, _ in ports}
    assert published == brokers_ports(broker.ours), (
        f"{name} publishes {sorted(published)}; scripts/brokers uses "
        f"{sorted(brokers_ports(broker.ours))}"
    )


@pytest.mark.parametrize("name", [n for n, b in SERVICES.items() if b.template])
def test_container_fills_in_the_template_as_scripts_brokers_does(name: str) -> None:
    template = SERVICES[name].template
    assert template is not None
    mounted = [str(v).split(":")[0] for v in service(name).get("volumes") or []]
    assert f"./{template}" in mounted, f"{name} does not mount ./{template}"
    script = command(name)
    ours = placeholder_values(
        sed_expressions(script, f"/eventbinder/{Path(template).name}.in", shell_assignments(script))
    )
    theirs = brokers_template_values(SERVICES[name].ours)
    needed = set(PLACEHOLDER.findall((REPO / template).read_text(encoding="utf-8")))
    assert set(theirs) == needed, f"scripts/brokers fills in {sorted(theirs)} of {sorted(needed)}"
    assert set(ours) == needed, f"{name} fills in {sorted(ours)} of {template}'s {sorted(needed)}"
    for placeholder in needed - CONTAINER_SPECIFIC:
        assert ours[placeholder] == theirs[placeholder], (
            f"{name} puts {ours[placeholder]!r} for {placeholder}, scripts/brokers "
            f"{theirs[placeholder]!r}"
        )


def test_mosquitto_config_listens_and_logs_as_meant() -> None:
    script = command("mosquitto")
    lines = render(
        "scripts/mosquitto.conf",
        sed_expressions(script, "mosquitto.conf.in", shell_assignments(script)),
    )
    left = [line for line in lines if PLACEHOLDER.search(line)]
    assert not left, f"the mosquitto service leaves placeholders: {left}"
    found = [line.split() for line in lines if line.startswith("listener ")]
    addresses = {address for _, _, address in found}
    assert addresses == {"0.0.0.0"}, f"Mosquitto listens on {addresses} in its container"
    ports = {int(port) for _, port, _ in found}
    assert ports == {p for _, _, p in published_ports("mosquitto")}, f"listeners {ports}"
    logs = [line for line in lines if line.startswith("log_dest ")]
    assert logs == ["log_dest stdout"], f"Mosquitto's log goes to {logs} in its container"
    credentials = f"{mqtt.USER} {mqtt.PASSWORD}"
    assert re.search(rf"mosquitto_passwd .* {re.escape(credentials)}$", script, re.M), (
        f"the mosquitto service must create the user {credentials} of scripts/brokers"
    )


def test_kafka_config_is_that_of_scripts_brokers_listening_in_the_container() -> None:
    template = "scripts/kafka/server.properties"
    script = command("kafka")
    ours = properties(
        render(template, sed_expressions(script, "server.properties.in", shell_assignments(script)))
    )
    theirs = properties(
        common.render(REPO / template, brokers_template_values("kafka")).splitlines()
    )
    left = [f"{k}={v}" for k, v in ours.items() if PLACEHOLDER.search(k + v)]
    assert not left, f"the kafka service leaves placeholders: {left}"
    inside = [(name, port) for name, _, port in listeners(theirs["listeners"])]
    assert [(name, port) for name, _, port in listeners(ours["listeners"])] == inside, (
        f"listeners={ours['listeners']} in the container, {theirs['listeners']} with "
        "scripts/brokers: the same names and ports are expected"
    )
    hosts = {host for _, host, _ in listeners(ours["listeners"])}
    assert hosts == {"0.0.0.0"}, f"Kafka listens on {hosts} in its container"
    ports = {port for _, port in inside}
    assert ports == {p for _, _, p in published_ports("kafka")}, f"listeners on {ports}"
    differ = {key for key in ours.keys() | theirs.keys() if ours.get(key) != theirs.get(key)}
    assert differ <= {"listeners", "log.dirs"}, (
        f"the kafka service's server.properties differs from scripts/brokers' in {sorted(differ)}"
    )
    features = re.compile(r"--feature\s+(\S+)")
    assert set(features.findall(script)) == set(kafka.FEATURES), (
        "the kafka service must format its storage with the features scripts/brokers uses"
    )


def test_docker_compose_accepts_the_file() -> None:
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("no docker command on PATH: `docker compose config` not run")
    version = subprocess.run(
        [docker, "compose", "version"], capture_output=True, text=True, timeout=60, check=False
    )
    if version.returncode != 0:
        said = (version.stderr or version.stdout).strip().splitlines()[:1]
        pytest.skip(f"docker on PATH has no compose plugin ({' '.join(said)})")
    result = subprocess.run(
        [docker, "compose", "--file", str(COMPOSE), "config", "--quiet"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"docker compose config:\n{result.stdout}{result.stderr}"
