"""Testing tools: run an app on the in-memory binder, bind a plain handler, wait on
conditions.

>>> from binder.testing import run_app
"""

from binder.testing.collector import Collector
from binder.testing.consume import BoundConsumer, consume
from binder.testing.harness import Harness, run_app
from binder.testing.waiting import wait_until

__all__ = ["BoundConsumer", "Collector", "Harness", "consume", "run_app", "wait_until"]
