"""MQTT over TLS: the TLS listeners of ``scripts/brokers`` (Mosquitto 2.0).

``localhost:8883`` is TLS with a password file and an ACL file, ``localhost:8884``
mutual TLS (a client certificate signed by the throwaway CA in
``$EVENTBINDER_STATE/tls`` is required; its common name, ``eventbinder-client``, is
the user the ACL knows).  The server certificate names ``localhost`` only, so
``127.0.0.1`` is a host name mismatch.  The ACL lets ``eventbinder`` and
``eventbinder-client`` use every topic and ``sensors-only`` only ``sensors/#``.

Messages go round trips over both listeners; each way a connection can be refused
(the broker's certificate not trusted or for another address; the client's certificate
missing, expired or not trusted; a certificate or key file that cannot be used; the
wrong password) is one sentence naming the cause, raised by ``start()`` as
:class:`~binder.errors.AccessRefused` (:class:`~binder.errors.TlsRefused` for TLS),
which the runtime reports at once instead of retrying, with no password or key in the
error or the logs.  A publish the ACL refuses is one sentence naming the topic (MQTT
5); a subscription outside the ACL is granted and receives nothing, which is what
Mosquitto 2.0's ACL file does.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import ssl
import uuid
from pathlib import Path
from typing import Any

import pytest

from binder.app import App
from binder.config import load_settings
from binder.errors import AccessRefused, TlsRefused
from binder.message import Message
from binder.plugins import load_registry
from binder.runtime import ConnectError, Runtime
from binder.testing import Collector, run_app
from binder.testing.brokers import in_ci
from binders.mqtt import tls as mqtt_tls
from binders.mqtt.binder import MqttBinder
from binders.mqtt.connection import MqttConnectionError
from binders.mqtt.settings import ConnectionSettings

from .conftest import PASSWORD, USER, Subscribe, consumer_spec, fresh, producer_spec

pytestmark = pytest.mark.broker("mqtt")

TLS = Path(os.environ.get("EVENTBINDER_STATE", "/tmp/eventbinder-brokers")) / "tls"
CA = str(TLS / "ca.pem")
CLIENT = {"certfile": str(TLS / "client.pem"), "keyfile": str(TLS / "client.key")}
EXPIRED = {"certfile": str(TLS / "client-expired.pem"), "keyfile": str(TLS / "client-expired.key")}
UNTRUSTED = {"certfile": str(TLS / "other-client.pem"), "keyfile": str(TLS / "other-client.key")}

TLS_PORT, MTLS_PORT = 8883, 8884
#: Over TLS with a password, by the name in the broker's certificate.
URL = f"mqtts://{USER}:{PASSWORD}@localhost:{TLS_PORT}"
#: Mutual TLS: the client certificate is the identity, no password.
MTLS_URL = f"mqtts://localhost:{MTLS_PORT}"
#: The user the ACL limits to ``sensors/#``.
LIMITED, LIMITED_PASSWORD = "sensors-only", "sensors-only-secret"
LIMITED_URL = f"mqtts://{LIMITED}:{LIMITED_PASSWORD}@localhost:{TLS_PORT}"
WRONG = "not-the-password-42"


@pytest.fixture(autouse=True, scope="module")
def _tls_listeners() -> None:
    """The TLS listeners and the CA's files, else skip (laptop) or fail (CI): a broker
    started by an older ``scripts/brokers`` has neither."""
    problem = None
    if not (TLS / "ca.pem").exists():
        problem = f"no throwaway CA in {TLS}"
    else:
        for port in (TLS_PORT, MTLS_PORT):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1.0).close()
            except OSError:
                problem = f"nothing listens on 127.0.0.1:{port} (MQTT over TLS)"
    if problem is not None:
        reason = f"{problem}; run `scripts/brokers up mqtt`"
        if in_ci():
            pytest.fail(f"CI=true and {reason}", pytrace=False)
        pytest.skip(reason)


def _settings(url: str = URL, **settings: Any) -> dict[str, Any]:
    """Binder settings (quick reconnects); ``tls`` defaults to the CA alone."""
    return {
        "url": url,
        "tls": {"ca_certs": CA},
        "client_id": "eb-tls",
        "connect_timeout": 5.0,
        "reconnect_min_delay": 0.2,
        "reconnect_max_delay": 1.0,
        **settings,
    }


def _unique() -> str:
    return uuid.uuid4().hex[:10]


async def _round_trip(binder: MqttBinder, subscribe: Subscribe, topic: str) -> None:
    received = Collector()
    await subscribe(binder, consumer_spec("in", topic), received)
    producer = await binder.bind_producer(producer_spec("out", topic))
    await producer.publish(Message(b"over tls", content_type="text/plain"))
    [got] = await received.wait_for(1, 5.0)
    assert got.payload == b"over tls" and got.destination == topic


# -- messages over TLS --------------------------------------------------------------------


async def test_an_app_exchanges_messages_over_tls_with_a_password() -> None:
    """A function binding (consume, return, publish) over mqtts://localhost:8883 with
    the CA: the URL form, and the ``username``/``password`` settings."""
    source, sink = fresh("tls-in"), fresh("tls-out")
    app = App("tls")

    @app.function(source, sink)
    def shout(text: str) -> str:
        return text.upper()

    for settings in (
        _settings(),
        _settings(f"mqtts://localhost:{TLS_PORT}", username=USER, password=PASSWORD),
    ):
        config = {"binders": {"mqtt": {"type": "mqtt", **settings}}, "default_binder": "mqtt"}
        async with run_app(app, config) as harness:
            await harness.send(source, "over tls")
            reply = await harness.receive(sink, timeout=5.0)
        assert reply.payload == b'"OVER TLS"'


async def test_mutual_tls_with_the_client_certificate(subscribe: Subscribe) -> None:
    """No user name or password: the certificate is the identity (the ACL's
    ``eventbinder-client``); the settings form (``host``, ``port``) works too."""
    binder = MqttBinder("mtls", _settings(MTLS_URL, tls={"ca_certs": CA, **CLIENT}))
    await binder.start()
    try:
        await _round_trip(binder, subscribe, fresh("mtls"))
    finally:
        await binder.close()
    settings = _settings(host="localhost", port=MTLS_PORT, tls={"ca_certs": CA, **CLIENT})
    del settings["url"]
    binder = MqttBinder("mtls", settings)
    await binder.start()
    await binder.close()


async def test_tls_insecure_accepts_another_address() -> None:
    """``tls.insecure`` skips the host name check (tests only): 127.0.0.1 connects."""
    url = f"mqtts://{USER}:{PASSWORD}@127.0.0.1:{TLS_PORT}"
    binder = MqttBinder("insecure", _settings(url, tls={"ca_certs": CA, "insecure": True}))
    await binder.start()
    await binder.close()


# -- refusals at start --------------------------------------------------------------------

WHERE = f"the MQTT broker at localhost:{TLS_PORT}"
MTLS_WHERE = f"the MQTT broker at localhost:{MTLS_PORT}"
#: (name, settings, the exception class, the sentence)
REFUSALS: list[tuple[str, dict[str, Any], type[AccessRefused], str]] = [
    (
        "wrong CA",
        {"tls": {"ca_certs": str(TLS / "other-ca.pem")}},
        TlsRefused,
        f"{WHERE}: TLS: the broker's certificate was refused: a self-signed certificate "
        "in its chain is not in the CA file (tls.ca_certs)",
    ),
    (
        "no CA: the system's",
        {"tls": True},
        TlsRefused,
        f"{WHERE}: TLS: the broker's certificate was refused: a self-signed certificate "
        "in its chain is not in the CA file (tls.ca_certs)",
    ),
    (
        "IP address not in the certificate",
        {"url": f"mqtts://{USER}:{PASSWORD}@127.0.0.1:{TLS_PORT}"},
        TlsRefused,
        f"the MQTT broker at 127.0.0.1:{TLS_PORT}: TLS: the broker's certificate was "
        "refused: it is for another IP address",
    ),
    (
        "no client certificate",
        {"url": MTLS_URL},
        TlsRefused,
        f"{MTLS_WHERE}: TLS: the broker requires a client certificate (tls.certfile, tls.keyfile)",
    ),
    (
        "expired client certificate",
        {"url": MTLS_URL, "tls": {"ca_certs": CA, **EXPIRED}},
        TlsRefused,
        f"{MTLS_WHERE}: TLS: the broker refused the client certificate: it has expired",
    ),
    (
        "client certificate of another CA",
        {"url": MTLS_URL, "tls": {"ca_certs": CA, **UNTRUSTED}},
        TlsRefused,
        f"{MTLS_WHERE}: TLS: the broker refused the client certificate: it does not trust "
        "the CA that signed it",
    ),
    (
        "CA file missing",
        {"tls": {"ca_certs": "/nonexistent/ca.pem"}},
        TlsRefused,
        f"{WHERE}: TLS: cannot use the CA file (tls.ca_certs '/nonexistent/ca.pem'): No "
        "such file or directory",
    ),
    (
        "key of another certificate",
        {
            "url": MTLS_URL,
            "tls": {"ca_certs": CA, **CLIENT, "keyfile": UNTRUSTED["keyfile"]},
        },
        TlsRefused,
        f"{MTLS_WHERE}: TLS: the client key (tls.keyfile) does not belong to the client "
        "certificate (tls.certfile)",
    ),
    (
        "wrong password",
        {"url": URL.replace(PASSWORD, WRONG)},
        AccessRefused,
        f"{WHERE} refused the connection: Not authorized (user {USER!r}: check the "
        "binder's username and password)",
    ),
    (
        "wrong password, MQTT 3.1.1",
        {"url": URL.replace(PASSWORD, WRONG), "protocol": "3.1.1"},
        AccessRefused,
        f"{WHERE} refused the connection: Not authorized (user {USER!r}: check the "
        "binder's username and password)",
    ),
]
IDS = [case[0] for case in REFUSALS]


def _secrets() -> list[str]:
    """What must never be shown: the passwords and the private keys' contents."""
    keys = [TLS / "client.key", TLS / "client-expired.key", TLS / "other-client.key"]
    bodies = [line for key in keys for line in key.read_text().splitlines() if "-" not in line]
    return [PASSWORD, LIMITED_PASSWORD, WRONG, *bodies]


