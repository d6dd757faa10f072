"""aiokafka clients from binder settings: the connection keyword arguments (bootstrap
servers, client id, TLS, SASL) shared by every client a binder creates."""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from typing import Any

from binder.errors import TlsRefused
from binder.tls import tls_refusal

__all__ = ["client_kwargs", "describe_connection"]


class _Encrypted(Exception):
    """The client key is encrypted and ssl_password is not set."""


def _no_password() -> bytes:
    # Asked for the password of an encrypted key without ssl_password: refuse (OpenSSL
    # would otherwise prompt on the terminal).
    raise _Encrypted


def _ssl_context(settings: Mapping[str, Any]) -> ssl.SSLContext:
    """The context of every TLS connection of the binder.  A CA file, certificate or
    key that cannot be used raises :class:`~binder.errors.TlsRefused` naming the
    setting to fix (never the password)."""
    where = f"Kafka at {describe_connection(settings)}"
    setting = "ssl_cafile"
    try:
        context = ssl.create_default_context(cafile=settings["ssl_cafile"])
        context.check_hostname = bool(settings["ssl_check_hostname"])
        if settings["ssl_certfile"]:
            setting = "ssl_certfile"
            context.load_cert_chain(
                settings["ssl_certfile"],
                keyfile=settings["ssl_keyfile"],
                password=settings["ssl_password"] or _no_password,
            )
    except _Encrypted:
        raise TlsRefused(
            f"{where}: TLS: the client key "
            f"({_files(settings, 'ssl_keyfile') or _files(settings, 'ssl_certfile')}) is "
            "encrypted: set ssl_password"
        ) from None
    except ssl.SSLError as exc:
        refused = tls_refusal(exc, where)
        if refused is None:
            if setting == "ssl_cafile":
                reason = "it holds no PEM certificate"
            elif settings["ssl_password"]:
                # OpenSSL says "bad decrypt", or just "PEM lib", for a wrong password.
                reason = "the key could not be read: is ssl_password the key's password?"
            else:
                reason = (
                    "found no PEM certificate and private key (the key in the same file, "
                    "or ssl_keyfile)"
                )
            refused = _unusable(where, settings, setting, reason)
        raise refused from None
    except OSError as exc:
        raise _unusable(where, settings, setting, exc.strerror or type(exc).__name__) from None
    return context


def _files(settings: Mapping[str, Any], *keys: str) -> str:
    return ", ".join(f"{key} {settings[key]!r}" for key in keys if settings[key])


def _unusable(where: str, settings: Mapping[str, Any], setting: str, reason: str) -> TlsRefused:
    if setting == "ssl_cafile":
        what = f"cannot use the CA file ({_files(settings, 'ssl_cafile')})"
    else:
        files = _files(settings, "ssl_certfile", "ssl_keyfile")
        what = f"cannot use the client certificate and key ({files})"
    return TlsRefused(f"{where}: TLS: {what}: {reason}")


def client_kwargs(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Return bootstrap, client id, TLS and SASL keyword arguments for aiokafka clients.

    ``settings`` are the binder's validated settings (every key present).
    """
    protocol = settings["security_protocol"]
    kwargs: dict[str, Any] = {
        "bootstrap_servers": settings["bootstrap_servers"],
        "client_id": settings["client_id"],
        "security_protocol": protocol,
        "request_timeout_ms": settings["request_timeout_ms"],
    }
    if protocol in ("SSL", "SASL_SSL"):
        kwargs["ssl_context"] = _ssl_context(settings)
    if protocol.startswith("SASL_"):
        kwargs["sasl_mechanism"] = settings["sasl_mechanism"]
        kwargs["sasl_plain_username"] = settings["sasl_plain_username"]
        kwargs["sasl_plain_password"] = settings["sasl_plain_password"]
    return kwargs


def describe_connection(settings: Mapping[str, Any]) -> str:
    """A log-safe description of where the binder connects (never any secret)."""
    servers = settings["bootstrap_servers"]
    if not isinstance(servers, str):
        servers = ",".join(servers)
    protocol = settings["security_protocol"]
    user = settings["sasl_plain_username"] if protocol.startswith("SASL_") else None
    who = f" as {user}" if user else ""
    return f"{servers} ({protocol}{who})"
