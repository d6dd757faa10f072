"""What went wrong with RabbitMQ, in one sentence each.

py-amqp and kombu report problems as exceptions whose text chains a class name, an
AMQP method and a reply code (``AccessRefused: Queue.declare: (403) ACCESS_REFUSED -
access to queue 'q' in vhost '/' refused for user 'u'``).  This module turns them into
what a user can act on:

* a refused login, a missing virtual host, or a user without access to the virtual
  host: :class:`~binder.errors.AccessRefused`, naming the broker, the user and the
  virtual host (:func:`login_refusal`);
* a permission refused on an exchange or queue (``403 ACCESS_REFUSED`` on a declare,
  bind, publish or consume): :class:`~binder.errors.AccessRefused` naming the
  operation, the permission, the resource and the user (:func:`translate`);
* a TLS handshake that failed for a reason retrying cannot fix (the broker's
  certificate not trusted, expired or for another host; this client's certificate
  refused): :class:`~binder.errors.TlsRefused` naming the cause (:func:`tls_failure`);
* any other refusal (``NOT_FOUND``, ``PRECONDITION_FAILED``...) and a lost or
  unreachable connection: :class:`LinkError` with one sentence (:func:`describe`).

No text made here ever holds a password: the broker's reply texts name users, never
their passwords, and anything else goes through :func:`~binder.redaction.redact_url`.
py-amqp is imported only inside the functions, as everywhere in the binder.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from binder.errors import AccessRefused, BinderError, TlsRefused, describe_error
from binder.redaction import redact_url
from binder.tls import tls_refusal
from binders.rabbit.settings import SSL_SETTING_NAMES

__all__ = [
    "LinkError",
    "as_error",
    "connect_failure",
    "describe",
    "login_refusal",
    "tls_failure",
    "translate",
    "where",
]


class LinkError(BinderError):
    """The connection to RabbitMQ failed or is closed, or RabbitMQ refused an operation
    for a reason other than access (for that: :class:`~binder.errors.AccessRefused`)."""


#: ``NOT_FOUND - no queue 'x' in vhost '/'`` -> ``no queue 'x' in vhost '/'``.
_REPLY_PREFIX = re.compile(r"^[A-Z_]+ - ")
_RESOURCE_REFUSED = re.compile(
    r"access to (?P<kind>exchange|queue) '(?P<name>.*)' in vhost '(?P<vhost>.*)' "
    r"refused for user '(?P<user>.*)'"
)
#: Which permission each AMQP method needs on which kind of resource (RabbitMQ's
#: access control guide); a method missing here is reported without the permission.
_PERMISSIONS: dict[tuple[str, str], str] = {
    ("exchange.declare", "exchange"): "configure",
    ("exchange.delete", "exchange"): "configure",
    ("queue.declare", "queue"): "configure",
    ("queue.delete", "queue"): "configure",
    ("queue.bind", "queue"): "write",
    ("queue.bind", "exchange"): "read",
    ("queue.unbind", "queue"): "write",
    ("queue.unbind", "exchange"): "read",
    ("queue.purge", "queue"): "read",
    ("basic.publish", "exchange"): "write",
    ("basic.consume", "queue"): "read",
    ("basic.get", "queue"): "read",
}
_LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})


def _from_broker(exc: BaseException) -> bool:
    """An AMQP error RabbitMQ sent (``NOT_FOUND - ...``), not one py-amqp raised itself
    (``Too many heartbeats missed``, ``connection already closed``)."""
    from amqp.exceptions import AMQPError

    text = getattr(exc, "reply_text", None)
    return isinstance(exc, AMQPError) and isinstance(text, str) and bool(_REPLY_PREFIX.match(text))


def _reply(exc: BaseException) -> str:
    """The broker's reply text without its ``CODE - `` prefix."""
    text = str(getattr(exc, "reply_text", "") or "")
    return _REPLY_PREFIX.sub("", text).strip()


#: Queue arguments eventbinder sets, and the ``rabbit:`` option that sets each.
_ARGUMENT_OPTIONS = {
    "x-dead-letter-exchange": "auto_bind_dlq",
    "x-dead-letter-routing-key": "auto_bind_dlq",
    "x-queue-type": "queue_type",
    "x-message-ttl": "ttl",
    "x-max-length": "max_length",
}
_INEQUIVALENT = re.compile(r"inequivalent arg '(?P<arg>[^']+)' for queue '(?P<queue>[^']*)'")


