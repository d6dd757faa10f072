"""Turn validated binder settings into a kombu connection factory (failover, TLS).

A connection attempt that fails raises one sentence: :class:`~binder.errors.AccessRefused`
when RabbitMQ refused the login or the virtual host (not worth retrying), else
:class:`~binders.rabbit.errors.LinkError` (unreachable: retried).
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from binder.errors import AccessRefused
from binders.rabbit.errors import LinkError, connect_failure, login_refusal
from binders.rabbit.settings import URL_ENV

__all__ = ["DEFAULT_URL", "connection_factory", "effective_urls"]

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


def _ssl_options(value: Any) -> Any:
    if not value or value is True:
        return bool(value)
    options: dict[str, Any] = {"cert_reqs": ssl.CERT_REQUIRED if value["verify"] else ssl.CERT_NONE}
    for name in ("ca_certs", "certfile", "keyfile", "server_hostname"):
        if value[name]:
            options[name] = value[name]
    return options


def connection_factory(settings: Mapping[str, Any]) -> Callable[[], Any]:
    """Return a function that opens a connected ``kombu.Connection``, trying each URL."""
    from kombu.connection import Connection

    urls = effective_urls(settings)
    ssl_option = _ssl_options(settings["ssl"])
    state = {"next": 0}

    def connect() -> Any:
        refused: list[str] = []  # sentences of login_refusal
        failed: list[str] = []  # sentences of connect_failure
        for attempt in range(len(urls)):
            index = (state["next"] + attempt) % len(urls)
            url = urls[index]
            conn = Connection(
                url,
                heartbeat=settings["heartbeat"] or 0,
                connect_timeout=settings["connect_timeout"],
                ssl=ssl_option if ssl_option else url.startswith("amqps://"),
                transport_options={"confirm_publish": False},
            )
            try:
                conn.ensure_connection(max_retries=0)
            except Exception as exc:
                info = conn.info()
                conn.release()
                refusal = login_refusal(exc, info)
                if refusal is not None:
                    refused.append(refusal)
                else:
                    failed.append(connect_failure(exc, info))
                continue
            state["next"] = index
            return conn
        if refused:
            # The broker answered and said no: other URLs failing does not change that.
            raise AccessRefused("; ".join(refused + failed))
        raise LinkError("; ".join(failed))

    return connect
