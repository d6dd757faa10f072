"""scripts/brokers' RabbitMQ configuration without a broker: the amqps listener on the
throwaway CA, restarting a node whose configuration is not today's, and the
vhost-limited user made once per fresh start (rabbitmqctl replaced by a fake)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO / "scripts") not in sys.path:
    sys.path.insert(0, str(REPO / "scripts"))

from brokerctl import certs, common, rabbit  # noqa: E402

needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")


@pytest.fixture
def broker(tmp_path: Path) -> rabbit.Rabbit:
    settings = common.Settings(tmp_path / "state", tmp_path / "cache", 90)
    (tmp_path / "state" / "rabbit").mkdir(parents=True)
    return rabbit.Rabbit(settings)


def _conf(text: str) -> dict[str, str]:
    pairs = (line.split(" = ", 1) for line in text.splitlines() if " = " in line)
    return {k: v for k, v in pairs if not k.startswith("#")}


@needs_openssl
def test_the_amqps_listener_uses_the_throwaway_ca(broker: rabbit.Rabbit) -> None:
    tls = certs.ensure(broker.settings.state)
    conf = _conf(broker.config_text())
    assert conf["listeners.tcp.default"] == "127.0.0.1:5672"
    assert conf["listeners.ssl.default"] == "127.0.0.1:5671"
    assert conf["ssl_options.cacertfile"] == str(tls.ca)
    assert conf["ssl_options.certfile"] == str(tls.server)
    assert conf["ssl_options.keyfile"] == str(tls.server_key)
    # One port for TLS and mutual TLS: a certificate is checked when presented.
    assert conf["ssl_options.verify"] == "verify_peer"
    assert conf["ssl_options.fail_if_no_peer_cert"] == "false"
    assert broker.ports == (5672, 5671)


@needs_openssl
def test_a_node_without_todays_configuration_is_restarted(broker: rabbit.Rabbit) -> None:
    """What ``up`` asks before leaving a running node alone: its rabbitmq.conf (written
    just before it started) must be today's, with the same certificates."""
    state = broker.settings.state
    certs.ensure(state)
    assert not broker.runs_current_config()  # no rabbitmq.conf yet
    broker.conf.write_text(broker.config_text())
    assert broker.runs_current_config()
    older = "".join(
        line + "\n"
        for line in broker.config_text().splitlines()
        if not line.startswith(("listeners.ssl", "ssl_options", "# certificates"))
    )
    broker.conf.write_text(older)  # scripts/brokers before the TLS listener
    assert not broker.runs_current_config()
    broker.conf.write_text(broker.config_text())
    shutil.rmtree(state / "tls")  # made anew: the running node holds the old ones
    certs.ensure(state)
    assert not broker.runs_current_config()


class FakeCtl:
    """``Rabbit.ctl``: records the arguments, answers with the given exit codes."""

    def __init__(self, codes: dict[str, int] | None = None) -> None:
        self.calls: list[tuple[str, ...]] = []
        self.codes = codes or {}

    def __call__(self, *args: str, timeout: float) -> int:
        self.calls.append(args)
        return self.codes.get(args[0], 0)


def test_the_vhost_user_is_made_once_per_fresh_start(
    broker: rabbit.Rabbit, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctl = FakeCtl({"add_user": 70})  # the user exists: its password is set again
    monkeypatch.setattr(broker, "ctl", ctl)
    broker.ensure_users()
    assert ctl.calls == [
        ("add_vhost", "eventbinder-tls"),
        ("add_user", "eventbinder-vhost", "eventbinder-vhost-secret"),
        ("change_password", "eventbinder-vhost", "eventbinder-vhost-secret"),
        ("set_permissions", "-p", "eventbinder-tls", "eventbinder-vhost", ".*", ".*", ".*"),
        ("clear_permissions", "-p", "/", "eventbinder-vhost"),
    ]
    assert "eventbinder-vhost-secret" not in broker.startup_log.read_text()
    broker.ensure_users()  # `up` of a running broker: nothing to do
    assert len(ctl.calls) == 5


def test_a_failed_rabbitmqctl_step_fails_up(
    broker: rabbit.Rabbit, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(broker, "ctl", FakeCtl({"set_permissions": 2}))
    with pytest.raises(common.BrokerError, match="rabbitmqctl set_permissions failed"):
        broker.ensure_users()
    assert not broker.users_done.exists()  # the next `up` tries again