def _inequivalent_hint(reply: str) -> str:
    """What to change when a queue exists with other arguments than a binding declares.

    The usual cause is another app declaring the queue first: a Spring Cloud Stream
    consumer with its default ``autoBindDlq: false`` declares group queues without a
    dead-letter exchange, eventbinder with one.
    """
    found = _INEQUIVALENT.search(reply)
    if found is None or found["arg"] not in _ARGUMENT_OPTIONS:
        return ""
    option = _ARGUMENT_OPTIONS[found["arg"]]
    if option == "queue_type" and found["queue"].endswith(".dlq"):
        return (
            "; a dead-letter queue has its group queue's type (queue_type), and this one "
            "exists with another: empty and delete it so it is declared anew (a Spring "
            "app sharing it sets dlq-quorum.enabled to match)"
        )
    if option != "auto_bind_dlq":
        return (
            f"; the queue exists with other arguments: make the binding's rabbit option "
            f"'{option}' match them, or delete the queue so it is declared anew"
        )
    if "but current is none" in reply:
        return (
            "; the queue exists without a dead-letter exchange (a Spring Cloud Stream "
            "consumer declares it so with its default autoBindDlq: false): set the "
            "binding's rabbit option auto_bind_dlq: false to share it, or set autoBindDlq: "
            "true in the Spring app and delete the queue"
        )
    return (
        "; the queue exists with a dead-letter exchange (declared by eventbinder's default "
        "or by Spring's autoBindDlq: true): set the binding's rabbit option "
        "auto_bind_dlq: true"
    )


def _method(exc: BaseException) -> str:
    """The AMQP method a refusal answers, as the spec spells it (``queue.declare``)."""
    name = getattr(exc, "method_name", None)
    return str(name).lower() if name else ""


def _first_upper(text: str) -> str:
    """``Connection refused`` -> ``connection refused`` (not ``SSL`` -> ``sSL``)."""
    if len(text) > 1 and text[0].isupper() and text[1].islower():
        return text[0].lower() + text[1:]
    return text


def where(info: Mapping[str, Any]) -> str:
    """``host:port`` of a kombu connection's ``info()`` (no user, no password)."""
    host = str(info.get("hostname") or "localhost")
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{info.get('port')}" if info.get("port") else host


def describe(exc: BaseException) -> str:
    """One sentence for an error of py-amqp, kombu or the socket, without a password.

    An AMQP refusal becomes ``RabbitMQ refused queue.declare: no queue 'x' in vhost
    '/'``, a closed connection ``RabbitMQ closed the connection: ...``, a socket error
    its reason (``connection refused``, ``timed out``); eventbinder's own errors keep
    their text and anything else is :func:`~binder.errors.describe_error`.
    """
    from amqp.exceptions import AMQPError
    from amqp.exceptions import ConnectionError as AMQPConnectionError

    if isinstance(exc, BinderError):
        return describe_error(exc)
    if isinstance(exc, AMQPError) and not _from_broker(exc):
        text = str(exc.reply_text or "") or type(exc).__name__
        return _first_upper(str(redact_url(text)))
    if isinstance(exc, AMQPError):
        if exc.reply_code == 403:
            return str(_access_refused(exc))
        method = _method(exc)
        if isinstance(exc, AMQPConnectionError) and method in ("", "connection.close"):
            return f"RabbitMQ closed the connection: {_reply(exc)}"
        if method:
            return f"RabbitMQ refused {method}: {_reply(exc)}{_inequivalent_hint(_reply(exc))}"
        return f"RabbitMQ closed the channel: {_reply(exc)}"
    cause: BaseException = exc
    # kombu wraps socket errors (OperationalError from ConnectionRefusedError...)
    for _ in range(8):
        inner = cause.__cause__ or cause.__context__
        if isinstance(cause, OSError) or inner is None:
            break
        cause = inner
    if isinstance(cause, TimeoutError):
        return "timed out"
    if isinstance(cause, OSError):
        text = cause.strerror or str(cause) or type(cause).__name__
        return _first_upper(str(redact_url(text)))
    return str(redact_url(describe_error(exc)))


