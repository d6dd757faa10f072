"""The ``binder`` command: run an app, inspect its bindings and configuration.

User mistakes (a bad config, target or option, a missing client library, a broker
refusing access, an unreachable broker with ``--fail-fast``) are reported on stderr in
one line with exit code 2. An app that raises while it loads also gets its own frames
under that line; an error from app code at run time gets exit code 1. ``--log-level
DEBUG`` shows whole tracebacks.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Sequence

from binder.cli.commands import COMMANDS
from binder.cli.failures import describe_failure
from binder.cli.parser import build_parser, log_format, log_level
from binder.cli.serve import FORCED_EXIT
from binder.cli.target import AppLoadError, TargetError, load_app
from binder.errors import BinderError, describe_error
from binder.log_format import JsonFormatter
from binder.logs import RepeatFilter

__all__ = ["TargetError", "load_app", "main"]

DESCRIPTION = "Run an event-driven app; inspect its bindings, configuration and binders."
USAGE_ERROR = 2
APP_ERROR = 1
#: Client libraries narrate group joins and reconnects at INFO; below DEBUG only their
#: warnings are shown.
CLIENT_LOGGERS = ("aiokafka", "kafka", "kombu", "amqp", "paho")


def _configure_logging(level: str, log_format: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    handler.addFilter(RepeatFilter())
    logging.basicConfig(level=level, handlers=[handler])
    if level != "DEBUG":
        for name in CLIENT_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)


def _error(message: str, details: Sequence[str] = ()) -> None:
    print(f"binder: error: {message}", file=sys.stderr)
    for line in details:
        print(line, file=sys.stderr)


def _reader_gone() -> None:
    """stdout's reader went away (``binder config | head -1``): say nothing more."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``binder`` command; return its exit code."""
    args = build_parser(COMMANDS, DESCRIPTION).parse_args(argv)
    try:
        level = log_level(args, os.environ)
        form = log_format(args, os.environ)
    except ValueError as exc:
        _error(str(exc))
        return USAGE_ERROR
    _configure_logging(level, form)
    debug = level == "DEBUG"
    try:
        return int(args.func(args))
    except AppLoadError as exc:
        _error(str(exc), describe_failure(exc.error, debug=debug))
        return USAGE_ERROR
    except BinderError as exc:
        _error(str(exc))
        return USAGE_ERROR
    except KeyboardInterrupt:
        return FORCED_EXIT
    except BrokenPipeError:
        _reader_gone()
        return 0
    except Exception as exc:
        _error(describe_error(exc), describe_failure(exc, debug=debug))
        return APP_ERROR
