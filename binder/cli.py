"""The ``binder`` command: run an app, inspect its bindings and configuration.

User mistakes (bad config, bad target, unreachable broker with ``--fail-fast``) are
reported on stderr in one line, with exit code 2 and no traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import importlib.util
import json
import logging
import math
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from binder.app import App
from binder.config import Settings, load_settings
from binder.errors import BinderError
from binder.message import Message
from binder.plugins import BinderRegistry, load_registry
from binder.resolve import resolve_bindings
from binder.runtime import Runtime

__all__ = ["TargetError", "load_app", "main"]

log = logging.getLogger("binder.cli")
USAGE_ERROR = 2
CLIENT_LOGGERS = ("aiokafka", "kafka", "kombu", "amqp", "paho")
FORCED_EXIT = 130


class TargetError(BinderError):
    """``TARGET`` does not name an importable app."""


def load_app(target: str) -> App:
    """Import ``module:attr`` or a ``.py`` file and return its :class:`App`."""
    if target.endswith(".py") or os.sep in target or "/" in target:
        module = _import_file(Path(target))
        attr = None
    else:
        module_name, _, attr = target.partition(":")
        if str(Path.cwd()) not in sys.path:
            sys.path.insert(0, str(Path.cwd()))
        try:
            module = importlib.import_module(module_name)
        except SyntaxError as exc:
            raise TargetError(f"{exc.filename}, line {exc.lineno}: {exc.msg}") from None
        except BinderError:
            raise
        except (ImportError, TypeError, ValueError, NameError) as exc:
            raise TargetError(
                f"cannot import module {module_name!r}: {type(exc).__name__}: {exc}"
            ) from None
    if attr:
        app = getattr(module, attr, None)
        if not isinstance(app, App):
            raise TargetError(f"{target!r}: {attr!r} is not a binder.App")
        return app
    apps = [value for value in vars(module).values() if isinstance(value, App)]
    if len(apps) != 1:
        found = "no App" if not apps else f"{len(apps)} App objects"
        raise TargetError(f"{target!r} defines {found}; name one as module:attr")
    return apps[0]


def _import_file(path: Path) -> Any:
    if not path.is_file():
        raise TargetError(f"no such file: {path}")
    directory = str(path.resolve().parent)
    if directory not in sys.path:
        sys.path.insert(0, directory)
    name = f"binder_app_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise TargetError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        raise TargetError(f"{exc.filename}, line {exc.lineno}: {exc.msg}") from None
    except BinderError:
        raise
    except (ImportError, TypeError, ValueError, NameError) as exc:
        raise TargetError(f"cannot load {path}: {type(exc).__name__}: {exc}") from None
    return module


def _settings(args: argparse.Namespace, registry: BinderRegistry) -> Settings:
    return load_settings(args.config, registry=registry)


# -- commands --------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    """``binder run TARGET``: run until a signal, ``--max-messages`` or ``--duration``."""
    app = load_app(args.target)
    registry = load_registry()
    runtime = Runtime(
        app,
        _settings(args, registry),
        registry,
        fail_fast=args.fail_fast,
        max_messages=args.max_messages,
    )
    return asyncio.run(_serve(runtime, args.duration))


async def _serve(runtime: Runtime, duration: float | None) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = 0

    def on_signal(signum: int) -> None:
        nonlocal signals
        signals += 1
        if signals == 1:
            log.warning(
                "%s received: finishing in-flight messages (again to force exit)",
                signal.Signals(signum).name,
            )
            stop.set()
        else:
            log.error("second signal: exiting without draining")
            os._exit(FORCED_EXIT)

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal, signum)
    starting = asyncio.create_task(runtime.start())
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not starting.done():
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await starting
            return 0
        starting.result()
        waits: set[asyncio.Future[Any]] = {stopping, asyncio.create_task(runtime.done.wait())}
        if duration is not None:
            waits.add(asyncio.create_task(asyncio.sleep(duration)))
        _, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
    finally:
        stopping.cancel()
        await runtime.stop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    return 0


def cmd_bindings(args: argparse.Namespace) -> int:
    """``binder bindings TARGET``: each binding's resolved destination, group, binder."""
    app = load_app(args.target)
    registry = load_registry()
    settings = _settings(args, registry)
    rows = [("BINDING", "DIRECTION", "DESTINATION", "GROUP", "BINDER")]
    for binding in resolve_bindings(app, settings).values():
        binder = f"{binding.binder} ({settings.binders[binding.binder].type})"
        group = binding.group or ("-" if binding.direction == "producer" else "(anonymous)")
        rows.append((binding.name, binding.direction, binding.destination, group, binder))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    """``binder config``: the effective configuration with secrets redacted."""
    settings = _settings(args, load_registry())
    print(f"# source: {settings.source}")
    print(yaml.safe_dump(settings.redacted(), sort_keys=False).rstrip())
    return 0


