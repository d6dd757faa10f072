"""Turn validated binder settings into a kombu connection factory (failover, TLS).

A connection attempt that fails raises one sentence: :class:`~binder.errors.TlsRefused`
when the TLS handshake failed for a reason retrying cannot fix (a certificate not
trusted, expired or for another host, a client certificate refused),
:class:`~binder.errors.AccessRefused` when RabbitMQ refused the login or the virtual
host (neither is worth retrying), else :class:`~binders.rabbit.errors.LinkError`
(unreachable: retried).

TLS (an ``amqps://`` URL, or the ``ssl`` setting) always verifies the broker's
certificate and the host name in it, unless ``ssl.verify`` is false: the name checked
is ``ssl.server_hostname``, else the host of each URL as written (kombu itself would
check ``127.0.0.1`` for ``localhost``).

With a client certificate, TLS 1.2 is the highest version offered unless
``ssl.max_version`` says otherwise: in TLS 1.3 the broker judges the client's
certificate after the client's side of the handshake is over, and its alert (expired,
unknown CA) can lose the race with the AMQP protocol header the client sends next: the
client then sees only a closed connection ("EOF occurred in violation of protocol"),
which looks like an unreachable broker and is retried. In TLS 1.2 the verdict is part
of the handshake, so a refused certificate is reported as such.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from binder.errors import AccessRefused, TlsRefused
from binders.rabbit.errors import LinkError, connect_failure, login_refusal, tls_failure
from binders.rabbit.settings import URL_ENV

__all__ = ["DEFAULT_URL", "connection_factory", "effective_urls", "ssl_options"]

DEFAULT_URL = "amqp://guest:guest@localhost:5672//"


def _with_credentials(url: str, username: str | None, password: str | None) -> str:
    if username is None and password is None:
        return url
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    old_user, _, old_password = parts.netloc.rpartition("@")[0].partition(":")
    user = quote(username, safe="") if username is not None else old_user
    secret = quote(password, safe="") if password is not None else old_password
    userinfo = f"{user}:{secret}" if secret else user
    return urlunsplit(parts._replace(netloc=f"{userinfo}@{host}"))


def effective_urls(settings: Mapping[str, Any]) -> list[str]:
    """The URLs to try in turn: ``url`` setting, else ``$EVENTBINDER_RABBIT_URL``, else local."""
    urls = settings["url"] or os.environ.get(URL_ENV) or DEFAULT_URL
    if isinstance(urls, str):
        urls = [u.strip() for u in urls.split(";") if u.strip()]
    return [_with_credentials(u, settings["username"], settings["password"]) for u in urls]


def ssl_options(value: Any, url: str) -> dict[str, Any] | None:
    """The ``ssl`` argument of kombu's ``Connection`` for ``url`` (py-amqp's
    ``SSLTransport`` options), or None for plain AMQP.

    ``value`` is the validated ``ssl`` setting (false, true or a mapping). TLS is on
    for an ``amqps://`` URL or a true or mapping setting.
    """
    if not value and not url.startswith("amqps://"):
        return None
    given: Mapping[str, Any] = value if isinstance(value, Mapping) else {}
    options: dict[str, Any] = {}
    for name in ("ca_certs", "certfile", "keyfile"):
        if given.get(name):
            options[name] = given[name]
    version = given.get("max_version") or ("TLSv1.2" if given.get("certfile") else None)
    if version:
        options["tls_maximum_version"] = ssl.TLSVersion[version.replace(".", "_")]
    if not given.get("verify", True):
        options["cert_reqs"] = ssl.CERT_NONE
        return options
    options["cert_reqs"] = ssl.CERT_REQUIRED
    # py-amqp checks the host name only when given one.
    options["server_hostname"] = (
        given.get("server_hostname") or urlsplit(url).hostname or "localhost"
    )
    return options


def connection_factory(settings: Mapping[str, Any]) -> Callable[[], Any]:
    """Return a function that opens a connected ``kombu.Connection``, trying each URL."""
    from kombu.connection import Connection

    urls = effective_urls(settings)
    state = {"next": 0}

    def connect() -> Any:
        refused: list[AccessRefused] = []  # TLS and login refusals
        failed: list[str] = []  # sentences of connect_failure
        for attempt in range(len(urls)):
            index = (state["next"] + attempt) % len(urls)
            url = urls[index]
            tls = ssl_options(settings["ssl"], url)
            conn = Connection(
                url,
                heartbeat=settings["heartbeat"] or 0,
                connect_timeout=settings["connect_timeout"],
                ssl=tls if tls is not None else False,
                transport_options={"confirm_publish": False},
            )
            # The host as written: kombu connects to 127.0.0.1 for localhost and says so.
            info = conn.info()
            try:
                conn.ensure_connection(max_retries=0)
            except Exception as exc:
                conn.release()
                tls_refused = tls_failure(exc, info)
                refusal = login_refusal(exc, info)
                if tls_refused is not None:
                    refused.append(tls_refused)
                elif refusal is not None:
                    refused.append(AccessRefused(refusal))
                else:
                    failed.append(connect_failure(exc, info))
                continue
            state["next"] = index
            return conn
        if refused:
            # The broker answered and said no (or its certificate did): other URLs
            # failing does not change that.
            text = "; ".join([str(r) for r in refused] + failed)
            if all(isinstance(r, TlsRefused) for r in refused):
                raise TlsRefused(text)
            raise AccessRefused(text)
        raise LinkError("; ".join(failed))

    return connect
