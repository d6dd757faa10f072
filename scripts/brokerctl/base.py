"""What every broker module provides: a :class:`Broker` subclass that the registry in
cli.py names (``scripts/brokers up NAME``)."""

from __future__ import annotations

import shutil
from abc import ABC, abstractmethod
from pathlib import Path
from typing import ClassVar, NoReturn

from .common import BrokerError, Settings, log_hint, say


class Broker(ABC):
    """One broker (or, later, one cluster) that ``scripts/brokers`` manages.

    ``up`` is idempotent (quick when the broker already answers) and returns once the
    broker really answers, ``down`` is fine when it is already down, ``status`` prints
    one line and says whether it is up. They raise :class:`BrokerError` on failure.
    Each runs in a thread of its own when several brokers are named, so they keep
    their state in their own folder (``self.dir``) and print whole lines only.
    """

    #: The name on the command line, also the folder in the state folder.
    name: ClassVar[str]
    #: (commands, Debian package): the package is installed when a command is missing.
    requires: ClassVar[tuple[tuple[tuple[str, ...], str], ...]] = ()

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.dir: Path = settings.state / self.name

    # ------------------------------------------------------------------ the interface
    @property
    @abstractmethod
    def ports(self) -> tuple[int, ...]:
        """Every loopback port the broker listens on."""

    @abstractmethod
    def configure(self) -> None:
        """Write the broker's folders and generated configuration files."""

    @abstractmethod
    def up(self) -> None:
        """Start the broker (installed already) unless it answers; wait until it does."""

    @abstractmethod
    def down(self) -> None:
        """Stop the broker if it runs: gracefully, then by force."""

    @abstractmethod
    def status(self) -> bool:
        """Print the one status line; True when up."""

    def missing_packages(self) -> list[str]:
        """The Debian packages to install before ``up``."""
        return [
            package
            for commands, package in self.requires
            if any(shutil.which(c) is None for c in commands)
        ]

    # ------------------------------------------------------------------ for subclasses
    @property
    def timeout(self) -> int:
        return self.settings.timeout

    def say(self, message: str) -> None:
        say(f"{self.name}: {message}")

    def fail(self, message: str, *logs: Path) -> NoReturn:
        """Show the end of ``logs``, then end this broker's run with ``message``."""
        log_hint(*logs)
        raise BrokerError(f"{self.name}: {message}")

    def status_line(self, up: bool, where: str) -> bool:
        """``NAME:  up    WHERE`` (names and states in columns); returns ``up``."""
        say(f"{self.name + ':':<7} {'up' if up else 'down':<5} {where}")
        return up