def cmd_binders(args: argparse.Namespace) -> int:
    """``binder binders``: installed binder types."""
    registry = load_registry()
    width = max((len(name) for name in registry.types), default=0)
    for name, binder_type in sorted(registry.types.items()):
        print(f"{name.ljust(width)}  {binder_type.description}")
    return 0


def cmd_send(args: argparse.Namespace) -> int:
    """``binder send DESTINATION PAYLOAD``: publish one message."""
    registry = load_registry()
    runtime = Runtime(App("binder-send"), _settings(args, registry), registry, fail_fast=True)
    headers = dict(_header(h) for h in args.header or ())

    async def send() -> None:
        await runtime.start()
        try:
            payload = args.payload.encode()
            content_type = args.content_type
            await runtime.send(
                args.destination,
                payload,
                headers=headers,
                key=args.key,
                content_type=content_type,
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
        app, _settings(args, registry), registry, fail_fast=True, max_messages=args.max_messages
    )
    return asyncio.run(_serve(runtime, args.duration))


# -- entry point -----------------------------------------------------------------------


def positive_int(text: str) -> int:
    """argparse type of ``--max-messages``: an integer > 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {value}")
    return value


def positive_seconds(text: str) -> float:
    """argparse type of ``--duration``: a finite number of seconds > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(
            f"must be a finite number of seconds greater than 0, got {text}"
        )
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``binder`` command."""
    parser = argparse.ArgumentParser(prog="binder", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--log-level",
        type=str.upper,
        choices=["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"],
        default=os.environ.get("BINDER_LOG_LEVEL", "INFO").upper(),
        help="default INFO (or $BINDER_LOG_LEVEL)",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def with_config(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--config", help="binder.yaml/binder.toml (default: ./binder.yaml)")
        return p

    run = with_config(sub.add_parser("run", help="run an app"))
    run.add_argument("target", help="module:attr or path/to/app.py")
    run.add_argument(
        "--max-messages", type=positive_int, metavar="N", help="stop after N handled messages"
    )
    run.add_argument(
        "--duration", type=positive_seconds, metavar="SECONDS", help="stop after SECONDS"
    )
    run.add_argument(
        "--fail-fast", action="store_true", help="exit if a broker is unreachable at start"
    )
    run.set_defaults(func=cmd_run)

    bindings = with_config(sub.add_parser("bindings", help="show an app's resolved bindings"))
    bindings.add_argument("target", help="module:attr or path/to/app.py")
    bindings.set_defaults(func=cmd_bindings)

    with_config(sub.add_parser("config", help="show the effective config, secrets redacted"))
    sub.choices["config"].set_defaults(func=cmd_config)

    sub.add_parser("binders", help="list installed binder types").set_defaults(func=cmd_binders)

    send = with_config(sub.add_parser("send", help="publish one message"))
    send.add_argument("destination")
    send.add_argument("payload", help="the payload, sent as given (UTF-8)")
    send.add_argument("--key")
    send.add_argument("--header", action="append", help="NAME=VALUE, repeatable")
    send.add_argument("--content-type", default="application/json")
    send.set_defaults(func=cmd_send)

    tail = with_config(sub.add_parser("tail", help="print messages arriving on a destination"))
    tail.add_argument("destination")
    tail.add_argument("--group", help="join a group instead of subscribing anonymously")
    tail.add_argument(
        "--max-messages", type=positive_int, metavar="N", help="stop after N messages"
    )
    tail.add_argument(
        "--duration", type=positive_seconds, metavar="SECONDS", help="stop after SECONDS"
    )
    tail.set_defaults(func=cmd_tail)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``binder`` command; return its exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if args.log_level != "DEBUG":
        # Client libraries narrate group joins and reconnects at INFO; keep their warnings.
        for name in CLIENT_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)
    try:
        return int(args.func(args))
    except BinderError as exc:
        print(f"binder: error: {exc}", file=sys.stderr)
        return USAGE_ERROR
    except KeyboardInterrupt:
        return FORCED_EXIT


if __name__ == "__main__":
    sys.exit(main())
