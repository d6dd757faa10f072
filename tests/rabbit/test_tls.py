"""RabbitMQ over TLS: the amqps listener of ``scripts/brokers`` (127.0.0.1:5671).

The listener's certificate (from the throwaway CA in ``$EVENTBINDER_STATE/tls``) names
``localhost`` only; a client certificate is optional, but one that is presented must
be signed by the CA and valid. Messages go round trips with and without a client
certificate; each way a connection can be refused (the broker's certificate not
trusted, or for another host; the client's certificate expired or not trusted; the
wrong password; a user without access to the virtual host; TLS on the plain port)
is one sentence naming the cause, raised as :class:`~binder.errors.AccessRefused`
(:class:`~binder.errors.TlsRefused` for the handshake), which the runtime reports at
once instead of retrying, without a password or key in the error or the logs.

``eventbinder-vhost`` / ``eventbinder-vhost-secret`` is the broker's user that may do
anything in the virtual host ``eventbinder-tls`` and nothing in ``/``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from binder.app import App
from binder.config import load_settings
from binder.errors import AccessRefused, ConfigError, TlsRefused
from binder.message import Message
from binder.plugins import load_registry
from binder.runtime import ConnectError, Runtime
from binder.spi import ConsumerSpec, ProducerSpec
from binder.testing import Collector, run_app
from binder.testing.brokers import in_ci
from binders.rabbit.binder import RabbitBinder
from binders.rabbit.client import ssl_options
from binders.rabbit.settings import validate_settings
from tests.rabbit.support import (
    RabbitUser,
    bind,
    close_consumers,
    consumer_options,
    delete_later,
    fresh,
    producer_options,
    rabbitmqctl,
    track,
)

pytestmark = pytest.mark.broker("rabbit")

TLS = Path(os.environ.get("EVENTBINDER_STATE", "/tmp/eventbinder-brokers")) / "tls"
CA = str(TLS / "ca.pem")
CLIENT = {"certfile": str(TLS / "client.pem"), "keyfile": str(TLS / "client.key")}
EXPIRED = {"certfile": str(TLS / "client-expired.pem"), "keyfile": str(TLS / "client-expired.key")}
UNTRUSTED = {"certfile": str(TLS / "other-client.pem"), "keyfile": str(TLS / "other-client.key")}

VHOST = "eventbinder-tls"
USER, PASSWORD = "eventbinder-vhost", "eventbinder-vhost-secret"
#: The vhost-limited user over TLS, by the name in the broker's certificate.
URL = f"amqps://{USER}:{PASSWORD}@localhost:5671/{VHOST}"
GUEST_URL = "amqps://guest:guest@localhost:5671/"


@pytest.fixture(autouse=True, scope="module")
def _tls_listener() -> None:
    """The amqps listener and the CA's files, else skip (laptop) or fail (CI): a broker
    started by an older ``scripts/brokers`` has neither."""
    import socket

    problem = None
    if not (TLS / "ca.pem").exists():
        problem = f"no throwaway CA in {TLS}"
    else:
        try:
            socket.create_connection(("127.0.0.1", 5671), timeout=1.0).close()
        except OSError:
            problem = "nothing listens on 127.0.0.1:5671 (amqps)"
    if problem is not None:
        reason = f"{problem}; run `scripts/brokers up rabbit`"
        if in_ci():
            pytest.fail(f"CI=true and {reason}", pytrace=False)
        pytest.skip(reason)


def _settings(url: str = URL, **settings: Any) -> dict[str, Any]:
    return validate_settings({"url": url, "connect_timeout": 5.0, **settings})


@contextlib.contextmanager
def _cleanup_in_vhost(
    *, exchanges: tuple[str, ...] = (), queues: tuple[str, ...] = ()
) -> Iterator[None]:
    """Delete test exchanges and queues of the virtual host ``eventbinder-tls`` afterwards
    (the shared clean-up knows ``/`` only)."""
    try:
        yield
    finally:
        import amqp

        conn = amqp.Connection("127.0.0.1:5672", userid=USER, password=PASSWORD, virtual_host=VHOST)
        conn.connect()
        try:
            for name in queues + exchanges:
                channel = conn.channel()
                with contextlib.suppress(Exception):
                    if name in queues:
                        channel.queue_delete(name)
                    else:
                        channel.exchange_delete(name)
                with contextlib.suppress(Exception):
                    channel.close()
        finally:
            conn.close()


# -- messages over TLS ----------------------------------------------------------------


async def test_an_app_exchanges_messages_over_tls() -> None:
    """A function binding (consume, return, publish) over amqps://localhost:5671 with
    the CA: the URL form, and the ``username``/``password`` settings of the guest user."""
    source, sink = fresh("tls-in"), fresh("tls-out")
    delete_later(exchanges=(source, sink), queues=(f"{source}.g", f"{source}.g.dlq"))
    app = App("tls")

    @app.function(source, sink, group="g")
    def shout(text: str) -> str:
        return text.upper()

    config = {
        "binders": {
            "rabbit": {
                "type": "rabbit",
                "url": "amqps://localhost:5671/",
                "username": "guest",
                "password": "guest",
                "ssl": {"ca_certs": CA},
            }
        },
        "default_binder": "rabbit",
    }
    async with run_app(app, config) as harness:
        await harness.send(source, "over tls")
        reply = await harness.receive(sink, timeout=5.0)
    assert reply.payload == b'"OVER TLS"'


async def test_mutual_tls_presents_the_client_certificate() -> None:
    """The settings form with a client certificate: RabbitMQ sees its subject."""
    source = fresh("mtls")
    delete_later(exchanges=(source,), queues=(f"{source}.g", f"{source}.g.dlq"))
    binder = track(RabbitBinder("mtls", _settings(GUEST_URL, ssl={"ca_certs": CA, **CLIENT})))
    await binder.start()
    try:
        received = Collector()
        await bind(binder, ConsumerSpec("in", source, "g", options=consumer_options()), received)
        producer = await binder.bind_producer(
            ProducerSpec("out", source, options=producer_options())
        )
        await producer.publish(Message(b"signed", content_type="text/plain"))
        await received.wait_for(1, 5.0)
        assert received.messages[0].payload == b"signed"
        subjects = await asyncio.to_thread(
            rabbitmqctl, "list_connections", "name", "ssl", "peer_cert_subject"
        )
        rows = [line.split("\t") for line in subjects.splitlines()]
        assert ["true", "CN=eventbinder-client"] in [row[1:] for row in rows], subjects
    finally:
        await close_consumers()
        await binder.close()


async def test_the_vhost_user_works_in_its_virtual_host() -> None:
    source = fresh("vhost")
    binder = RabbitBinder("vhost", _settings(ssl={"ca_certs": CA}))
    with _cleanup_in_vhost(exchanges=(source,), queues=(f"{source}.g", f"{source}.g.dlq")):
        await binder.start()
        try:
            received = Collector()
            await bind(
                binder, ConsumerSpec("in", source, "g", options=consumer_options()), received
            )
            producer = await binder.bind_producer(
                ProducerSpec("out", source, options=producer_options())
            )
            await producer.publish(Message(b"in eventbinder-tls", content_type="text/plain"))
            await received.wait_for(1, 5.0)
        finally:
            await close_consumers()
            await binder.close()


DOCS = Path(__file__).resolve().parents[2] / "docs" / "binders" / "rabbit.md"


def _documented_local_configs() -> list[dict[str, Any]]:
    """The ``binders.rabbit`` sections of the YAML examples in the docs' TLS section that
    use the local broker (its state folder as this run's)."""
    import re

    import yaml

    text = DOCS.read_text()
    section = text[text.index("\n## TLS\n") : text.index("\n## When RabbitMQ says no\n")]
    blocks = re.findall(r"```yaml\n(.*?)```", section, re.S)
    local = [b for b in blocks if "localhost:5671" in b]
    state = str(TLS.parent)
    return [
        yaml.safe_load(b.replace("/tmp/eventbinder-brokers", state))["binders"]["rabbit"]
        for b in local
    ]


async def test_the_documented_local_configs_work() -> None:
    configs = _documented_local_configs()
    assert len(configs) == 2
    for config in configs:
        settings = {k: v for k, v in config.items() if k != "type"}
        binder = RabbitBinder("docs", validate_settings(settings))
        try:
            await binder.start()
        finally:
            await binder.close()


# -- refusals ---------------------------------------------------------------------------

#: (name, settings, the exception class, the sentence)
REFUSALS: list[tuple[str, dict[str, Any], type[AccessRefused], str]] = [
    (
        "wrong CA",
        {"ssl": {"ca_certs": str(TLS / "other-ca.pem")}},
        TlsRefused,
        "RabbitMQ at localhost:5671: TLS: the broker's certificate was refused: a "
        "self-signed certificate in its chain is not in the CA file (ssl.ca_certs)",
    ),
    (
        "no CA: the system's",
        {"ssl": True},
        TlsRefused,
        "RabbitMQ at localhost:5671: TLS: the broker's certificate was refused: a "
        "self-signed certificate in its chain is not in the CA file (ssl.ca_certs)",
    ),
    (
        "expired client certificate",
        {"ssl": {"ca_certs": CA, **EXPIRED}},
        TlsRefused,
        "RabbitMQ at localhost:5671: TLS: the broker refused the client certificate: it "
        "has expired",
    ),
    (
        "client certificate of another CA",
        {"ssl": {"ca_certs": CA, **UNTRUSTED}},
        TlsRefused,
        "RabbitMQ at localhost:5671: TLS: the broker refused the client certificate: it "
        "does not trust the CA that signed it",
    ),
    (
        "IP address not in the certificate",
        {"url": URL.replace("@localhost:", "@127.0.0.1:"), "ssl": {"ca_certs": CA}},
        TlsRefused,
        "RabbitMQ at 127.0.0.1:5671: TLS: the broker's certificate was refused: it is "
        "for another IP address",
    ),
    (
        "host name not in the certificate",
        {"ssl": {"ca_certs": CA, "server_hostname": "rabbit.example.com"}},
        TlsRefused,
        "RabbitMQ at localhost:5671: TLS: the broker's certificate was refused: it is "
        "for another host name",
    ),
    (
        "TLS on the plain port",
        {"url": URL.replace(":5671/", ":5672/"), "ssl": {"ca_certs": CA}},
        TlsRefused,
        "RabbitMQ at localhost:5672: TLS: the broker did not answer with TLS (is it a "
        "plain-text port?)",
    ),
    (
        "wrong password",
        {"password": "not-the-password", "ssl": {"ca_certs": CA}},
        AccessRefused,
        "RabbitMQ at localhost:5671 refused the login of user 'eventbinder-vhost' (wrong "
        "user name or password)",
    ),
    (
        "virtual host of another user",
        {"url": URL.removesuffix(VHOST), "ssl": {"ca_certs": CA, **CLIENT}},
        AccessRefused,
        "RabbitMQ at localhost:5671 refused user 'eventbinder-vhost' access to virtual "
        "host '/' (the user has no permissions there)",
    ),
]
IDS = [case[0] for case in REFUSALS]


@pytest.mark.parametrize(("name", "settings", "kind", "sentence"), REFUSALS, ids=IDS)
async def test_each_refusal_at_start_is_one_sentence_naming_the_cause(
    name: str, settings: dict[str, Any], kind: type[AccessRefused], sentence: str
) -> None:
    binder = RabbitBinder("test", _settings(**settings))
    try:
        with pytest.raises(AccessRefused) as caught:
            await asyncio.wait_for(binder.start(), 10.0)
    finally:
        await binder.close()
    assert type(caught.value) is kind
    assert str(caught.value) == sentence


def _secrets() -> list[str]:
    """What must never be shown: the passwords and the private keys' contents."""
    keys = [TLS / "client.key", TLS / "client-expired.key", TLS / "other-client.key"]
    bodies = [line for key in keys for line in key.read_text().splitlines() if "-" not in line]
    return [PASSWORD, "not-the-password", *bodies]


@pytest.mark.parametrize(("name", "settings", "kind", "sentence"), REFUSALS, ids=IDS)
async def test_the_runtime_reports_a_refusal_once_without_retrying_or_secrets(
    name: str,
    settings: dict[str, Any],
    kind: type[AccessRefused],
    sentence: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Not ``fail_fast``: an unreachable broker would be waited for; a refusal ends
    the start at once with the binder's sentence, logged nowhere else."""
    caplog.set_level(logging.DEBUG)
    app = App("refused")

    @app.consumer(fresh("never"), group="g")
    def never(payload: bytes) -> None:
        raise AssertionError("nothing can arrive")

    config = {"binders": {"rabbit": {"type": "rabbit", **_settings(**settings)}}}
    registry = load_registry()
    loaded = load_settings(config, registry=registry, discover=False, environ={})
    runtime = Runtime(app, loaded, registry)
    with pytest.raises(ConnectError) as caught:
        await asyncio.wait_for(runtime.start(), 10.0)
    assert str(caught.value) == f"binder 'rabbit': the broker refused access: {sentence}"
    logged = [r.getMessage() for r in caplog.records]
    assert not [m for m in logged if "retrying" in m or "reach" in m], logged
    assert sum(m.count(sentence) for m in logged) <= 1, logged
    for secret in _secrets():
        assert secret not in str(caught.value)
        assert secret not in caplog.text


async def test_a_permission_refused_over_tls_names_the_resource(rabbit_user: RabbitUser) -> None:
    await rabbit_user.allow(configure="^$", write="^$", read="^$")
    url = f"amqps://{rabbit_user.name}:{rabbit_user.password}@localhost:5671/"
    binder = RabbitBinder("test", _settings(url, ssl={"ca_certs": CA}))
    await binder.start()
    try:
        destination = fresh("denied")
        with pytest.raises(AccessRefused) as caught:
            await binder.bind_producer(ProducerSpec("out", destination, options=producer_options()))
    finally:
        await binder.close()
    assert str(caught.value) == (
        f"RabbitMQ refused exchange.declare: user '{rabbit_user.name}' has no configure "
        f"permission on exchange '{destination}' in virtual host '/'"
    )
    assert rabbit_user.password not in str(caught.value)


# -- settings ---------------------------------------------------------------------------


def test_tls_options_check_the_url_host_and_cap_mutual_tls_at_tls_1_2() -> None:
    """kombu itself would check 127.0.0.1 for localhost; a client certificate's refusal
    is reported as such only in TLS 1.2 (in 1.3 it races the protocol header)."""
    assert ssl_options(False, "amqp://localhost//") is None
    assert ssl_options(True, "amqp://broker.example.com//") == {
        "cert_reqs": ssl.CERT_REQUIRED,
        "server_hostname": "broker.example.com",
    }
    plain = validate_settings({"ssl": {"ca_certs": CA}})["ssl"]
    assert ssl_options(plain, "amqps://localhost:5671/") == {
        "ca_certs": CA,
        "cert_reqs": ssl.CERT_REQUIRED,
        "server_hostname": "localhost",
    }
    mutual = validate_settings({"ssl": {"ca_certs": CA, **CLIENT}})["ssl"]
    capped = ssl_options(mutual, "amqps://localhost:5671/") or {}
    assert capped["tls_maximum_version"] == ssl.TLSVersion.TLSv1_2
    assert (capped["certfile"], capped["keyfile"]) == (CLIENT["certfile"], CLIENT["keyfile"])
    newest = validate_settings({"ssl": {**CLIENT, "max_version": "TLSv1.3"}})["ssl"]
    uncapped = ssl_options(newest, "amqps://h/") or {}
    assert uncapped["tls_maximum_version"] == ssl.TLSVersion.TLSv1_3
    unchecked = validate_settings({"ssl": {"verify": False}})["ssl"]
    assert ssl_options(unchecked, "amqps://127.0.0.1/") == {"cert_reqs": ssl.CERT_NONE}


@pytest.mark.parametrize(
    ("ssl_setting", "key", "reason"),
    [
        ({"ca_certs": "/nonexistent/ca.pem"}, "ssl.ca_certs", "cannot read /nonexistent/ca.pem"),
        ({"ca_certs": str(TLS / "client.key")}, "ssl.ca_certs", "holds no PEM certificate"),
        (
            {"certfile": CLIENT["certfile"], "keyfile": str(TLS / "other-client.key")},
            "ssl.certfile",
            "the client key (ssl.keyfile) does not belong to this certificate",
        ),
        ({"keyfile": CLIENT["keyfile"]}, "ssl.keyfile", "needs certfile"),
        ({"verify": False, "server_hostname": "h"}, "ssl.server_hostname", "verify: true"),
    ],
)
def test_unusable_tls_files_are_configuration_errors(
    ssl_setting: dict[str, Any], key: str, reason: str
) -> None:
    """Found when the settings are read, naming the key, not retried as a failed
    connection."""
    with pytest.raises(ConfigError) as caught:
        validate_settings({"ssl": ssl_setting})
    assert caught.value.key == key
    assert reason in caught.value.reason
