"""Loading the app a command names: ``module:attr`` or a ``.py`` file."""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import TypeVar

from binder.app import App
from binder.errors import BinderError

__all__ = ["AppLoadError", "TargetError", "load_app"]

T = TypeVar("T")


class TargetError(BinderError):
    """``TARGET`` does not name an importable app."""


class AppLoadError(TargetError):
    """Importing the app raised: :attr:`error` is what it raised (its traceback shows
    the user's frames)."""

    def __init__(self, message: str, error: BaseException) -> None:
        super().__init__(message)
        self.error = error


def load_app(target: str) -> App:
    """Import ``module:attr`` or a ``.py`` file and return its :class:`App`."""
    if target.endswith(".py") or os.sep in target or "/" in target:
        module = _import_file(Path(target))
        attr = None
    else:
        module_name, _, attr = target.partition(":")
        if str(Path.cwd()) not in sys.path:
            sys.path.insert(0, str(Path.cwd()))
        module = _run_import(
            f"cannot import module {module_name!r}", lambda: importlib.import_module(module_name)
        )
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


def _import_file(path: Path) -> ModuleType:
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
    loader = spec.loader
    _run_import(f"cannot load {path}", lambda: loader.exec_module(module))
    return module


def _run_import(what: str, load: Callable[[], T]) -> T:
    try:
        return load()
    except SyntaxError as exc:
        raise TargetError(f"{exc.filename}, line {exc.lineno}: {exc.msg}") from None
    except BinderError:
        raise
    except Exception as exc:
        raise AppLoadError(f"{what}: {type(exc).__name__}: {exc}", exc) from None
