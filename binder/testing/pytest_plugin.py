"""pytest plugin (entry point ``pytest11``): broker markers and harness fixtures.

* ``@pytest.mark.broker("rabbit")``: the test needs that broker; it is skipped with a
  "start it with scripts/brokers up rabbit" reason on a laptop, and fails in CI.
* ``binder_harness``: runs the ``binder_app`` fixture (which you define) with
  :func:`binder.testing.run_app` and yields the harness; define ``binder_config`` to
  pass a config file or mapping and ``binder_run_options`` for other ``run_app``
  arguments such as ``{"suppliers": False}``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from binder.testing.brokers import require_broker

__all__ = [
    "binder_config",
    "binder_harness",
    "binder_run_options",
    "pytest_configure",
    "pytest_runtest_setup",
]


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``broker`` marker."""
    config.addinivalue_line(
        "markers", "broker(name): the test needs a running broker (rabbit, kafka or mqtt)"
    )


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Skip (laptop) or fail (CI) tests whose broker is not running."""
    for marker in item.iter_markers(name="broker"):
        for name in marker.args:
            require_broker(name)


@pytest.fixture
def binder_config() -> Any:
    """Override to give ``binder_harness`` a config file path or mapping."""
    return None


@pytest.fixture
def binder_run_options() -> dict[str, Any]:
    """Override to pass more ``run_app`` options, e.g. ``{"suppliers": False}``."""
    return {}


try:
    import pytest_asyncio
except ImportError:  # pragma: no cover - the fixture needs pytest-asyncio
    pass
else:

    @pytest_asyncio.fixture
    async def binder_harness(
        binder_app: Any, binder_config: Any, binder_run_options: dict[str, Any]
    ) -> AsyncIterator[Any]:
        """The ``binder_app`` fixture's app, run with ``run_app`` (in memory unless
        ``binder_config`` names brokers)."""
        from binder.testing.harness import run_app

        async with run_app(binder_app, binder_config, **binder_run_options) as harness:
            yield harness
