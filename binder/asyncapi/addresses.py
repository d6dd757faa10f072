"""Broker addresses from binder settings, without their credentials.

A URL's user info is cut off before anything else is read from it, the way
:mod:`binder.redaction` finds it: everything up to the last ``@`` before the host,
so a password holding ``/``, ``:`` or ``@`` never ends up in a host, a port or a path.
Nothing here returns or logs a user name or a password.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

__all__ = ["Address", "host_port", "parse_address", "split_list", "split_urls"]

_SCHEME = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*)://")
_URL_SEPARATOR = re.compile(r"[\s,;]+(?=[A-Za-z][A-Za-z0-9+.\-]*://)")


@dataclass(frozen=True, slots=True)
class Address:
    """One broker address: scheme (lower case, ``""`` when none), host, port, path."""

    scheme: str
    host: str
    port: int | None
    path: str

    def host_port(self, default_port: int | None) -> str:
        """``host:port`` (IPv6 hosts in brackets), with ``default_port`` when unset."""
        return host_port(self.host, self.port or default_port)


def host_port(host: str, port: int | None) -> str:
    """``host:port``; an IPv6 host is written in brackets."""
    shown = f"[{host}]" if ":" in host else host
    return f"{shown}:{port}" if port else shown


def parse_address(text: str) -> Address:
    """``scheme://user:password@host:port/path`` (every part optional) without its
    user info.  A port that is not a number is dropped."""
    text = text.strip()
    match = _SCHEME.match(text)
    scheme = match.group("scheme").lower() if match else ""
    rest = text[match.end() :] if match else text
    # The user info ends at the last '@' before whitespace (binder.redaction's rule).
    at = rest.rfind("@", 0, _first_space(rest))
    if at >= 0:
        rest = rest[at + 1 :]
    parts = urlsplit(f"//{rest}")
    try:
        port = parts.port
    except ValueError:
        port = None
    return Address(scheme, parts.hostname or "", port, unquote(parts.path))


def _first_space(text: str) -> int:
    match = re.search(r"\s", text)
    return match.start() if match else len(text)


def split_list(value: object) -> list[str]:
    """The non-empty items of a list, or of a comma-separated string (Kafka's
    ``host:port,host:port``)."""
    if isinstance(value, str):
        items = value.split(",")
    elif isinstance(value, list | tuple):
        items = [item for item in value if isinstance(item, str)]
    else:
        return []
    return [item.strip() for item in items if item.strip()]


def split_urls(value: object) -> list[str]:
    """The URLs of a list, or of a string holding several separated by commas,
    semicolons or spaces: a string is cut only where a scheme follows, so a password
    holding a comma stays in its URL."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list | tuple):
        return []
    urls: list[str] = []
    for item in items:
        if isinstance(item, str):
            urls.extend(part.strip() for part in _URL_SEPARATOR.split(item.strip(" ,;[]")))
    return [url for url in urls if url]
