"""Hide secrets in configuration before it is shown, logged or put in an error message.

Two rules, applied recursively:

* the value of a key that a binder type declares secret (``BinderType.secret_keys()``)
  or whose name contains ``password``, ``passwd``, ``secret``, ``token`` or
  ``credential`` (so ``sasl_plain_password`` and ``ssl_password`` too) becomes ``"***"``,
  except that a declared-secret key holding URLs (``url``) keeps all but the password;
* the password in any URL with user info becomes ``***``
  (``amqp://user:pass@host`` -> ``amqp://user:***@host``), also inside lists of URLs
  and ``;``/``,``-separated URL lists.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = [
    "MASK",
    "SECRET_WORDS",
    "is_secret_key",
    "redact",
    "redact_url",
    "scrub",
    "secret_values",
]

MASK = "***"

#: A key whose name contains one of these words holds a secret.
SECRET_WORDS: tuple[str, ...] = ("password", "passwd", "secret", "token", "credential")

# A URL starts at ``scheme://``; a string may hold several (separated by ';', ',' or
# spaces), so it is cut before each scheme and each piece is handled on its own.  The
# user info runs to the last '@' before whitespace, which also covers passwords with
# unescaped ':', '/', ',' or ';' (over-masking a path is better than leaking).
_URL_START = re.compile(r"(?<![A-Za-z0-9+.\-])(?=[A-Za-z][A-Za-z0-9+.\-]*://)")
_USERINFO = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^\s]*)@")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://")
_AT_OR_SPACE = re.compile(r"[@\s]")


def _url_pieces(text: str) -> list[str]:
    """``text`` cut before each URL.  A piece that starts a URL and ends before any
    "@" or space (``amqp://u:`` of ``amqp://u:x=b://p@host``, a password holding
    ``b://``) is joined with the next: no part of a password is a URL of its own."""
    pieces: list[str] = []
    for piece in _URL_START.split(text):
        if pieces and _SCHEME.match(pieces[-1]) and not _AT_OR_SPACE.search(pieces[-1]):
            pieces[-1] += piece
        else:
            pieces.append(piece)
    return pieces


def _url_password(piece: str) -> str | None:
    match = _USERINFO.match(piece)
    if match is None or ":" not in match.group("userinfo"):
        return None
    return match.group("userinfo").split(":", 1)[1]


def _redact_piece(piece: str) -> str:
    match = _USERINFO.match(piece)
    if match is None or ":" not in match.group("userinfo"):
        return piece
    user = match.group("userinfo").split(":", 1)[0]
    return f"{match.group('scheme')}{user}:{MASK}@{piece[match.end() :]}"


def is_secret_key(key: object, secret_keys: Iterable[str] = ()) -> bool:
    """True when the value of ``key`` must never be shown."""
    if not isinstance(key, str):
        return False
    if key in secret_keys:
        return True
    lowered = key.lower()
    return any(word in lowered for word in SECRET_WORDS)


def redact_url(value: Any) -> Any:
    """Replace the password of every URL with user info in ``value`` by ``***``.

    ``value`` may be a string (one URL, or several separated by ``;``, ``,`` or
    whitespace), or a list/tuple of such strings; anything else is returned unchanged.
    """
    if isinstance(value, str):
        if "://" not in value:
            return value
        return "".join(_redact_piece(piece) for piece in _url_pieces(value))
    if isinstance(value, list | tuple):
        return type(value)(redact_url(item) for item in value)
    return value


def redact(value: Any, secret_keys: Iterable[str] = ()) -> Any:
    """Return a plain copy of ``value`` with every secret replaced by ``***``.

    Mappings become dicts, lists and tuples become lists; ``None`` under a secret key
    stays ``None`` (there is nothing to hide).
    """
    keys = frozenset(secret_keys)
    return _redact(value, keys)


def _redact(value: Any, keys: frozenset[str]) -> Any:
    if isinstance(value, Mapping):
        out: dict[Any, Any] = {}
        for key, item in value.items():
            if item is None or not is_secret_key(key, keys):
                out[key] = _redact(item, keys)
            elif _is_url_setting(key, item):
                out[key] = redact_url(item)
            else:
                out[key] = MASK
        return out
    if isinstance(value, list | tuple):
        return [_redact(item, keys) for item in value]
    if isinstance(value, str):
        return redact_url(value)
    return value


def _is_url_setting(key: object, value: Any) -> bool:
    """A secret only because URLs may hold a password (``url``, ``urls``): its value
    is shown with the password masked, the host and the rest being no secret."""
    if not isinstance(key, str) or any(word in key.lower() for word in SECRET_WORDS):
        return False
    items = value if isinstance(value, list | tuple) else [value]
    return bool(items) and all(isinstance(item, str) and "://" in item for item in items)


def secret_values(value: Any, secret_keys: Iterable[str] = ()) -> set[str]:
    """Every secret string found in ``value``: values of secret keys and URL passwords."""
    keys = frozenset(secret_keys)
    found: set[str] = set()

    def walk(item: Any, secret: bool) -> None:
        if isinstance(item, Mapping):
            for key, sub in item.items():
                walk(sub, secret or is_secret_key(key, keys))
        elif isinstance(item, list | tuple):
            for sub in item:
                walk(sub, secret)
        elif isinstance(item, str):
            if secret:
                found.add(item)
            if "://" in item:
                for piece in _url_pieces(item):
                    password = _url_password(piece)
                    if password:
                        found.add(password)
        elif secret and item is not None and not isinstance(item, bool):
            found.add(str(item))

    walk(value, False)
    found.discard("")
    return found


def scrub(text: str, secrets: Iterable[str], *, min_length: int = 3) -> str:
    """Replace every occurrence of each secret (at least ``min_length`` long) in ``text``.

    A last line of defence for messages built from user data; shorter secrets are
    left alone because masking them would mangle ordinary words.
    """
    text = redact_url(text)
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) >= min_length:
            text = text.replace(secret, MASK)
    return text
