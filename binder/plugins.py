"""The pluggy plugin manager: binder types are found through entry points."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from importlib.metadata import entry_points
from typing import Any

import pluggy

from binder import hookspecs
from binder.errors import ConfigError
from binder.spi import BinderType

__all__ = ["ENTRY_POINT_GROUP", "BinderRegistry", "hookimpl", "load_registry"]

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

    def get(self, type_name: str) -> BinderType:
        """Return the binder type called ``type_name`` or raise a ConfigError listing all."""
        try:
            return self.types[type_name]
        except KeyError:
            installed = ", ".join(sorted(self.types)) or "none"
            raise ConfigError(
                f"unknown binder type '{type_name}'; installed binder types: {installed}"
            ) from None


def _results_with_owner(manager: pluggy.PluginManager) -> Iterable[tuple[object, Any]]:
    for impl in manager.hook.binder_types.get_hookimpls():
        yield impl.plugin, impl.function()


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
