"""TLS for the MQTT binder: the client's SSL context and, for a TLS connection that
failed, the one sentence naming the cause (:class:`~binder.errors.TlsRefused`).

A failed handshake says why by itself when this client refuses the broker's
certificate (not signed by a CA of ``tls.ca_certs``, expired, for another host name):
paho's connect raises the ``SSLCertVerificationError``, and :func:`handshake_refusal`
words it with :func:`binder.tls.tls_refusal`.

A broker refusing the *client's* certificate (missing, expired, signed by a CA it does
not trust) is another matter under TLS 1.3: the client's side of the handshake ends
before the broker has checked the certificate, paho sends CONNECT at once, and the
broker's alert arrives afterwards, or not at all: when the CONNECT reaches a broker
that has already closed the connection, the alert is lost and the client sees the
connection end (``SSLEOFError``) with no reason (Mosquitto 2.0: in most attempts).
:func:`refusal_before_connack` therefore asks the broker again when a TLS connection
ended before its CONNACK without a reason: :func:`probe` makes one more handshake
with the same context, sends nothing and reads the broker's verdict, which is either
the alert (a refusal, named) or session tickets (the certificate was accepted, so the
connection ended for another reason, which stays a connection error).
"""

from __future__ import annotations

import asyncio
import select
import socket
import ssl
import time
from collections.abc import Mapping
from typing import Any

from binder.errors import TlsRefused
from binder.schema import defaults
from binder.tls import tls_refusal
from binders.mqtt.errors import DROPPED
from binders.mqtt.settings import TLS_OPTIONS, ConnectionSettings

__all__ = [
    "SETTING_NAMES",
    "client_context",
    "handshake_refusal",
    "probe",
    "refusal_before_connack",
]

#: The binder's names of the CA file, client certificate and key settings, for the
#: sentences of :func:`binder.tls.tls_refusal`.
SETTING_NAMES: Mapping[str, str] = {
    "cafile": "tls.ca_certs",
    "certfile": "tls.certfile",
    "keyfile": "tls.keyfile",
}
#: Longest wait of :func:`probe` for the broker's verdict (it normally comes within a
#: round trip; a broker that sends neither an alert nor tickets costs this much).
PROBE_TIMEOUT = 5.0


def _where(settings: ConnectionSettings) -> str:
    return f"the MQTT broker at {settings.address}"


def _tls_options(tls: bool | Mapping[str, Any]) -> Mapping[str, Any]:
    """The complete ``tls`` options: ``tls: true`` takes the defaults."""
    return tls if isinstance(tls, Mapping) else defaults(TLS_OPTIONS)


def client_context(settings: ConnectionSettings) -> ssl.SSLContext:
    """The client's SSL context, as paho's ``tls_set`` makes it from the settings.

    TLS 1.2 or later, the broker's certificate verified against ``tls.ca_certs`` (else
    the system's CAs) and, unless ``tls.insecure``, its host name; the client
    certificate and key when given.  A file that cannot be read, or a key that does not
    belong to the certificate, raises :class:`TlsRefused` saying which setting to fix.
    """
    options = _tls_options(settings.tls)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED, check_hostname
    key = "certfile"
    try:
        if options["certfile"] is not None:
            context.load_cert_chain(options["certfile"], options["keyfile"])
        key = "ca_certs"
        if options["ca_certs"] is not None:
            context.load_verify_locations(options["ca_certs"])
        else:
            context.load_default_certs()
    except ssl.SSLError as exc:
        refused = tls_refusal(exc, _where(settings), settings=SETTING_NAMES)
        raise refused or _unreadable(settings, key, options, exc) from None
    except OSError as exc:
        raise _unreadable(settings, key, options, exc) from None
    if options["insecure"]:
        context.check_hostname = False
    return context


def _unreadable(
    settings: ConnectionSettings, key: str, options: Mapping[str, Any], exc: BaseException
) -> TlsRefused:
    """A certificate or key file (``key``: certfile or ca_certs) that cannot be used."""
    if key == "certfile":
        what = f"cannot use the client certificate (tls.certfile {options['certfile']!r}"
        if options["keyfile"] is not None:
            what += f", tls.keyfile {options['keyfile']!r}"
        what += ")"
    else:
        what = f"cannot use the CA file (tls.ca_certs {options['ca_certs']!r})"
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else None
    return TlsRefused(f"{_where(settings)}: TLS: {what}: {reason or type(exc).__name__}")


def handshake_refusal(settings: ConnectionSettings, exc: BaseException) -> TlsRefused | None:
    """The :class:`TlsRefused` for a connect that failed in the TLS handshake for a
    reason retrying cannot fix (see :func:`binder.tls.tls_refusal`), else None."""
    if not settings.tls:
        return None
    return tls_refusal(exc, _where(settings), settings=SETTING_NAMES)


async def refusal_before_connack(
    settings: ConnectionSettings, cause: BaseException | None
) -> TlsRefused | None:
    """The :class:`TlsRefused` for a TLS connection that ended before its CONNACK
    because the broker refused the client's certificate, else None.

    ``cause`` is the socket error that ended the connection (``None`` for none: a
    CONNACK refused the client, say, which is no TLS matter).  An alert names the
    refusal; an end without one (``SSLEOFError``, a reset) is followed by one
    :func:`probe` of the broker, in a worker thread.
    """
    if not settings.tls or cause is None:
        return None
    refused = handshake_refusal(settings, cause)
    if refused is not None:
        return refused
    if not isinstance(cause, (ssl.SSLError, *DROPPED)):
        return None
    return await asyncio.to_thread(probe, settings, min(settings.connect_timeout, PROBE_TIMEOUT))


def probe(settings: ConnectionSettings, timeout: float) -> TlsRefused | None:
    """Ask the broker whether it refuses this client's TLS certificate: connect, make
    the handshake, send nothing, and read what the broker sends within ``timeout``
    seconds.  An alert refusing the certificate gives the :class:`TlsRefused`; session
    tickets (sent only once the broker accepted the certificate), silence, an end
    without an alert or any other error give None."""
    deadline = time.monotonic() + timeout
    try:
        context = client_context(settings)
        with (
            socket.create_connection((settings.host, settings.port), timeout=timeout) as raw,
            context.wrap_socket(raw, server_hostname=settings.host) as tls,
        ):
            tls.setblocking(False)
            while (left := deadline - time.monotonic()) > 0:
                readable, _, _ = select.select([tls], [], [], left)
                if not readable:
                    break
                try:
                    tls.recv(1)
                except ssl.SSLWantReadError:
                    session = tls.session
                    if session is not None and session.has_ticket:
                        return None  # the broker accepted the certificate
                    continue
                return None  # the end of the connection, or bytes: no refusal
    except TlsRefused as refused:
        return refused
    except (OSError, ValueError) as exc:
        return handshake_refusal(settings, exc)
    return None