@pytest.mark.parametrize(("name", "settings", "kind", "sentence"), REFUSALS, ids=IDS)
async def test_each_refusal_at_start_is_one_sentence_naming_the_cause(
    name: str,
    settings: dict[str, Any],
    kind: type[AccessRefused],
    sentence: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    binder = MqttBinder("test", _settings(**settings))
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        with pytest.raises(AccessRefused) as caught:
            await asyncio.wait_for(binder.start(), 10.0)
    finally:
        await binder.close()
    assert loop.time() - started < 2.0, "reported at once, not after connect_timeout"
    assert type(caught.value) is kind
    assert str(caught.value) == sentence
    for secret in _secrets():
        assert secret not in str(caught.value) and secret not in caplog.text


@pytest.mark.parametrize(
    ("tls", "sentence"),
    [
        (
            {"ca_certs": CA, **EXPIRED},
            f"{MTLS_WHERE}: TLS: the broker refused the client certificate: it has expired",
        ),
        (
            {"ca_certs": CA},
            f"{MTLS_WHERE}: TLS: the broker requires a client certificate (tls.certfile, "
            "tls.keyfile)",
        ),
    ],
    ids=["expired", "missing"],
)
async def test_a_refused_client_certificate_is_named_every_time(
    tls: dict[str, str], sentence: str
) -> None:
    """Under TLS 1.3 the broker refuses the client's certificate after the client's
    side of the handshake ended and paho sent CONNECT; the alert saying why arrives,
    or is lost when the broker closed the connection before the CONNECT reached it
    (most attempts, with Mosquitto).  The sentence is the same either way."""
    for _ in range(10):
        binder = MqttBinder("test", _settings(MTLS_URL, tls=tls))
        try:
            with pytest.raises(TlsRefused) as caught:
                await asyncio.wait_for(binder.start(), 10.0)
        finally:
            await binder.close()
        assert str(caught.value) == sentence


def test_the_probe_tells_an_accepted_certificate_from_a_refused_one() -> None:
    """The broker's verdict on a client certificate, asked after a TLS connection ended
    without a reason: session tickets (accepted, so no refusal to name) or an alert."""

    def settings(url: str, **tls: str) -> ConnectionSettings:
        return ConnectionSettings.from_settings({"url": url, "tls": {"ca_certs": CA, **tls}})

    assert mqtt_tls.probe(settings(MTLS_URL, **CLIENT), 5.0) is None
    assert mqtt_tls.probe(settings(URL), 5.0) is None
    refused = mqtt_tls.probe(settings(MTLS_URL, **EXPIRED), 5.0)
    assert isinstance(refused, TlsRefused) and str(refused).endswith("it has expired")


async def test_tls_to_the_plain_text_port_is_a_connection_error() -> None:
    """Mosquitto closes a connection whose first bytes (a TLS ClientHello) are not MQTT,
    without a word: no TLS refusal to name, a connection error the runtime retries."""
    binder = MqttBinder("plain", _settings("mqtts://localhost:1883"))
    try:
        with pytest.raises(MqttConnectionError) as caught:
            await asyncio.wait_for(binder.start(), 10.0)
    finally:
        await binder.close()
    assert not isinstance(caught.value, AccessRefused)
    text = str(caught.value)
    assert text.startswith(("localhost:1883 reset ", "localhost:1883 closed ")), text
    assert text.endswith(
        " the connection during the TLS handshake: is it an MQTT broker with TLS on that port?"
    )


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

    config = {"binders": {"mqtt": {"type": "mqtt", **_settings(**settings)}}}
    registry = load_registry()
    loaded = load_settings(config, registry=registry, discover=False, environ={})
    runtime = Runtime(app, loaded, registry)
    with pytest.raises(ConnectError) as caught:
        await asyncio.wait_for(runtime.start(), 10.0)
    assert str(caught.value) == f"binder 'mqtt': the broker refused access: {sentence}"
    logged = [r.getMessage() for r in caplog.records]
    assert not [m for m in logged if "retrying" in m or "reach" in m], logged
    assert sum(m.count(sentence) for m in logged) <= 1, logged
    for secret in _secrets():
        assert secret not in str(caught.value)
        assert secret not in caplog.text


# -- the ACL ------------------------------------------------------------------------------


async def test_a_user_limited_by_the_acl_uses_its_topics(subscribe: Subscribe) -> None:
    binder = MqttBinder("sensors", _settings(LIMITED_URL))
    await binder.start()
    try:
        await _round_trip(binder, subscribe, f"sensors/{_unique()}")
    finally:
        await binder.close()


async def test_a_publish_the_acl_refuses_is_one_sentence_naming_the_topic(
    subscribe: Subscribe, caplog: pytest.LogCaptureFixture
) -> None:
    """MQTT 5: Mosquitto answers with PUBACK *Not authorized* and keeps the connection;
    the publish fails with AccessRefused, the next one to an allowed topic works."""
    binder = MqttBinder("sensors", _settings(LIMITED_URL))
    await binder.start()
    try:
        topic = f"orders/{_unique()}"
        producer = await binder.bind_producer(producer_spec("out", topic))
        with pytest.raises(AccessRefused) as caught:
            await producer.publish(Message(b"not mine"))
        assert str(caught.value) == (
            f"{WHERE} refused the message to {topic!r}: Not authorized (the broker does "
            f"not let user {LIMITED!r} publish to it)"
        )
        await _round_trip(binder, subscribe, f"sensors/{_unique()}")
    finally:
        await binder.close()
    assert LIMITED_PASSWORD not in caplog.text


async def test_a_subscription_outside_the_acl_is_granted_and_receives_nothing(
    subscribe: Subscribe,
) -> None:
    """Mosquitto 2.0's ACL file checks reads when it delivers, not when it subscribes:
    the SUBACK grants every filter (so binding succeeds, nothing to report), and what
    the user may not read is not delivered.  One subscription, ``+/<id>``, covers an
    allowed and a refused topic; the full-access user publishes to the refused one,
    then the allowed one (each confirmed): only the second arrives, and the broker
    sends one session's messages in order, so the first was not delivered."""
    limited = MqttBinder("sensors", _settings(LIMITED_URL))
    full = MqttBinder("full", _settings())
    await limited.start()
    await full.start()
    try:
        unique = _unique()
        denied, allowed = f"orders/{unique}", f"sensors/{unique}"
        exact, covering = Collector(), Collector()
        await subscribe(limited, consumer_spec("exact", denied), exact)  # granted
        await subscribe(limited, consumer_spec("covering", f"+/{unique}"), covering)
        for topic in (denied, allowed):
            producer = await full.bind_producer(producer_spec(f"out-{topic}", topic))
            await producer.publish(Message(topic.encode()))
        [got] = await covering.wait_for(1, 5.0)
        assert got.destination == allowed
        assert exact.messages == []
    finally:
        await limited.close()
        await full.close()


async def test_under_mqtt311_a_publish_the_acl_refuses_is_dropped_silently(
    subscribe: Subscribe,
) -> None:
    """An MQTT 3.1.1 PUBACK has no reason code: Mosquitto acknowledges the refused
    publish like any other and drops it, so the binder cannot tell (use MQTT 5)."""
    limited = MqttBinder("sensors", _settings(LIMITED_URL, protocol="3.1.1"))
    full = MqttBinder("full", _settings())
    await limited.start()
    await full.start()
    try:
        unique = _unique()
        denied, allowed = f"orders/{unique}", f"sensors/{unique}"
        received = Collector()
        await subscribe(full, consumer_spec("watch", f"+/{unique}"), received)
        for topic in (denied, allowed):
            producer = await limited.bind_producer(producer_spec(f"out-{topic}", topic))
            await producer.publish(Message(topic.encode()))  # both "confirmed"
        [got] = await received.wait_for(1, 5.0)
        assert got.destination == allowed
    finally:
        await limited.close()
        await full.close()


# -- the client's context -----------------------------------------------------------------


def test_the_client_context_follows_the_tls_settings() -> None:
    """TLS 1.2 or later, the broker's certificate and host name verified; ``insecure``
    drops the host name check only; ``tls: true`` trusts the system's CAs."""

    def context(tls: Any) -> ssl.SSLContext:
        return mqtt_tls.client_context(ConnectionSettings.from_settings({"tls": tls}))

    strict = context({"ca_certs": CA, **CLIENT})
    assert strict.verify_mode == ssl.CERT_REQUIRED and strict.check_hostname
    assert strict.minimum_version >= ssl.TLSVersion.TLSv1_2
    insecure = context({"ca_certs": CA, "insecure": True})
    assert insecure.verify_mode == ssl.CERT_REQUIRED and not insecure.check_hostname
    system = context(True)
    assert system.check_hostname and system.verify_mode == ssl.CERT_REQUIRED


async def test_only_a_tls_connection_that_ended_without_a_reason_is_probed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A CONNACK refusal (no socket error) or a plain connection is no TLS matter; an
    alert names the refusal itself; an end without a reason asks the broker."""
    probed: list[str] = []
    monkeypatch.setattr(mqtt_tls, "probe", lambda s, timeout: probed.append(s.address))
    plain = ConnectionSettings.from_settings({"host": "localhost"})
    secure = ConnectionSettings.from_settings({"url": MTLS_URL, "tls": {"ca_certs": CA}})
    eof = ssl.SSLEOFError(8, "EOF occurred in violation of protocol")
    assert await mqtt_tls.refusal_before_connack(plain, eof) is None
    assert await mqtt_tls.refusal_before_connack(secure, None) is None
    alert = ssl.SSLError(1, "[SSL: SSLV3_ALERT_CERTIFICATE_EXPIRED] alert")
    alert.reason = "SSLV3_ALERT_CERTIFICATE_EXPIRED"
    refused = await mqtt_tls.refusal_before_connack(secure, alert)
    assert str(refused).endswith("the broker refused the client certificate: it has expired")
    assert probed == []
    assert await mqtt_tls.refusal_before_connack(secure, eof) is None
    assert await mqtt_tls.refusal_before_connack(secure, ConnectionResetError()) is None
    assert probed == [f"localhost:{MTLS_PORT}"] * 2
