"""The pluggy plugin manager: binder types are found through entry points."""

from __future__ import annotations

import importlib.util
import logging
import sys
from collections.abc import Iterable, Mapping
from importlib.metadata import entry_points
from typing import Any

import pluggy

from binder import hookspecs
from binder.errors import ConfigError, MissingDependency
from binder.spi import Binder, BinderType

__all__ = [
    "ENTRY_POINT_GROUP",
    "BinderRegistry",
    "hookimpl",
    "load_registry",
    "missing_requirements",
]

ENTRY_POINT_GROUP = "binder.binders"
hookimpl = pluggy.HookimplMarker(hookspecs.PROJECT)
log = logging.getLogger(__name__)


class BinderRegistry:
    """The plugin manager plus the binder types its plugins registered."""

    def __init__(self, manager: pluggy.PluginManager) -> None:
        self.manager = manager
        self.types: dict[str, BinderType] = {}
        owners: dict[str, str] = {}
        for plugin, result in _results_with_owner(manager):
            for binder_type in result or ():
                name = binder_type.name
                owner = manager.get_name(plugin) or repr(plugin)
                if name in self.types:
                    raise ConfigError(
                        f"binder type '{name}' is registered twice: by {owners[name]} and {owner}"
                    )
                self.types[name] = binder_type
                owners[name] = owner

    @property
    def hook(self) -> Any:
        """The pluggy hook relay (``registry.hook.binder_...``)."""
        return self.manager.hook

    def create(self, name: str, type_name: str, settings: Mapping[str, Any]) -> Binder:
        """Build an unstarted binder called ``name`` of type ``type_name``.

        A missing client library is a :class:`~binder.errors.MissingDependency` saying
        what to install, not an import traceback.
        """
        binder_type = self.get(type_name)
        missing = missing_requirements(binder_type)
        if missing:
            raise MissingDependency(_missing_message(name, type_name, missing))
        try:
            return binder_type.create(name, settings)
        except ModuleNotFoundError as exc:
            module = exc.name or str(exc)
            raise MissingDependency(
                _missing_message(name, type_name, {module: module.split(".")[0]})
            ) from None

    def get(self, type_name: str) -> BinderType:
        """Return the binder type called ``type_name`` or raise a ConfigError listing all."""
        try:
            return self.types[type_name]
        except KeyError:
            installed = ", ".join(sorted(self.types)) or "none"
            raise ConfigError(
                f"unknown binder type '{type_name}'; installed binder types: {installed}"
            ) from None


def missing_requirements(binder_type: BinderType) -> dict[str, str]:
    """The client libraries ``binder_type`` needs that cannot be imported here.

    A binder type may declare ``requires``: a mapping from an importable module name
    to what to install for it (``{"kombu": "eventbinder[rabbit]"}``). Returns the
    missing ones in the same form; nothing is imported.
    """
    requires: Mapping[str, str] = getattr(binder_type, "requires", None) or {}
    return {module: hint for module, hint in requires.items() if not _importable(module)}


def _importable(module: str) -> bool:
    if module in sys.modules:
        return sys.modules[module] is not None
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a missing parent package, or a None entry
        return False


def _results_with_owner(manager: pluggy.PluginManager) -> Iterable[tuple[object, Any]]:
    for impl in manager.hook.binder_types.get_hookimpls():
        yield impl.plugin, impl.function()


def _missing_message(name: str, type_name: str, missing: Mapping[str, str]) -> str:
    modules = ", ".join(sorted(missing))
    installs = " ".join(sorted({f"'{hint}'" for hint in missing.values()}))
    verb = "is" if len(missing) == 1 else "are"
    return (
        f"binder {name!r} (type {type_name}) needs {modules}, which {verb} not installed: "
        f"pip install {installs}"
    )


def load_registry(extra_plugins: Iterable[object] = ()) -> BinderRegistry:
    """Build a registry from the ``binder.binders`` entry points plus ``extra_plugins``."""
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if manager.get_plugin(ep.name) is not None:
            continue
        try:
            plugin = ep.load()
        except Exception as exc:  # a broken third-party plugin must not hide the others
            log.warning("cannot load binder plugin %r (%s): %s", ep.name, ep.value, exc)
            continue
        manager.register(plugin, name=ep.name)
    for plugin in extra_plugins:
        manager.register(plugin)
    return BinderRegistry(manager)
