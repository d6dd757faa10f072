"""scripts/brokers' Mosquitto configuration without a broker: the TLS listeners on the
throwaway CA (password and ACL on 8883, client certificates on 8884), the ACL file,
the TLS listener's users added once, and restarting a broker whose configuration is
not today's.  ``mosquitto -t`` is not in Mosquitto 2.0, so the generated file is
checked line by line here and by the broker itself in tests/mqtt/test_tls.py."""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO / "scripts") not in sys.path:
    sys.path.insert(0, str(REPO / "scripts"))

from brokerctl import certs, common, mqtt  # noqa: E402

needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")
needs_mosquitto_passwd = pytest.mark.skipif(
    shutil.which("mosquitto_passwd") is None, reason="needs mosquitto_passwd (mosquitto)"
)
PLACEHOLDER = re.compile(r"@[A-Z_]+@")


@pytest.fixture
def broker(tmp_path: Path) -> mqtt.Mqtt:
    return mqtt.Mqtt(common.Settings(tmp_path / "state", tmp_path / "cache", 90))


def _listeners(text: str) -> dict[str, list[str]]:
    """Each listener's port and its lines (comments and blank lines left out)."""
    blocks: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("listener "):
            current = blocks.setdefault(line.split()[1], [line])
        elif current is not None and line and not line.startswith("#"):
            current.append(line)
    return blocks


def test_the_tls_listeners_follow_the_plain_ones(broker: mqtt.Mqtt) -> None:
    text = broker.config_text()
    assert not PLACEHOLDER.search(text)
    state = broker.settings.state
    blocks = _listeners(text)
    assert list(blocks) == ["1883", "1884", "8883", "8884"]
    assert text.splitlines().count("per_listener_settings true") == 1
    tls = [
        f"cafile {state}/tls/ca.pem",
        f"certfile {state}/tls/server.pem",
        f"keyfile {state}/tls/server.key",
    ]
    # 1883 and 1884 as before: anonymous, and the password file of user eventbinder.
    assert blocks["1883"][:2] == ["listener 1883 127.0.0.1", "allow_anonymous true"]
    assert blocks["1884"][:3] == [
        "listener 1884 127.0.0.1",
        "allow_anonymous false",
        f"password_file {state}/mqtt/passwd",
    ]
    assert blocks["8883"] == [
        "listener 8883 127.0.0.1",
        *tls,
        "allow_anonymous false",
        f"password_file {state}/mqtt/passwd-tls",
        f"acl_file {state}/mqtt/acl",
    ]
    assert blocks["8884"] == [
        "listener 8884 127.0.0.1",
        *tls,
        "require_certificate true",
        "use_identity_as_username true",
        "allow_anonymous false",
        f"acl_file {state}/mqtt/acl",
    ]
    assert broker.ports == (1883, 1884, 8883, 8884)
    template = set(PLACEHOLDER.findall(mqtt.TLS_TEMPLATE.read_text()))
    assert set(broker.tls_template_values()) == template


def test_the_acl_limits_sensors_only_to_sensors(broker: mqtt.Mqtt) -> None:
    broker.write_config()
    rules: dict[str, list[str]] = {}
    user = ""
    for line in broker.acl.read_text().splitlines():
        if line.startswith("user "):
            user = line.split(maxsplit=1)[1]
        elif line.startswith("topic "):
            rules.setdefault(user, []).append(line)
    everything = ["topic readwrite #", "topic read $SYS/#"]
    assert rules == {
        "eventbinder": everything,
        certs.CLIENT_NAME: everything,  # the client certificate's common name
        mqtt.LIMITED_USER: ["topic readwrite sensors/#"],
    }


@needs_mosquitto_passwd
def test_users_are_added_once(broker: mqtt.Mqtt) -> None:
    broker.dir.mkdir(parents=True)
    mqtt.add_users(broker.tls_passwd, mqtt.TLS_USERS)
    first = broker.tls_passwd.read_text()
    assert mqtt.users(broker.tls_passwd) == {"eventbinder", "sensors-only"}
    assert broker.tls_passwd.stat().st_mode & 0o077 == 0
    assert "eventbinder-secret" not in first and "sensors-only-secret" not in first  # hashed
    mqtt.add_users(broker.tls_passwd, mqtt.TLS_USERS)
    assert broker.tls_passwd.read_text() == first  # nothing rewritten
    # A file with one of them gets the other; the line already there stays as it was.
    eventbinder = next(line for line in first.splitlines() if line.startswith("eventbinder:"))
    broker.tls_passwd.write_text(eventbinder + "\n")
    mqtt.add_users(broker.tls_passwd, mqtt.TLS_USERS)
    lines = broker.tls_passwd.read_text().splitlines()
    assert lines[0] == eventbinder and lines[1].startswith("sensors-only:")
    # 1884's file keeps its single user.
    mqtt.add_users(broker.passwd, [(mqtt.USER, mqtt.PASSWORD)])
    assert mqtt.users(broker.passwd) == {"eventbinder"}


@needs_openssl
@needs_mosquitto_passwd
def test_a_broker_without_todays_configuration_is_restarted(broker: mqtt.Mqtt) -> None:
    """What ``up`` asks before leaving a running broker alone: the files it read at its
    start (mosquitto.conf, the ACL, the TLS users) must be today's, with the same
    certificates."""
    state = broker.settings.state
    assert not broker.runs_current_config()  # nothing written yet
    broker.configure()
    assert (state / "tls" / "ca.pem").exists()
    assert broker.runs_current_config()
    plain = common.render(mqtt.TEMPLATE, broker.template_values())
    broker.conf.write_text(plain)  # scripts/brokers before the TLS listeners
    assert not broker.runs_current_config()
    broker.configure()
    broker.acl.write_text("user eventbinder\ntopic readwrite #\n")
    assert not broker.runs_current_config()
    broker.configure()
    shutil.rmtree(state / "tls")  # made anew: the running broker holds the old ones
    certs.ensure(state)
    assert not broker.runs_current_config()
    broker.configure()
    assert broker.runs_current_config()
