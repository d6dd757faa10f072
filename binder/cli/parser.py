"""The argument parser of the ``binder`` command, and its checks of numbers and levels."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Mapping

from binder.cli.version import version_text

__all__ = [
    "LOG_FORMATS",
    "LOG_FORMAT_ENV",
    "LOG_LEVELS",
    "LOG_LEVEL_ENV",
    "TOKEN_ENV",
    "build_parser",
    "log_format",
    "log_level",
    "positive_int",
    "positive_seconds",
]

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMATS = ("text", "json")
#: The environment variable giving the log format when ``--log-format`` is not.
LOG_FORMAT_ENV = "BINDER_LOG_FORMAT"
#: The environment variable giving ``binder bindings --token``.
TOKEN_ENV = "BINDER_MANAGEMENT_TOKEN"
#: The environment variable giving the log level when ``--log-level`` is not.
LOG_LEVEL_ENV = "BINDER_LOG_LEVEL"

Command = Callable[[argparse.Namespace], int]


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


def log_level(args: argparse.Namespace, environ: Mapping[str, str]) -> str:
    """``--log-level``, else ``$BINDER_LOG_LEVEL``, else INFO; a bad variable is a
    ValueError naming it."""
    if args.log_level:
        return str(args.log_level)
    value = environ.get(LOG_LEVEL_ENV, "").strip()
    if not value:
        return "INFO"
    if value.upper() not in LOG_LEVELS:
        raise ValueError(
            f"environment variable {LOG_LEVEL_ENV}: expected one of "
            f"{', '.join(LOG_LEVELS)}, got {value!r}"
        )
    return value.upper()


def log_format(args: argparse.Namespace, environ: Mapping[str, str]) -> str:
    """``--log-format``, else ``$BINDER_LOG_FORMAT``, else text; a bad variable is a
    ValueError naming it."""
    if args.log_format:
        return str(args.log_format)
    value = environ.get(LOG_FORMAT_ENV, "").strip().lower()
    if not value:
        return "text"
    if value not in LOG_FORMATS:
        raise ValueError(
            f"environment variable {LOG_FORMAT_ENV}: expected one of "
            f"{', '.join(LOG_FORMATS)}, got {value!r}"
        )
    return value


class _Version(argparse.Action):
    """``--version`` on one line (argparse's own action wraps it to the terminal)."""

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        print(version_text())
        parser.exit()


def build_parser(commands: Mapping[str, Command], description: str) -> argparse.ArgumentParser:
    """The parser; ``commands`` maps each command name to the function running it."""
    parser = argparse.ArgumentParser(prog="binder", description=description)
    parser.add_argument("--version", action=_Version, nargs=0, help="show the versions and exit")
    parser.add_argument(
        "--log-level",
        type=str.upper,
        choices=LOG_LEVELS,
        help=f"default ${LOG_LEVEL_ENV}, else INFO",
    )
    parser.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        help=f"text, or json (one object per line); default ${LOG_FORMAT_ENV}, else text",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help: str, config: bool = True) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help)
        if config:
            p.add_argument("--config", help="binder.yaml/binder.toml (default: ./binder.yaml)")
        p.set_defaults(func=commands[name])
        return p

    def stop_options(p: argparse.ArgumentParser, what: str) -> None:
        p.add_argument(
            "--max-messages", type=positive_int, metavar="N", help=f"stop after N {what}"
        )
        p.add_argument(
            "--duration",
            type=positive_seconds,
            metavar="SECONDS",
            help="stop after SECONDS (waiting for a broker included)",
        )

    run = command("run", "run an app")
    run.add_argument("target", help="module:attr or path/to/app.py")
    stop_options(run, "handled messages")
    run.add_argument(
        "--fail-fast", action="store_true", help="exit if a broker is unreachable at start"
    )
    run.add_argument(
        "--http",
        metavar="HOST:PORT",
        help="serve health, bindings and metrics there (default: management.http)",
    )

    bindings = command(
        "bindings", "show an app's resolved bindings, or a running app's (--url) and control them"
    )
    bindings.add_argument("target", nargs="?", help="module:attr or path/to/app.py")
    bindings.add_argument(
        "--url", help="a running app's management endpoint, e.g. http://127.0.0.1:8080"
    )
    bindings.add_argument(
        "--token", help=f"bearer token of the control routes (default ${TOKEN_ENV})"
    )
    actions = bindings.add_mutually_exclusive_group()
    for action in ("stop", "start", "pause", "resume"):
        actions.add_argument(
            f"--{action}", metavar="BINDING", help=f"{action} BINDING of the app at --url"
        )

    asyncapi = command("asyncapi", "write an app's AsyncAPI 3.0 document")
    asyncapi.add_argument("target", help="module:attr or path/to/app.py")
    asyncapi.add_argument(
        "--format", choices=("yaml", "json"), default="yaml", help="default: yaml"
    )
    asyncapi.add_argument("--output", metavar="FILE", help="write to FILE instead of stdout")
    asyncapi.add_argument(
        "--app-version", metavar="VERSION", help="the document's info.version (default 0.0.0)"
    )

    command("config", "show the effective config, secrets redacted")
    command("binders", "list installed binder types", config=False)

    send = command("send", "publish one message")
    send.add_argument("destination")
    send.add_argument("payload", help="the payload, sent as given (UTF-8)")
    send.add_argument("--key")
    send.add_argument("--header", action="append", help="NAME=VALUE, repeatable")
    send.add_argument("--content-type", default="application/json")
    send.add_argument(
        "--required-group",
        action="append",
        metavar="GROUP",
        help="create GROUP's storage first so the message waits for it (repeatable)",
    )

    tail = command("tail", "print messages arriving on a destination")
    tail.add_argument("destination")
    tail.add_argument("--group", help="join a group instead of subscribing anonymously")
    stop_options(tail, "messages")
    return parser
