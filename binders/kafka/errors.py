"""Kafka failures worded for users: one line each, no chain of exception type names,
never a secret.

aiokafka's broker errors print as ``[Error 10] MessageSizeTooLargeError``, and a client
that cannot log in only says ``Unable to bootstrap from [...]`` (the reason goes to
aiokafka's log).  The binder words them here: :func:`kafka_reason` for any aiokafka
error, :func:`refusal` for errors that mean the broker refused the client (raised as
:class:`~binder.errors.AccessRefused`, which the runtime does not retry), and
:func:`diagnose_connection`, which finds out why a client could not start by
connecting to each bootstrap server once (with a TLS handshake of its own first, for
the TLS protocols: aiokafka logs a refused handshake and keeps only "Unable to
bootstrap").
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import re
import ssl
import struct
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from aiokafka.conn import create_conn
from aiokafka.errors import (
    BrokerResponseError,
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    IllegalSaslStateError,
    InconsistentGroupProtocolError,
    KafkaConnectionError,
    KafkaError,
    SaslAuthenticationFailed,
    TopicAuthorizationFailedError,
    UnsupportedSaslMechanismError,
)
from aiokafka.protocol.metadata import MetadataRequest

from binder.errors import AccessRefused, BinderError, PermanentError, TlsRefused, describe_error
from binder.tls import tls_refusal
from binders.kafka.client import describe_connection

__all__ = [
    "RecordTooLarge",
    "diagnose_connection",
    "group_protocol_mismatch",
    "kafka_errors",
    "kafka_reason",
    "redact",
    "refusal",
]

#: Longest wait of the diagnosis for one bootstrap server.
_PROBE_TIMEOUT = 10.0


class RecordTooLarge(PermanentError):
    """A record is larger than a limit; sending it again cannot help.

    The message names the limit and the setting that raises it.
    """


def redact(text: str, settings: Mapping[str, Any]) -> str:
    """``text`` with the binder's secrets replaced by ``***``.

    A secret shorter than 8 characters is replaced only where it stands alone (not
    next to a letter or digit): replacing a password ``y`` in every word would mangle
    the text, and show the password too (``securit***_protocol``)."""
    for key in ("sasl_plain_password", "ssl_password"):
        secret = settings.get(key)
        if secret:
            pattern = re.escape(secret)
            if len(secret) < 8:
                pattern = rf"(?<![^\W_]){pattern}(?![^\W_])"
            text = re.sub(pattern, "***", text)
    return text


def kafka_reason(exc: BaseException) -> str:
    """One line for ``exc`` with one type name: aiokafka's errors print their class
    name themselves (``KafkaConnectionError: ...``, ``[Error 10] MessageSizeTooLargeError``),
    so they become ``Type: detail``, with the broker's description of a broker error
    that has no detail; anything else goes through :func:`describe_error`."""
    if isinstance(exc, KafkaError):
        detail = _args(exc, fallback=False)
        return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
    return describe_error(exc)


def refusal(exc: BaseException, where: str) -> AccessRefused | None:
    """The :class:`AccessRefused` for an authorization or login error, else None.

    ``where`` says what was being done (``"joining consumer group 'g'"``).
    """
    if isinstance(exc, AccessRefused):
        return exc
    if isinstance(exc, TopicAuthorizationFailedError):
        return AccessRefused(f"{where}: not authorized for the topic ({_args(exc)})")
    if isinstance(exc, GroupAuthorizationFailedError):
        return AccessRefused(f"{where}: not authorized for the consumer group ({_args(exc)})")
    if isinstance(exc, ClusterAuthorizationFailedError):
        return AccessRefused(f"{where}: not authorized for this cluster operation")
    if isinstance(exc, SaslAuthenticationFailed):
        return AccessRefused(f"{where}: the SASL login failed ({_args(exc)})")
    return None


def group_protocol_mismatch(
    exc: BaseException, *, binding: str, group: str, offered: list[str]
) -> BinderError | None:
    """A sentence for a group whose members offer no assignment protocol in common
    (``InconsistentGroupProtocol``), else None.  Retrying cannot help while the other
    members stay as they are."""
    if not isinstance(exc, InconsistentGroupProtocolError):
        return None
    return BinderError(
        f"Kafka consumer group '{group}' refused consumer '{binding}': its members offer "
        f"no partition assignment protocol in common; this consumer offers "
        f"{', '.join(offered)} (partition_assignment_strategy), Java clients offer range "
        "and cooperative-sticky by default: list a protocol the other members offer, "
        "such as range"
    )


@contextlib.contextmanager
def kafka_errors(doing: str) -> Iterator[None]:
    """Raise an aiokafka error escaping the block as :class:`AccessRefused` (an
    authorization error) or :class:`BinderError`, worded ``"<doing>: <reason>"``."""
    try:
        yield
    except KafkaError as exc:
        refused = refusal(exc, doing)
        raise (refused or BinderError(f"{doing}: {kafka_reason(exc)}")) from exc


def _args(exc: BaseException, *, fallback: bool = True) -> str:
    """The detail of an aiokafka error: its arguments, else the broker's description of
    its error code (aiokafka sometimes passes its connection object: left out); with
    ``fallback``, the type name when there is neither."""
    text = " ".join(
        str(arg) for arg in exc.args if str(arg).strip() and not str(arg).startswith("<")
    )
    if not text and isinstance(exc, BrokerResponseError):
        text = str(exc.description)
    return text or (type(exc).__name__ if fallback else "")


async def diagnose_connection(
    settings: Mapping[str, Any], client_kwargs: Mapping[str, Any], failure: BaseException
) -> BinderError:
    """The error to raise when a client of the binder could not start.

    aiokafka reports a refused login or TLS handshake only as ``Unable to bootstrap``;
    connecting once to each bootstrap server (at the same time) with the same settings
    tells what happened.  Returns a :class:`~binder.errors.TlsRefused` when a TLS
    handshake failed for a reason retrying cannot fix (the broker's certificate is not
    trusted, has expired or names another host; the broker refused the client's
    certificate), an :class:`AccessRefused` when a broker refused the login or the SASL
    mechanism, else a :class:`BinderError` naming each server's problem (or ``failure``
    when every server answers now).  The text never holds a secret.
    """
    where = f"Kafka at {describe_connection(settings)}"
    direct = refusal(failure, where) or tls_refusal(failure, where)
    if direct is not None:
        return type(direct)(redact(str(direct), settings))
    problems: list[str] = []
    servers = _servers(settings["bootstrap_servers"])
    found = await asyncio.gather(
        *(_probe(host, port, settings, client_kwargs) for host, port in servers)
    )
    for (host, port), problem in zip(servers, found, strict=True):
        if isinstance(problem, AccessRefused):
            # The first refusal wins: the same settings go to every server.
            server = f" (at {host}:{port})" if len(servers) > 1 else ""
            kind = TlsRefused if isinstance(problem, TlsRefused) else AccessRefused
            return kind(redact(f"{where}{server}: {problem}", settings))
        if problem is not None:
            problems.append(f"{host}:{port}: {problem}" if len(servers) > 1 else problem)
    if problems:
        reason = "; ".join(problems)
    elif isinstance(failure, TimeoutError) and not str(failure):
        limit = settings["request_timeout_ms"]
        reason = f"the clients did not start within request_timeout_ms ({limit} ms)"
    else:
        reason = kafka_reason(failure)
    return BinderError(redact(f"cannot connect to {where}: {reason}", settings))


def _servers(value: str | list[str]) -> list[tuple[str, int]]:
    entries = value.split(",") if isinstance(value, str) else list(value)
    servers: list[tuple[str, int]] = []
    for entry in entries:
        entry = entry.strip()
        if not entry:
            continue
        host, _, port = entry.rpartition(":")
        if not host or not port.isdigit():
            host, port = entry, "9092"
        servers.append((host.strip("[]"), int(port)))
    return servers


async def _probe(
    host: str, port: int, settings: Mapping[str, Any], client_kwargs: Mapping[str, Any]
) -> AccessRefused | str | None:
    """Connect (with a TLS handshake of our own first, for the TLS protocols), log in
    and ask for metadata once: None when it works, else why not.  A refusal comes back
    as an :class:`AccessRefused` (a :class:`TlsRefused` for TLS) whose text the caller
    puts after the broker's address."""
    kwargs = {
        key: client_kwargs[key]
        for key in (
            "client_id",
            "security_protocol",
            "ssl_context",
            "sasl_mechanism",
            "sasl_plain_username",
            "sasl_plain_password",
        )
        if key in client_kwargs
    }
    protocol = settings["security_protocol"]
    timeout = min(_PROBE_TIMEOUT, settings["request_timeout_ms"] / 1000)
    conn: Any = None
    advertised: list[tuple[str, int]] = []
    try:
        async with asyncio.timeout(timeout):
            if protocol in ("SSL", "SASL_SSL"):
                await _tls_handshake(host, port, client_kwargs["ssl_context"])
            conn = await create_conn(host, port, request_timeout_ms=int(timeout * 1000), **kwargs)
            response = await conn.send(MetadataRequest([]))
            advertised = [
                (broker["host"], broker["port"])
                for broker in response.to_object()["brokers"]
                if (broker["host"], broker["port"]) != (host, port)
            ]
    except SaslAuthenticationFailed as exc:
        user = settings["sasl_plain_username"]
        return AccessRefused(
            f"the broker refused the SASL {settings['sasl_mechanism']} login of user "
            f"'{user}' ({_args(exc)}); check sasl_plain_username and sasl_plain_password"
        )
    except UnsupportedSaslMechanismError:
        return AccessRefused(
            f"the broker does not accept SASL mechanism {settings['sasl_mechanism']} on "
            "this listener; check sasl_mechanism"
        )
    except IllegalSaslStateError:
        return (
            f"the listener does not expect a SASL login (security_protocol is {protocol}; "
            "is this the broker's SASL listener?)"
        )
    except TimeoutError:
        return f"no answer within {timeout:g}s"
    except KafkaConnectionError as exc:
        if "closed" in str(exc) and protocol in ("PLAINTEXT", "SSL"):
            return (
                f"the broker closed the connection (security_protocol is {protocol}: "
                "does this listener expect a SASL login or TLS?)"
            )
        return kafka_reason(exc)
    except ConnectionResetError:
        if protocol in ("SSL", "SASL_SSL"):
            return (
                f"the broker reset the connection during the TLS handshake (security_protocol "
                f"is {protocol}: does this listener speak TLS?)"
            )
        return "the broker reset the connection"
    except asyncio.IncompleteReadError:
        return "the broker closed the connection right after the TLS handshake"
    except ssl.SSLError as exc:
        refused = _tls_refused(exc, settings)
        if refused is not None:
            return refused
        detail = getattr(exc, "verify_message", None) or exc.reason or describe_error(exc)
        return f"TLS handshake failed: {detail}"
    except OSError as exc:
        if exc.errno and exc.errno > 0:
            return os.strerror(exc.errno).lower()
        return exc.strerror or describe_error(exc)
    except Exception as exc:
        return kafka_reason(exc)
    finally:
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()
    for problem in await asyncio.gather(
        *(_probe_advertised(h, p, settings, client_kwargs, timeout) for h, p in advertised)
    ):
        if problem is not None:
            return problem
    return None


