"""The README's first example is an app that works as shown."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

from binder import App
from binder.testing import run_app

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_app() -> App:
    code = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)[0]
    module = types.ModuleType("readme_example")
    sys.modules[module.__name__] = module  # dataclasses look their module up there
    exec(compile(code, str(README), "exec"), module.__dict__)
    app = module.__dict__["app"]
    assert isinstance(app, App)
    return app


async def test_the_readme_app_turns_supplied_orders_into_invoices() -> None:
    async with run_app(readme_app()) as harness:
        first = await harness.receive("invoices", timeout=5.0)
        second = await harness.receive("invoices", timeout=5.0)
    assert first.json() == {"order_id": 1, "total": 7.0}
    assert second.json() == {"order_id": 2, "total": 7.0}
