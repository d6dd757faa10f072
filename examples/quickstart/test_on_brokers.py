"""The quickstart app runs on each real broker with nothing but its config file changed."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "broker",
    [pytest.param(name, marks=pytest.mark.broker(name)) for name in ("rabbit", "kafka", "mqtt")],
)
def test_quickstart_runs_with_the_config_file_only(broker: str) -> None:
    # Fresh destinations per run, through environment overrides of the file's values:
    # what an earlier run left in `orders` would otherwise be handled first and use up
    # --max-messages before any invoice is printed.
    tag = uuid.uuid4().hex[:10]
    fresh = {
        "EVENTBINDER_BINDINGS__NEW_ORDER_OUT_0__DESTINATION": f"orders-{tag}",
        "EVENTBINDER_BINDINGS__PRICE_IN_0__DESTINATION": f"orders-{tag}",
        "EVENTBINDER_BINDINGS__PRICE_OUT_0__DESTINATION": f"invoices-{tag}",
        "EVENTBINDER_BINDINGS__PRINT_INVOICE_IN_0__DESTINATION": f"invoices-{tag}",
    }
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "binder.cli",
            "run",
            "examples/quickstart/app.py",
            "--config",
            f"examples/quickstart/{broker}.yaml",
            "--max-messages",
            "20",
        ],
        cwd=ROOT,
        env={**os.environ, **fresh},
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "order 1 placed" in output
    assert output.count("invoice for order") >= 5, output
    assert "stopped after 20 message(s)" in output
    assert "Traceback" not in output
    assert "guest:guest" not in output  # a URL's password never reaches the logs