async def _probe_advertised(
    host: str,
    port: int,
    settings: Mapping[str, Any],
    client_kwargs: Mapping[str, Any],
    timeout: float,
) -> TlsRefused | str | None:
    """Whether a client gets through to a broker at the address the cluster sends it to
    (``advertised.listeners``): a TLS handshake, else a TCP connection.  aiokafka
    retries such a broker without end, so its problem is named here."""
    where = f"{host}:{port}, the address the cluster advertises in advertised.listeners"
    try:
        async with asyncio.timeout(timeout):
            if settings["security_protocol"] in ("SSL", "SASL_SSL"):
                await _tls_handshake(host, port, client_kwargs["ssl_context"])
            else:
                _, writer = await asyncio.open_connection(host, port)
                writer.close()
    except ssl.SSLError as exc:
        refused = _tls_refused(exc, settings)
        if refused is not None:
            return TlsRefused(f"{refused} (at {where})")
        return f"TLS handshake failed at {where}: {exc.reason or describe_error(exc)}"
    except TimeoutError:
        return f"no answer within {timeout:g}s from {where}"
    except (OSError, asyncio.IncompleteReadError) as exc:
        errno = exc.errno if isinstance(exc, OSError) else None
        reason = os.strerror(errno).lower() if errno else describe_error(exc)
        return f"cannot connect to {where}: {reason}"
    return None


