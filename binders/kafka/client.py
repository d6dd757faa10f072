"""aiokafka clients from binder settings: the connection keyword arguments (bootstrap
servers, client id, TLS, SASL) shared by every client a binder creates."""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from typing import Any

__all__ = ["client_kwargs", "describe_connection"]


def _ssl_context(settings: Mapping[str, Any]) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=settings["ssl_cafile"])
    context.check_hostname = bool(settings["ssl_check_hostname"])
    if settings["ssl_certfile"]:
        context.load_cert_chain(
            settings["ssl_certfile"],
            keyfile=settings["ssl_keyfile"],
            password=settings["ssl_password"],
        )
    return context


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
