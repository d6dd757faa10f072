"""scripts/brokers' Kafka configuration without a broker: the TLS template over the base
one (SSL and SASL_SSL listeners on the throwaway CA, SCRAM, StandardAuthorizer and its
super users), restarting a broker whose configuration is not today's, and the SCRAM users
and ACLs made once per storage (Kafka's tools replaced by a fake)."""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO / "scripts") not in sys.path:
    sys.path.insert(0, str(REPO / "scripts"))

from brokerctl import certs, common, kafka  # noqa: E402

needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")
PLACEHOLDER = re.compile(r"@[A-Z_]+@")


@pytest.fixture
def broker(tmp_path: Path) -> kafka.Kafka:
    return kafka.Kafka(common.Settings(tmp_path / "state", tmp_path / "cache", 90))


def settings_of(text: str) -> dict[str, str]:
    """The keys a .properties text sets; each may be set once only."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            assert key not in found, f"{key} set twice"
            found[key] = value
    return found


def listeners(value: str) -> list[str]:
    return value.split(",")


def test_the_tls_listeners_come_next_to_the_base_ones(broker: kafka.Kafka) -> None:
    base = settings_of(common.render(kafka.TEMPLATE, broker.template_values()))
    conf = settings_of(broker.config_text())
    assert listeners(conf["listeners"]) == [
        *listeners(base["listeners"]),
        "SSL://127.0.0.1:9095",
        "SASL_SSL://127.0.0.1:9096",
        "FAULTS://127.0.0.1:19092",
    ]
    # Clients are sent to localhost, the only name in the server certificate.
    assert listeners(conf["advertised.listeners"]) == [
        *listeners(base["advertised.listeners"]),
        "SSL://localhost:9095",
        "SASL_SSL://localhost:9096",
        # The fault tests' proxy (tests/faults) forwards 19192 to 19092.
        "FAULTS://127.0.0.1:19192",
    ]
    assert listeners(conf["listener.security.protocol.map"]) == [
        *listeners(base["listener.security.protocol.map"]),
        "SSL:SSL",
        "SASL_SSL:SASL_SSL",
        "FAULTS:PLAINTEXT",
    ]
    # Everything else of the base file stays as it is.
    again = kafka.property_keys(kafka.TLS_TEMPLATE.read_text())
    assert {k: conf[k] for k in base.keys() - again} == {k: base[k] for k in base.keys() - again}
    assert conf["inter.broker.listener.name"] == "PLAINTEXT"
    assert broker.ports == (9092, 9093, 9094, 9095, 9096, 19092)


def test_tls_scram_and_the_authorizer(broker: kafka.Kafka) -> None:
    text = broker.config_text()
    assert not PLACEHOLDER.search(text)
    conf = settings_of(text)
    state = broker.settings.state
    assert conf["ssl.keystore.type"] == "PEM"
    assert conf["ssl.keystore.location"] == str(state / "kafka" / "server-keystore.pem")
    assert conf["ssl.truststore.type"] == "PEM"
    assert conf["ssl.truststore.location"] == str(state / "tls" / "ca.pem")
    # One port for TLS and mutual TLS: a certificate is checked when presented.
    assert conf["listener.name.ssl.ssl.client.auth"] == "requested"
    assert "ssl.client.auth" not in conf  # SASL_SSL: the login identifies the client
    assert conf["listener.name.sasl_ssl.sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert conf["authorizer.class.name"] == (
        "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
    )
    assert conf["allow.everyone.if.no.acl.found"] == "false"
    # The anonymous clients (and the controller), the PLAIN user, the full-access SCRAM
    # user and the client certificate (CN=eventbinder-client) may do anything.
    assert conf["super.users"].split(";") == [
        "User:ANONYMOUS",
        "User:eventbinder",
        "User:eventbinder-scram",
        f"User:{certs.CLIENT_NAME}",
    ]
    assert kafka.LIMITED_USER not in conf["super.users"]
    assert conf["ssl.principal.mapping.rules"] == "RULE:^CN=(.*)$/$1/,DEFAULT"


def test_every_placeholder_of_the_tls_template_is_filled_in(broker: kafka.Kafka) -> None:
    needed = set(PLACEHOLDER.findall(kafka.TLS_TEMPLATE.read_text()))
    assert set(broker.tls_template_values()) == needed
    # The base template keeps the placeholders docker-compose.yml fills in.
    assert set(broker.template_values()) == set(PLACEHOLDER.findall(kafka.TEMPLATE.read_text()))


def test_overlay_comments_out_what_it_sets_again() -> None:
    base = "# a comment with a=b\na=1\nb=2\n"
    merged = kafka.overlay(base, "# more\na=3\nc=4\n")
    assert merged.splitlines() == [
        "# a comment with a=b",
        "# (set again below) a=1",
        "b=2",
        "",
        "# more",
        "a=3",
        "c=4",
    ]


@needs_openssl
def test_a_broker_without_todays_configuration_or_certificates_is_restarted(
    broker: kafka.Kafka,
) -> None:
    """What ``up`` asks before leaving a running broker alone: its server.properties
    (written just before it started) must be today's, with the same certificates."""
    tls = certs.ensure(broker.settings.state)
    assert not broker.runs_current_config()  # no server.properties yet
    broker.write_config()
    assert broker.runs_current_config()
    tls.server.write_text(tls.server.read_text() + "\n")  # other certificates
    assert not broker.runs_current_config()
    broker.write_config()
    assert broker.runs_current_config()
    older = broker.properties.read_text().replace(",SSL://127.0.0.1:9095", "")
    broker.properties.write_text(older)  # started by an older scripts/brokers
    assert not broker.runs_current_config()


