"""binder.tls: which handshake failures are refusals, in one sentence each."""

from __future__ import annotations

import ssl

from binder.errors import AccessRefused, TlsRefused
from binder.tls import tls_refusal


def _verify_error(code: int, message: str) -> ssl.SSLCertVerificationError:
    error = ssl.SSLCertVerificationError(1, f"[SSL: CERTIFICATE_VERIFY_FAILED] {message}")
    error.verify_code = code
    error.verify_message = message
    return error


def _alert(reason: str) -> ssl.SSLError:
    error = ssl.SSLError(1, f"[SSL: {reason}] alert")
    error.reason = reason
    return error


def test_the_brokers_certificate_refused_says_why() -> None:
    expired = tls_refusal(_verify_error(10, "certificate has expired"), "Kafka at localhost:9095")
    assert isinstance(expired, TlsRefused) and isinstance(expired, AccessRefused)
    assert str(expired) == (
        "Kafka at localhost:9095: TLS: the broker's certificate was refused: it has expired"
    )
    assert "another host name" in str(tls_refusal(_verify_error(62, "Hostname mismatch"), "x"))
    assert "ssl_cafile" in str(tls_refusal(_verify_error(20, "unable to get local issuer"), "x"))
    assert "odd" in str(tls_refusal(_verify_error(99, "odd"), "x"))


def test_a_refused_client_certificate_is_named_even_when_wrapped() -> None:
    try:
        try:
            raise _alert("TLSV1_ALERT_UNKNOWN_CA")
        except ssl.SSLError as inner:
            raise ConnectionError("connect failed") from inner
    except ConnectionError as outer:
        refused = tls_refusal(outer, "RabbitMQ at localhost:5671")
    assert str(refused) == (
        "RabbitMQ at localhost:5671: TLS: the broker refused the client certificate: it "
        "does not trust the CA that signed it"
    )
    assert "client certificate" in str(
        tls_refusal(_alert("TLSV13_ALERT_CERTIFICATE_REQUIRED"), "x")
    )


def test_other_errors_are_not_refusals() -> None:
    assert tls_refusal(ConnectionResetError("reset"), "x") is None
    assert tls_refusal(_alert("UNEXPECTED_EOF_WHILE_READING"), "x") is None


def test_the_sentences_name_the_binders_own_settings() -> None:
    names = {"cafile": "ssl.ca_certs", "certfile": "ssl.certfile", "keyfile": "ssl.keyfile"}
    untrusted = tls_refusal(
        _verify_error(19, "self-signed certificate in chain"), "x", settings=names
    )
    assert str(untrusted) == (
        "x: TLS: the broker's certificate was refused: a self-signed certificate in its "
        "chain is not in the CA file (ssl.ca_certs)"
    )
    required = tls_refusal(_alert("TLSV13_ALERT_CERTIFICATE_REQUIRED"), "x", settings=names)
    assert str(required) == (
        "x: TLS: the broker requires a client certificate (ssl.certfile, ssl.keyfile)"
    )
    assert "(ssl_cafile)" in str(tls_refusal(_verify_error(20, "unable to get issuer"), "x"))


def test_no_common_tls_version_is_a_refusal() -> None:
    refused = tls_refusal(_alert("TLSV1_ALERT_PROTOCOL_VERSION"), "RabbitMQ at localhost:5671")
    assert str(refused) == (
        "RabbitMQ at localhost:5671: TLS: the broker accepts none of the TLS versions this "
        "client offers"
    )
