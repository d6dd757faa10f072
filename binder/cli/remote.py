"""``binder bindings --url URL``: a running app's bindings through its management
endpoint (stdlib HTTP; the endpoint is local or trusted, see docs/operations.md)."""

from __future__ import annotations

import argparse
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from binder.cli.parser import TOKEN_ENV
from binder.errors import BinderError

__all__ = ["remote_bindings"]

#: Seconds one request may take (a stop drains the binding first).
TIMEOUT = 60.0


def remote_bindings(args: argparse.Namespace) -> int:
    """List the bindings of the app at ``args.url``, or apply the action asked for."""
    base = args.url.rstrip("/")
    action = next((a for a in ("stop", "start", "pause", "resume") if getattr(args, a)), None)
    if action is None:
        bindings = _call(base, "/bindings", None, None)
        _table(bindings if isinstance(bindings, list) else [])
        return 0
    name = getattr(args, action)
    token = args.token or os.environ.get(TOKEN_ENV) or None
    path = f"/bindings/{urllib.parse.quote(name, safe='')}/{action}"
    answer = _call(base, path, "POST", token)
    print(f"{answer.get('name', name)}: {answer.get('state', '?')}")
    return 0


def _call(base: str, path: str, method: str | None, token: str | None) -> Any:
    request = urllib.request.Request(
        base + path, method=method or "GET", data=b"" if method else None
    )
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            return json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        raise BinderError(_refusal(exc, base)) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise BinderError(f"cannot reach the management endpoint at {base}: {reason}") from None


def _refusal(exc: urllib.error.HTTPError, base: str) -> str:
    try:
        detail = json.loads(exc.read() or b"{}").get("error", "")
    except (ValueError, AttributeError):
        detail = ""
    if exc.code == 401:
        return (
            f"the management endpoint at {base} refused the request: it needs the token "
            f"(--token or ${TOKEN_ENV})"
        )
    return f"the management endpoint at {base} answered {exc.code}: {detail or exc.reason}"


def _table(bindings: list[dict[str, Any]]) -> None:
    rows = [("BINDING", "DIRECTION", "DESTINATION", "GROUP", "BINDER", "STATE")]
    for b in bindings:
        group = b.get("group") or ("-" if b.get("direction") == "producer" else "(anonymous)")
        rows.append(
            (
                str(b.get("name")),
                str(b.get("direction")),
                str(b.get("destination")),
                str(group),
                str(b.get("binder")),
                str(b.get("state")),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
