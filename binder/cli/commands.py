"""The commands of ``binder``: run, bindings, asyncapi, config, binders, send, tail."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from binder.app import App
from binder.asyncapi import DEFAULT_APP_VERSION, asyncapi_document
from binder.cli.remote import remote_bindings
from binder.cli.serve import serve
from binder.cli.target import TargetError, load_app
from binder.config import Settings, load_settings
from binder.errors import BinderError
from binder.log_format import name_json_logs
from binder.message import Message
from binder.plugins import BinderRegistry, load_registry, missing_requirements
from binder.redaction import redact_url
from binder.resolve import resolve_bindings
from binder.running import AppRun
from binder.runtime import Runtime

__all__ = ["COMMANDS"]


def _settings(args: argparse.Namespace, registry: BinderRegistry) -> Settings:
    return load_settings(args.config, registry=registry)


def _warn(message: str) -> None:
    print(f"binder: warning: {message}", file=sys.stderr)


def cmd_run(args: argparse.Namespace) -> int:
    """``binder run TARGET``: run until a signal, ``--max-messages`` or ``--duration``."""
    app = load_app(args.target)
    run = app.run(
        args.config,
        fail_fast=args.fail_fast,
        max_messages=args.max_messages,
        http=args.http,
    )
    name_json_logs(app.name)
    assert isinstance(run, AppRun)
    return asyncio.run(serve(run, args.duration))


def cmd_bindings(args: argparse.Namespace) -> int:
    """``binder bindings TARGET``: each binding's resolved destination, group, binder;
    ``binder bindings --url URL [--stop|--start|--pause|--resume NAME]``: a running
    app's bindings and their state, through its management endpoint."""
    if args.url:
        return remote_bindings(args)
    if not args.target:
        raise TargetError("binder bindings needs a TARGET (an app) or --url (a running app)")
    app = load_app(args.target)
    registry = load_registry()
    settings = _settings(args, registry)
    rows = [("BINDING", "DIRECTION", "DESTINATION", "GROUP", "BINDER")]
    for binding in resolve_bindings(app, settings).values():
        binder = f"{binding.binder} ({settings.binders[binding.binder].type})"
        group = binding.group or ("-" if binding.direction == "producer" else "(anonymous)")
        rows.append((binding.name, binding.direction, binding.destination, group, binder))
    _print_table(rows)
    return 0


def _print_table(rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        print("  ".join(cells).rstrip())


def cmd_asyncapi(args: argparse.Namespace) -> int:
    """``binder asyncapi TARGET``: the app's AsyncAPI 3.0 document, YAML or JSON, on
    stdout or in ``--output FILE``; no broker is contacted."""
    app = load_app(args.target)
    registry = load_registry()
    document = asyncapi_document(
        app,
        _settings(args, registry),
        app_version=args.app_version or DEFAULT_APP_VERSION,
        registry=registry,
    )
    if args.format == "json":
        text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    else:
        text = yaml.safe_dump(document, sort_keys=False, allow_unicode=True)
    if args.output is None:
        sys.stdout.write(text)
        return 0
    try:
        Path(args.output).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise BinderError(f"cannot write {args.output}: {exc.strerror or exc}") from None
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    """``binder config``: the effective configuration with secrets redacted, saying
    which values came from the environment."""
    registry = load_registry()
    settings = _settings(args, registry)
    shown = settings.redacted()
    notes = [f"{key}: ${var}" for key, var in sorted(settings.environment_overrides().items())]
    for name, binder in settings.binders.items():
        binder_type = registry.get(binder.type)
        missing = missing_requirements(binder_type)
        if missing:
            installs = " ".join(sorted({f"'{hint}'" for hint in missing.values()}))
            _warn(
                f"binder {name!r} (type {binder.type}) needs {', '.join(sorted(missing))}, "
                f"which is not installed: pip install {installs}"
            )
        notes += _environment_defaults(name, binder_type, shown["binders"][name], os.environ)
    print(f"# source: {settings.source}")
    if notes:
        print("# from the environment:")
        print("\n".join(f"#   {note}" for note in notes))
    print(yaml.safe_dump(shown, sort_keys=False).rstrip())
    return 0


def _environment_defaults(
    name: str, binder_type: object, shown: dict[str, Any], environ: Mapping[str, str]
) -> list[str]:
    """Fill in (redacted) the unset settings a binder type reads from the environment."""
    notes = []
    defaults: Mapping[str, str] = getattr(binder_type, "environment_defaults", None) or {}
    for key, var in defaults.items():
        if shown.get(key) is None and environ.get(var):
            shown[key] = redact_url(environ[var])
            notes.append(f"binders.{name}.{key}: ${var} (the binder's default)")
    return notes


def cmd_binders(args: argparse.Namespace) -> int:
    """``binder binders``: installed binder types, marking those missing a library."""
    registry = load_registry()
    rows = []
    for name, binder_type in sorted(registry.types.items()):
        missing = missing_requirements(binder_type)
        if missing:
            installs = " ".join(sorted({f"'{hint}'" for hint in missing.values()}))
            state = f"NOT USABLE: {', '.join(sorted(missing))} missing (pip install {installs})"
        else:
            state = binder_type.description
        rows.append((name, state))
    width = max((len(name) for name, _ in rows), default=0)
    for name, state in rows:
        print(f"{name.ljust(width)}  {state}")
    return 0


def cmd_send(args: argparse.Namespace) -> int:
    """``binder send DESTINATION PAYLOAD``: publish one message."""
    registry = load_registry()
    settings = _settings(args, registry)
    if args.required_group:
        settings = settings.with_binding_option(
            args.destination, "required_groups", list(args.required_group)
        )
    runtime = Runtime(App("binder-send"), settings, registry, fail_fast=True, strict_bindings=False)
    headers = dict(_header(h) for h in args.header or ())

    async def send() -> None:
        await runtime.start()
        try:
            await runtime.send(
                args.destination,
                args.payload.encode(),
                headers=headers,
                key=args.key,
                content_type=args.content_type,
            )
        finally:
            await runtime.stop()

    asyncio.run(send())
    return 0


def _header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise TargetError(f"--header wants NAME=VALUE, got {text!r}")
    return name, value


def cmd_tail(args: argparse.Namespace) -> int:
    """``binder tail DESTINATION``: print messages as they arrive (anonymous subscriber)."""
    registry = load_registry()
    app = App("binder-tail")

    @app.consumer(args.destination, group=args.group, max_attempts=1, dead_letter=False)
    def tail(message: Message) -> None:
        record = {
            "destination": message.destination,
            "key": message.key,
            "content_type": message.content_type,
            "headers": message.headers,
            "payload": message.payload.decode("utf-8", "replace"),
        }
        print(json.dumps(record), flush=True)

    runtime = Runtime(
        app,
        _settings(args, registry),
        registry,
        fail_fast=True,
        max_messages=args.max_messages,
        strict_bindings=False,
    )
    return asyncio.run(serve(AppRun.of(runtime, http=""), args.duration))


COMMANDS = {
    "run": cmd_run,
    "bindings": cmd_bindings,
    "asyncapi": cmd_asyncapi,
    "config": cmd_config,
    "binders": cmd_binders,
    "send": cmd_send,
    "tail": cmd_tail,
}
