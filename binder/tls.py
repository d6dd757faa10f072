"""One sentence for a failed TLS handshake, shared by the binders.

Python's ``ssl`` module reports a failed handshake as ``SSLCertVerificationError``
(this client refused the broker's certificate; ``verify_code`` says why) or as an
``SSLError`` carrying the alert the broker sent (it refused this client's
certificate).  :func:`tls_refusal` turns the ones retrying cannot fix into
:class:`~binder.errors.TlsRefused` naming the cause and what to check; other errors
(a connection reset mid-handshake, say) return None and stay connection errors.
The sentences name the settings to check as the binder calls them (``settings``).
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping

from binder.errors import TlsRefused

__all__ = ["KAFKA_SETTINGS", "tls_refusal"]

#: The names of the CA file, client certificate and client key settings that the
#: sentences mention, by role: Kafka's unless the binder passes its own.
KAFKA_SETTINGS: Mapping[str, str] = {
    "cafile": "ssl_cafile",
    "certfile": "ssl_certfile",
    "keyfile": "ssl_keyfile",
}

# OpenSSL's X509_V_ERR_* codes (x509_vfy.h) for the certificate of the broker.
_VERIFY_CODES = {
    2: "its issuer's certificate is not in the CA file ({cafile})",
    9: "it is not valid yet",
    10: "it has expired",
    18: "it is self-signed and not in the CA file ({cafile})",
    19: "a self-signed certificate in its chain is not in the CA file ({cafile})",
    20: "it is not signed by a CA in the CA file ({cafile})",
    21: "it is not signed by a CA in the CA file ({cafile})",
    62: "it is for another host name",
    64: "it is for another IP address",
}
# Alerts (SSLError reasons) a broker sends when it refuses this client's certificate.
_CLIENT_REFUSED = {
    "TLSV13_ALERT_CERTIFICATE_REQUIRED": "the broker requires a client certificate "
    "({certfile}, {keyfile})",
    "SSLV3_ALERT_CERTIFICATE_EXPIRED": "the broker refused the client certificate: it has expired",
    "SSLV3_ALERT_BAD_CERTIFICATE": "the broker refused the client certificate",
    "TLSV1_ALERT_UNKNOWN_CA": "the broker refused the client certificate: it does not "
    "trust the CA that signed it",
    "SSLV3_ALERT_CERTIFICATE_UNKNOWN": "the broker refused the client certificate",
    "TLSV1_ALERT_ACCESS_DENIED": "the broker refused the client certificate",
    "SSLV3_ALERT_CERTIFICATE_REVOKED": "the broker refused the client certificate: it was revoked",
}
# This side's own mistakes, or no TLS version both sides speak.
_LOCAL = {
    "KEY_VALUES_MISMATCH": "the client key ({keyfile}) does not belong to the client "
    "certificate ({certfile})",
    "WRONG_VERSION_NUMBER": "the broker did not answer with TLS (is it a plain-text port?)",
    "TLSV1_ALERT_PROTOCOL_VERSION": "the broker accepts none of the TLS versions this "
    "client offers",
}


def tls_refusal(
    exc: BaseException, where: str, *, settings: Mapping[str, str] = KAFKA_SETTINGS
) -> TlsRefused | None:
    """The :class:`TlsRefused` for a handshake failure retrying cannot fix, else None.

    ``where`` names the broker (``"Kafka at localhost:9095"``); ``exc`` may be wrapped
    (its ``__cause__``/``__context__`` chain is searched). ``settings`` gives the
    binder's names of the ``cafile``, ``certfile`` and ``keyfile`` settings that a
    sentence may tell the user to check (default :data:`KAFKA_SETTINGS`).
    """
    error = _find_ssl_error(exc)
    if error is None:
        return None
    names = {**KAFKA_SETTINGS, **settings}
    if isinstance(error, ssl.SSLCertVerificationError):
        reason = _VERIFY_CODES.get(error.verify_code)
        detail = reason.format(**names) if reason else None
        detail = detail or (error.verify_message or "it could not be verified")
        return TlsRefused(f"{where}: TLS: the broker's certificate was refused: {detail}")
    reason = getattr(error, "reason", None) or ""
    if reason in _CLIENT_REFUSED:
        return TlsRefused(f"{where}: TLS: {_CLIENT_REFUSED[reason].format(**names)}")
    if reason in _LOCAL:
        return TlsRefused(f"{where}: TLS: {_LOCAL[reason].format(**names)}")
    return None


def _find_ssl_error(exc: BaseException) -> ssl.SSLError | None:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ssl.SSLError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None
