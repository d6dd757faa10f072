"""TLS on the broker's localhost:9095 (SSL) and localhost:9096 (SASL_SSL, SCRAM-SHA-512)
listeners of scripts/brokers, with its throwaway certificates (STATE/tls): server
authentication, mutual TLS and SCRAM work end to end; a certificate either side refuses,
a host name mismatch and a wrong password each end the start at once with one sentence
naming the cause (TlsRefused / AccessRefused), never a secret, never a retry loop; the
configurations docs/binders/kafka.md shows work as shown."""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import ssl
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from binder.app import App
from binder.config import load_settings
from binder.errors import AccessRefused, TlsRefused
from binder.plugins import load_registry
from binder.runtime import ConnectError, Runtime
from binder.testing import run_app
from binders.kafka.client import client_kwargs
from binders.kafka.errors import _probe_advertised, _tls_refused, certificate_validity, redact

from .helpers import (
    MTLS_SETTINGS,
    SCRAM_PASSWORD,
    SCRAM_SETTINGS,
    SSL_SETTINGS,
    TLS_DIR,
    make_binder,
    unique,
)

pytestmark = pytest.mark.broker("kafka")

SSL_WHERE = "Kafka at localhost:9095 (SSL)"


async def round_trip(settings: dict[str, Any]) -> None:
    """An app relays one message through a function over ``settings``' connection."""
    source, group = unique("tls"), unique("g")
    app = App("kafka-tls")
    got: list[dict[str, Any]] = []

    @app.function(input=source, output=f"{source}-out", group=group)
    def relay(order: dict[str, Any]) -> dict[str, Any]:
        return {**order, "relayed": True}

    @app.consumer(f"{source}-out", group=group)
    def collect(order: dict[str, Any]) -> None:
        got.append(order)

    async with run_app(app, {"binders": {"kafka": settings}}, record=False) as harness:
        await harness.send(source, {"id": 1})
        await harness.wait_for(lambda: len(got) == 1, 10, "the relayed message")
        assert settings["security_protocol"] in repr(harness.binder)
    assert got == [{"id": 1, "relayed": True}]


async def refused(settings: dict[str, Any]) -> AccessRefused:
    """The error the start of a binder with ``settings`` ends with."""
    binder = make_binder(**settings)
    try:
        with pytest.raises(AccessRefused) as failed:
            await binder.start()
    finally:
        await binder.close()
    return failed.value


# ---------------------------------------------------------------------------- working
async def test_messages_go_over_tls_with_the_ca() -> None:
    await round_trip(SSL_SETTINGS)


async def test_mutual_tls_with_a_client_certificate() -> None:
    await round_trip(MTLS_SETTINGS)


async def test_scram_sha_512_over_tls() -> None:
    await round_trip(SCRAM_SETTINGS)


async def test_an_ip_address_works_when_the_host_name_is_not_checked() -> None:
    binder = make_binder(
        **{**SSL_SETTINGS, "bootstrap_servers": "127.0.0.1:9095", "ssl_check_hostname": False}
    )
    try:
        await binder.start()
    finally:
        await binder.close()


# ------------------------------------------------------------ the broker's certificate
async def test_a_ca_that_did_not_sign_the_brokers_certificate() -> None:
    error = await refused({**SSL_SETTINGS, "ssl_cafile": str(TLS_DIR / "other-ca.pem")})
    assert isinstance(error, TlsRefused)
    assert str(error) == (
        f"{SSL_WHERE}: TLS: the broker's certificate was refused: it is not signed by a CA "
        "in the CA file (ssl_cafile)"
    )


async def test_a_host_name_the_certificate_does_not_hold() -> None:
    error = await refused({**SSL_SETTINGS, "bootstrap_servers": "127.0.0.1:9095"})
    assert isinstance(error, TlsRefused)
    assert str(error) == (
        "Kafka at 127.0.0.1:9095 (SSL): TLS: the broker's certificate was refused: it is "
        "for another IP address"
    )


async def test_the_tls_check_comes_before_the_login() -> None:
    error = await refused({**SCRAM_SETTINGS, "ssl_cafile": str(TLS_DIR / "other-ca.pem")})
    assert isinstance(error, TlsRefused)
    assert str(error).startswith(
        "Kafka at localhost:9096 (SASL_SSL as eventbinder-scram): TLS: the broker's "
        "certificate was refused"
    )