#: ApiVersions v0 (key 18), correlation id 1, client id "eventbinder-tls-probe".
_API_VERSIONS = struct.pack(">hhih", 18, 0, 1, 21) + b"eventbinder-tls-probe"


async def _tls_handshake(host: str, port: int, context: ssl.SSLContext) -> None:
    """A TLS handshake with the broker, then one request and the start of its answer.

    A broker that refuses the client's certificate says so with an alert that, in TLS
    1.3, comes after the client finished its handshake: the first read gets it (aiokafka
    sees only a closed connection).  Raises what the handshake or the read raised."""
    reader, writer = await asyncio.open_connection(host, port, ssl=context)
    try:
        writer.write(struct.pack(">i", len(_API_VERSIONS)) + _API_VERSIONS)
        await writer.drain()
        await reader.readexactly(4)
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


def _tls_refused(exc: ssl.SSLError, settings: Mapping[str, Any]) -> TlsRefused | None:
    """:func:`binder.tls.tls_refusal` for the probe (its text goes after the broker's
    address), with what Kafka's alerts leave out: Kafka (Java) refuses an expired client
    certificate with the same alert as an untrusted one (certificate_unknown), so the
    certificate's dates are looked at, and a missing one with bad_certificate."""
    refused = tls_refusal(exc, "")
    if refused is None:
        return None
    text = str(refused).removeprefix(": ")
    certfile = settings.get("ssl_certfile")
    # An alert by which the broker refused this client's certificate (or its absence).
    about_client = "ALERT" in (exc.reason or "") and "client certificate" in text
    if about_client and not certfile:
        # Java says bad_certificate when a listener with ssl.client.auth=required gets
        # no certificate at all.
        text = "TLS: the broker requires a client certificate (ssl_certfile, ssl_keyfile)"
    elif about_client and certfile:
        validity = certificate_validity(certfile)
        if validity is not None:
            not_before, not_after = validity
            moment = datetime.now(UTC)
            if moment > not_after:
                text = (
                    "TLS: the broker refused the client certificate (ssl_certfile): it "
                    f"expired on {not_after:%Y-%m-%d %H:%M} UTC"
                )
            elif moment < not_before:
                text = (
                    "TLS: the broker refused the client certificate (ssl_certfile): it is "
                    f"not valid before {not_before:%Y-%m-%d %H:%M} UTC"
                )
            elif getattr(exc, "reason", None) == "SSLV3_ALERT_CERTIFICATE_UNKNOWN":
                text = (
                    "TLS: the broker refused the client certificate (ssl_certfile): most "
                    "likely it is not signed by a CA the broker trusts (its ssl.truststore)"
                )
    return TlsRefused(text)


