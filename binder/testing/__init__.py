"""Testing tools: run an app on the in-memory binder, wait on conditions, check brokers.

>>> from binder.testing import run_app
"""

from binder.testing.harness import Harness, run_app
from binder.testing.waiting import wait_until

__all__ = ["Harness", "run_app", "wait_until"]
