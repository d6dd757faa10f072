"""The conformance suite, run on the third-party ``loopback`` binder.

Not collected by the main test run (the name does not start with ``test_``): the
loopback distribution is installed into a temporary directory only, so
``test_thirdparty_binder.py`` runs this module in a subprocess with that directory on
``PYTHONPATH``.  The binder is found through its entry point, like any binder.
"""

from __future__ import annotations

from typing import Any

from binder.message import Message
from binder.testing.conformance import BinderConformance, wait_until


class TestLoopbackConformance(BinderConformance):
    binder_settings = {"type": "loopback", "queue_size": 64}

    async def read_dead_letters(
        self, binder: Any, destination: str, group: str | None, count: int, timeout: float
    ) -> list[Message]:
        def matching() -> list[Message]:
            return [
                m for m in binder.dead_letters if m.headers["x-original-destination"] == destination
            ]

        await wait_until(lambda: len(matching()) >= count, timeout, f"{count} dead letter(s)")
        return matching()[:count]