def certificate_validity(path: str) -> tuple[datetime, datetime] | None:
    """(not before, not after) of the first certificate in the PEM file ``path``, None
    when it cannot be read.  A few lines of DER instead of a dependency: Certificate ::=
    SEQUENCE { tbsCertificate SEQUENCE { [0] version, serial, signature, issuer,
    validity SEQUENCE { notBefore, notAfter }, ... }, ... }."""
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            text = f.read()
        body = text.split("-----BEGIN CERTIFICATE-----", 1)[1].split("-----END", 1)[0]
        der = base64.b64decode("".join(body.split()))
        _, start, _ = _der_item(der, 0)  # Certificate
        _, start, _ = _der_item(der, start)  # tbsCertificate
        tag, _, end = _der_item(der, start)
        if tag == 0xA0:  # [0] version
            start = end
        for _ in range(3):  # serial, signature, issuer
            start = _der_item(der, start)[2]
        _, start, _ = _der_item(der, start)  # validity
        dates = []
        for _ in range(2):
            tag, first, end = _der_item(der, start)
            dates.append(_der_time(tag, der[first:end].decode("ascii")))
            start = end
    except (OSError, IndexError, ValueError):
        return None
    return dates[0], dates[1]


def _der_item(der: bytes, at: int) -> tuple[int, int, int]:
    """(tag, start of contents, end of contents) of the DER item at ``at``."""
    tag, length, at = der[at], der[at + 1], at + 2
    if length & 0x80:
        count = length & 0x7F
        length, at = int.from_bytes(der[at : at + count], "big"), at + count
    if at + length > len(der):
        raise ValueError("truncated DER")
    return tag, at, at + length


def _der_time(tag: int, text: str) -> datetime:
    """A UTCTime (0x17, YYMMDDHHMMSSZ) or GeneralizedTime (0x18, YYYYMMDDHHMMSSZ)."""
    if tag == 0x17:
        year = int(text[:2])
        text = f"{2000 + year if year < 50 else 1900 + year}{text[2:]}"
    elif tag != 0x18:
        raise ValueError(f"not a time: tag {tag:#x}")
    return datetime.strptime(text, "%Y%m%d%H%M%SZ").replace(tzinfo=UTC)
