"""One backoff for everything that waits before trying again: retries and reconnects."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Backoff"]


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with jitter, capped.

    The wait after the n-th consecutive failure is
    ``min(initial * multiplier ** (n - 1), maximum)``, shortened by a random fraction
    of at most ``jitter`` (0.2: somewhere between 80 % and 100 % of it).  Jitter only
    ever shortens a wait, so the configured values stay upper bounds, and many clients
    failing together (a broker restart) do not all come back in the same instant.
    """

    initial: float = 1.0
    multiplier: float = 2.0
    maximum: float = 10.0
    jitter: float = 0.2

    def __post_init__(self) -> None:
        for name in ("initial", "multiplier", "maximum"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"backoff {name} must be a finite number >= 0, got {value!r}")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"backoff jitter must be between 0 and 1, got {self.jitter!r}")

    def ceiling(self, failures: int) -> float:
        """The wait after ``failures`` consecutive failures, before jitter."""
        if failures < 1:
            return 0.0
        try:
            raw = self.initial * self.multiplier ** (failures - 1)
        except OverflowError:
            raw = math.inf
        return min(raw, self.maximum)

    def delay(self, failures: int, rng: Callable[[], float] = random.random) -> float:
        """Seconds to wait after ``failures`` consecutive failures (jittered)."""
        return self.ceiling(failures) * (1.0 - self.jitter * rng())