# ------------------------------------------------------------- the client certificate
async def test_an_expired_client_certificate() -> None:
    error = await refused(
        {
            **MTLS_SETTINGS,
            "ssl_certfile": str(TLS_DIR / "client-expired.pem"),
            "ssl_keyfile": str(TLS_DIR / "client-expired.key"),
        }
    )
    assert isinstance(error, TlsRefused)
    assert str(error) == (
        f"{SSL_WHERE}: TLS: the broker refused the client certificate (ssl_certfile): it "
        "expired on 2020-01-02 00:00 UTC"
    )


async def test_a_client_certificate_of_another_ca() -> None:
    error = await refused(
        {
            **MTLS_SETTINGS,
            "ssl_certfile": str(TLS_DIR / "other-client.pem"),
            "ssl_keyfile": str(TLS_DIR / "other-client.key"),
        }
    )
    assert isinstance(error, TlsRefused)
    assert str(error) == (
        f"{SSL_WHERE}: TLS: the broker refused the client certificate (ssl_certfile): most "
        "likely it is not signed by a CA the broker trusts (its ssl.truststore)"
    )


def test_a_key_of_another_certificate_is_refused_before_connecting() -> None:
    with pytest.raises(TlsRefused) as failed:
        make_binder(**{**MTLS_SETTINGS, "ssl_keyfile": str(TLS_DIR / "other-client.key")})
    assert str(failed.value) == (
        f"{SSL_WHERE}: TLS: the client key (ssl_keyfile) does not belong to the client "
        "certificate (ssl_certfile)"
    )


def test_a_missing_ca_file_is_named() -> None:
    missing = str(TLS_DIR / "no-such-ca.pem")
    with pytest.raises(TlsRefused) as failed:
        make_binder(**{**SSL_SETTINGS, "ssl_cafile": missing})
    assert str(failed.value) == (
        f"{SSL_WHERE}: TLS: cannot use the CA file (ssl_cafile {missing!r}): No such file or "
        "directory"
    )


# ----------------------------------------------------------------------------- SCRAM
async def test_a_wrong_scram_password_names_the_user_not_the_password() -> None:
    error = await refused({**SCRAM_SETTINGS, "sasl_plain_password": "wrong-horse-battery"})
    assert not isinstance(error, TlsRefused)
    assert str(error) == (
        "Kafka at localhost:9096 (SASL_SSL as eventbinder-scram): the broker refused the "
        "SASL SCRAM-SHA-512 login of user 'eventbinder-scram' (Authentication failed during "
        "authentication due to invalid credentials with SASL mechanism SCRAM-SHA-512); "
        "check sasl_plain_username and sasl_plain_password"
    )


