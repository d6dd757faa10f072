"""The MQTT binder's ``url`` setting: one broker or several, tried in turn (failover).

``url`` is one URL, a list of URLs, or one string holding several separated by commas,
semicolons or spaces, optionally in brackets (what an environment variable holds).  A
string is only cut before a scheme (``mqtt://``, ``mqtts://``, ``tcp://``, ``ssl://``),
so a password holding a comma cannot split a URL in two.  Every URL of one binder is
reached the same way (all TLS or none) with the same credentials.  Imports no MQTT
client; no message made here holds a URL (it may hold a password): they name the URL
by its position.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

__all__ = ["BrokerUrl", "check_urls", "parse_urls", "split_urls"]

#: Accepted schemes, and whether each means TLS.
_SCHEMES = {"mqtt": False, "tcp": False, "mqtts": True, "ssl": True}
#: Separators between URLs in one string: only where a scheme follows.
_SEPARATOR = re.compile(r"[\s,;]+(?=[A-Za-z][A-Za-z0-9+.\-]*://)")
_TRAILING = " \t\r\n,;"


@dataclass(frozen=True, slots=True)
class BrokerUrl:
    """One parsed broker URL; ``password`` is left out of ``repr``."""

    host: str
    port: int | None
    tls: bool
    username: str | None
    password: str | None = field(default=None, repr=False)


def split_urls(value: Any) -> list[str]:
    """The URLs in ``value`` (a string, or a list of strings), in order.

    Raises ``ValueError`` (never quoting the value) for anything else.
    """
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list | tuple):
        raise ValueError("must be a URL, a list of URLs or a comma-separated string of URLs")
    urls: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise ValueError("every URL must be a string")
        text = item.strip(_TRAILING)
        if text.startswith("[") and text.endswith("]"):  # a YAML list left as a string
            text = text[1:-1].strip(_TRAILING)
        urls.extend(p.strip(_TRAILING) for p in _SEPARATOR.split(text))
    urls = [url for url in urls if url]
    if not urls:
        raise ValueError("needs at least one URL")
    return urls


def _which(index: int, count: int) -> str:
    return "the URL" if count == 1 else f"URL {index + 1} (of {count})"


def _parse(url: str, index: int, count: int) -> BrokerUrl:
    which = _which(index, count)
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _SCHEMES:
        # the value may carry credentials: never echo it
        what = "must start" if count == 1 else f"{which} must start"
        raise ValueError(f"{what} with mqtt:// or mqtts://")
    if not parts.hostname:
        raise ValueError(f"{which} has no host name")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"{which} has an invalid port") from None
    return BrokerUrl(
        host=parts.hostname,
        port=port,
        tls=_SCHEMES[scheme],
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


def parse_urls(value: Any) -> list[BrokerUrl]:
    """Parse and check ``value`` (see the module); ``ValueError`` names what is wrong."""
    urls = split_urls(value)
    brokers = [_parse(url, i, len(urls)) for i, url in enumerate(urls)]
    if len({b.tls for b in brokers}) > 1:
        raise ValueError(
            "mixes TLS (mqtts://) and plain (mqtt://) URLs: every broker of one binder "
            "must be reached the same way"
        )
    credentials = {(b.username, b.password) for b in brokers if b.username or b.password}
    if len(credentials) > 1:
        raise ValueError(
            "the URLs carry different user names or passwords: a binder has one identity "
            "(write the same credentials in every URL, or leave them out of the URLs and set "
            "username and password)"
        )
    return brokers


def check_urls(value: Any) -> str | list[str]:
    """``Option.check`` of ``url``: one URL stays a string, several become a list."""
    parse_urls(value)
    urls = split_urls(value)
    return urls[0] if len(urls) == 1 and isinstance(value, str) else urls