@needs_openssl
def test_the_keystore_holds_the_servers_key_and_certificate(broker: kafka.Kafka) -> None:
    tls = certs.ensure(broker.settings.state)
    broker.write_config()
    broker.write_keystore()
    assert broker.keystore.read_text() == tls.server_key.read_text() + tls.server.read_text()
    assert broker.keystore.stat().st_mode & 0o077 == 0


class FakeTools:
    """Kafka's tool runs, recorded; ``failing`` makes the runs of that class fail."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, broker: kafka.Kafka) -> None:
        self.runs: list[list[str]] = []
        self.failing = ""
        self.broker = broker
        monkeypatch.setattr(kafka, "run", self.run)

    def run(self, argv: list[str], **kwargs: object) -> int:
        lib = str(self.broker.lib)
        args = [str(a) for a in argv]
        self.runs.append(args[args.index(f"{lib}/*") + 1 :])
        return 1 if self.failing and self.failing in args else 0

    def classes(self) -> list[str]:
        return [run[0].rsplit(".", 1)[-1] for run in self.runs]


def formatted(broker: kafka.Kafka, cluster: str) -> None:
    data = broker.dir / "data"
    data.mkdir(parents=True, exist_ok=True)
    (data / "meta.properties").write_text(f"version=1\ncluster.id={cluster}\nnode.id=1\n")


def test_users_and_acls_are_made_once_per_storage(
    broker: kafka.Kafka, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    tools = FakeTools(monkeypatch, broker)
    broker.logs.mkdir(parents=True)
    formatted(broker, "cluster-1")  # formatted before the SCRAM users existed
    broker.secure()
    assert tools.classes() == ["ConfigCommand", "ConfigCommand", "AclCommand"]
    users = [run[run.index("--entity-name") + 1] for run in tools.runs[:2]]
    assert users == ["eventbinder-scram", "orders-only"]
    assert tools.runs[0][tools.runs[0].index("--add-config") + 1] == (
        "SCRAM-SHA-512=[password=eventbinder-scram-secret]"
    )
    acl = tools.runs[2]
    assert acl[acl.index("--allow-principal") + 1] == "User:orders-only"
    assert acl[acl.index("--topic") + 1] == acl[acl.index("--group") + 1] == "orders-only."
    assert acl[acl.index("--resource-pattern-type") + 1] == "prefixed"
    assert acl[acl.index("--operation") + 1] == "All"
    assert "--bootstrap-server" in acl and "127.0.0.1:9092" in acl
    assert capsys.readouterr().out.startswith("kafka: SCRAM users and ACLs set up in ")

    broker.secure()  # done: `up` on a running broker costs no tool run
    assert len(tools.runs) == 3
    formatted(broker, "cluster-2")  # a storage made anew
    broker.secure()
    assert tools.classes()[3:] == ["ConfigCommand", "ConfigCommand", "AclCommand"]


@needs_openssl
def test_a_fresh_storage_gets_its_users_when_formatted(
    broker: kafka.Kafka, monkeypatch: pytest.MonkeyPatch
) -> None:
    tools = FakeTools(monkeypatch, broker)

    def format_storage(argv: list[str], **kwargs: object) -> int:
        tools.run(argv)
        formatted(broker, argv[argv.index("--cluster-id") + 1])
        return 0

    monkeypatch.setattr(kafka, "run", format_storage)
    broker.configure()
    (storage_format,) = tools.runs
    assert storage_format[:2] == ["kafka.tools.StorageTool", "format"]
    scram = [storage_format[i + 1] for i, a in enumerate(storage_format) if a == "--add-scram"]
    assert scram == [
        "SCRAM-SHA-512=[name=eventbinder-scram,password=eventbinder-scram-secret]",
        "SCRAM-SHA-512=[name=orders-only,password=orders-only-secret]",
    ]
    monkeypatch.setattr(kafka, "run", tools.run)
    broker.secure()  # only the ACLs are left to do
    assert tools.classes()[1:] == ["AclCommand"]


def test_a_failed_tool_run_names_its_log(
    broker: kafka.Kafka, monkeypatch: pytest.MonkeyPatch
) -> None:
    tools = FakeTools(monkeypatch, broker)
    tools.failing = "org.apache.kafka.tools.AclCommand"
    broker.logs.mkdir(parents=True)
    formatted(broker, "cluster-1")
    with pytest.raises(common.BrokerError, match=r"kafka: setting up the ACLs failed, see .*"):
        broker.secure()
    assert "acls" not in broker.security_done.read_text()  # tried again by the next `up`


def test_the_tests_use_the_users_and_prefix_scripts_brokers_makes() -> None:
    from tests.kafka import helpers

    assert helpers.LIMITED_USER == kafka.LIMITED_USER
    assert kafka.SCRAM_USERS[kafka.LIMITED_USER] == helpers.LIMITED_PASSWORD
    assert helpers.LIMITED_PREFIX == kafka.LIMITED_PREFIX
    assert helpers.SCRAM_SETTINGS["sasl_plain_username"] == kafka.SCRAM_USER
    assert helpers.SCRAM_PASSWORD == kafka.SCRAM_PASSWORD
    assert f"{kafka.TLS_HOST}:{kafka.SSL_PORT}" == helpers.SSL_BOOTSTRAP
    assert f"{kafka.TLS_HOST}:{kafka.SASL_SSL_PORT}" == helpers.SASL_SSL_BOOTSTRAP
