"""Kafka failures worded for users: one line each, no chain of exception type names,
never a secret.

aiokafka's broker errors print as ``[Error 10] MessageSizeTooLargeError``, and a client
that cannot log in only says ``Unable to bootstrap from [...]`` (the reason goes to
aiokafka's log).  The binder words them here: :func:`kafka_reason` for any aiokafka
error, :func:`refusal` for errors that mean the broker refused the client (raised as
:class:`~binder.errors.AccessRefused`, which the runtime does not retry), and
:func:`diagnose_connection`, which finds out why a client could not start by
connecting to each bootstrap server once.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
from collections.abc import Iterator, Mapping
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

from binder.errors import AccessRefused, BinderError, PermanentError, describe_error
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
    """``text`` with the binder's secrets replaced by ``***``."""
    for key in ("sasl_plain_password", "ssl_password"):
        secret = settings.get(key)
        if secret:
            text = text.replace(secret, "***")
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

    aiokafka reports a refused login only as ``Unable to bootstrap``; connecting once
    to each bootstrap server (at the same time) with the same settings tells what
    happened.  Returns an :class:`AccessRefused` when a broker refused the login or the
    SASL mechanism, else a :class:`BinderError` naming each server's problem (or
    ``failure`` when every server answers now).  The text never holds a secret.
    """
    where = f"Kafka at {describe_connection(settings)}"
    direct = refusal(failure, where)
    if direct is not None:
        return AccessRefused(redact(str(direct), settings))
    problems: list[str] = []
    servers = _servers(settings["bootstrap_servers"])
    found = await asyncio.gather(
        *(_probe(host, port, settings, client_kwargs) for host, port in servers)
    )
    for (host, port), problem in zip(servers, found, strict=True):
        if isinstance(problem, AccessRefused):
            return AccessRefused(redact(f"{where}: {problem}", settings))
        if problem is not None:
            problems.append(f"{host}:{port}: {problem}" if len(servers) > 1 else problem)
    reason = "; ".join(problems) if problems else kafka_reason(failure)
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
    """Connect, log in and ask for metadata once: None when it works, else why not."""
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
    try:
        async with asyncio.timeout(timeout):
            conn = await create_conn(host, port, request_timeout_ms=int(timeout * 1000), **kwargs)
            await conn.send(MetadataRequest([]))
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
    except ssl.SSLError as exc:
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
    return None