# ----------------------------------------------------------- what the runtime does
@pytest.mark.parametrize(
    ("case", "overrides", "cause"),
    [
        ("wrong CA", {"ssl_cafile": str(TLS_DIR / "other-ca.pem")}, "not signed by a CA"),
        ("host name", {"bootstrap_servers": "127.0.0.1:9096"}, "for another IP address"),
        ("password", {"sasl_plain_password": "wrong-horse-battery"}, "refused the SASL"),
    ],
)
async def test_the_runtime_fails_at_once_without_showing_a_secret(
    case: str, overrides: dict[str, Any], cause: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = {**SCRAM_SETTINGS, **overrides}
    app = App("kafka-tls-refused")

    @app.consumer(unique("refused"), group=unique("g"))
    def never(payload: bytes) -> None:
        raise AssertionError("no message can arrive")

    registry = load_registry()
    config = load_settings(
        {"binders": {"kafka": settings}}, registry=registry, discover=False, environ={}
    )
    runtime = Runtime(app, config, registry)  # not fail_fast: only a refusal ends at once
    started = time.monotonic()
    with pytest.raises(ConnectError) as failed:
        await asyncio.wait_for(runtime.start(), 10)
    assert time.monotonic() - started < 3, case
    message = str(failed.value)
    assert message.startswith("binder 'kafka': the broker refused access: Kafka at "), message
    assert cause in message
    assert "\n" not in message and "cannot reach" not in message
    records = [r for r in caplog.records if "retrying" in r.getMessage()]
    assert not records, [r.getMessage() for r in records]
    for secret in (settings["sasl_plain_password"], SCRAM_PASSWORD):
        assert secret not in message
        assert secret not in caplog.text


# --------------------------------------------------- the addresses brokers advertise
async def test_an_advertised_address_the_certificate_does_not_hold_is_named() -> None:
    """aiokafka retries a broker it cannot verify without end; the diagnosis names it
    (the local broker advertises localhost: its 127.0.0.1 address stands in here)."""
    settings = make_binder(**SSL_SETTINGS).settings
    problem = await _probe_advertised("127.0.0.1", 9095, settings, client_kwargs(settings), 5)
    assert isinstance(problem, TlsRefused)
    assert str(problem) == (
        "TLS: the broker's certificate was refused: it is for another IP address (at "
        "127.0.0.1:9095, the address the cluster advertises in advertised.listeners)"
    )
    assert await _probe_advertised("localhost", 9095, settings, client_kwargs(settings), 5) is None


async def test_an_advertised_address_nothing_listens_on_is_named() -> None:
    settings = make_binder().settings
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
        problem = await _probe_advertised("127.0.0.1", port, settings, {}, 5)
    assert problem == (
        f"cannot connect to 127.0.0.1:{port}, the address the cluster advertises in "
        "advertised.listeners: connection refused"
    )


# ------------------------------------------- what Kafka's alerts leave out (no broker)
def _alert(reason: str) -> ssl.SSLError:
    error = ssl.SSLError(1, f"[SSL: {reason}] alert")
    error.reason = reason
    return error


def test_the_dates_of_a_certificate_are_read_from_its_pem_file() -> None:
    expired = certificate_validity(str(TLS_DIR / "client-expired.pem"))
    assert expired == (datetime(2020, 1, 1, tzinfo=UTC), datetime(2020, 1, 2, tzinfo=UTC))
    valid = certificate_validity(str(TLS_DIR / "client.pem"))
    assert valid is not None and valid[0] < datetime.now(UTC) < valid[1]
    assert certificate_validity(str(TLS_DIR / "client.key")) is None  # no certificate
    assert certificate_validity(str(TLS_DIR / "no-such.pem")) is None


def test_a_refusal_without_a_client_certificate_means_one_is_required() -> None:
    # Kafka (Java) sends bad_certificate when ssl.client.auth=required gets none.
    refused = _tls_refused(_alert("SSLV3_ALERT_BAD_CERTIFICATE"), SSL_SETTINGS)
    assert str(refused) == (
        "TLS: the broker requires a client certificate (ssl_certfile, ssl_keyfile)"
    )
    # With a valid certificate, the alert's own sentence.
    refused = _tls_refused(_alert("SSLV3_ALERT_BAD_CERTIFICATE"), MTLS_SETTINGS)
    assert str(refused) == "TLS: the broker refused the client certificate"
    assert _tls_refused(_alert("UNEXPECTED_EOF_WHILE_READING"), MTLS_SETTINGS) is None


def test_short_secrets_are_redacted_where_they_stand_alone() -> None:
    settings = {"sasl_plain_password": "y", "ssl_password": "longer-secret"}
    assert redact("security_protocol y; xlonger-secretx", settings) == (
        "security_protocol ***; x***x"
    )


# ------------------------------------------------------------- the documented configs
DOCS = Path(__file__).resolve().parents[2] / "docs" / "binders" / "kafka.md"


def documented_configs() -> list[tuple[str, str]]:
    """(heading, YAML) of each configuration in the docs' security section."""
    text = DOCS.read_text()
    section = text[text.index("## Security: TLS, SASL and ACLs") :]
    section = section[: section.index("\n## ", 1)]
    found, heading = [], ""
    for part in re.split(r"(^### [^\n]*$|```yaml\n.*?```)", section, flags=re.M | re.S):
        if part.startswith("### "):
            heading = part[4:]
        elif part.startswith("```yaml"):
            found.append((heading, part[len("```yaml\n") : -3]))
    return found


def test_every_security_heading_shows_a_config() -> None:
    headings = [heading for heading, _ in documented_configs()]
    assert headings == [
        "TLS",
        "Mutual TLS",
        "SASL_SSL with SCRAM",
        "SASL_PLAINTEXT with PLAIN",
        "ACLs",
    ]


@pytest.mark.parametrize(("heading", "text"), documented_configs())
async def test_the_documented_config_works(heading: str, text: str) -> None:
    """The configuration as shown, the password from the environment variable its
    comment names, the certificates from this run's state folder."""
    environ = dict(re.findall(r"^#\s+(EVENTBINDER_\w+)=(\S+)$", text, re.M))
    environ = {k: v for k, v in environ.items() if v != "..."}
    text = text.replace("/tmp/eventbinder-brokers/tls", str(TLS_DIR))
    config = yaml.safe_load(text)
    config.pop("bindings", None)  # they name handlers of an app
    registry = load_registry()
    settings = load_settings(config, registry=registry, discover=False, environ=environ)
    kafka = settings.binders["kafka"]
    binder = registry.create("kafka", kafka.type, kafka.settings)
    try:
        await binder.start()
        for destination in re.findall(r"destination: ([\w.-]+)", text):
            await binder.provision(destination, None, {})
    finally:
        await binder.close()