def _access_refused(exc: BaseException) -> AccessRefused:
    method = _method(exc)
    reply = _reply(exc)
    match = _RESOURCE_REFUSED.fullmatch(reply)
    if match is None:
        return AccessRefused(f"RabbitMQ refused {method or 'access'}: {reply}")
    kind, name, vhost, user = match.group("kind", "name", "vhost", "user")
    permission = _PERMISSIONS.get((method, kind))
    what = f"{permission} permission" if permission else "permission"
    return AccessRefused(
        f"RabbitMQ refused {method or 'access'}: user {user!r} has no {what} on {kind} "
        f"{name!r} in virtual host {vhost!r}"
    )


def translate(exc: BaseException) -> BaseException:
    """The error a caller of the link gets for ``exc``: an AMQP refusal becomes
    :class:`~binder.errors.AccessRefused` (403) or :class:`LinkError`; anything else
    is returned unchanged."""
    from amqp.exceptions import AMQPError

    if not isinstance(exc, AMQPError):
        return exc
    if _from_broker(exc) and exc.reply_code == 403:
        return _access_refused(exc)
    return LinkError(describe(exc))


def as_error(exc: BaseException) -> BinderError:
    """``exc`` as an eventbinder error: itself when it is one, else :func:`translate`d
    or a :class:`LinkError` with :func:`describe`'s sentence."""
    if isinstance(exc, BinderError):
        return exc
    translated = translate(exc)
    if isinstance(translated, BinderError):
        return translated
    return LinkError(describe(exc))


def connect_failure(exc: BaseException, info: Mapping[str, Any]) -> str:
    """Why a connection attempt failed, when it was not a :func:`login_refusal`:
    ``RabbitMQ is unreachable at host:port (connection refused)``, or for a broker that
    answered with an error worth retrying (a virtual host that is down, a connection
    limit) ``RabbitMQ at host:port refused the connection (<its reason>)``."""
    if _from_broker(exc):
        return f"RabbitMQ at {where(info)} refused the connection ({_reply(exc)})"
    return f"RabbitMQ is unreachable at {where(info)} ({describe(exc)})"


def login_refusal(exc: BaseException, info: Mapping[str, Any]) -> str | None:
    """The sentence for a connection attempt RabbitMQ refused, ``None`` when ``exc`` is
    not a refusal (the broker is unreachable, or busy: a vhost that is down or over its
    connection limit is worth retrying).

    ``info`` is the kombu connection's ``info()``: host, port, user and virtual host.
    """
    from amqp.exceptions import AccessRefused as AMQPAccessRefused
    from amqp.exceptions import NotAllowed

    at = f"RabbitMQ at {where(info)}"
    user = str(info.get("userid") or "")
    vhost = str(info.get("virtual_host") or "/")
    if isinstance(exc, AMQPAccessRefused):
        hint = "wrong user name or password"
        if user == "guest" and str(info.get("hostname") or "localhost") not in _LOOPBACK:
            hint += "; by default RabbitMQ lets 'guest' log in only from localhost"
        return f"{at} refused the login of user {user!r} ({hint})"
    if isinstance(exc, NotAllowed):
        reply = _reply(exc)
        if re.fullmatch(r"vhost .* not found", reply):
            return f"{at} has no virtual host {vhost!r}"
        if re.fullmatch(r"access to vhost '.*' refused for user '[^']*'", reply):
            return (
                f"{at} refused user {user!r} access to virtual host {vhost!r} "
                "(the user has no permissions there)"
            )
    return None


def tls_failure(exc: BaseException, info: Mapping[str, Any]) -> TlsRefused | None:
    """The :class:`~binder.errors.TlsRefused` for a connection attempt whose TLS
    handshake failed for good (``RabbitMQ at localhost:5671: TLS: the broker's
    certificate was refused: it has expired``), naming the binder's ``ssl.*`` settings
    to check; ``None`` for any other failure."""
    return tls_refusal(exc, f"RabbitMQ at {where(info)}", settings=SSL_SETTING_NAMES)
