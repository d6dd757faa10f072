"""The quickstart app runs on Kafka with nothing but its config file changed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.broker("kafka")

ROOT = Path(__file__).resolve().parents[2]


def test_quickstart_runs_on_kafka_with_the_config_file_only() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "binder.cli",
            "run",
            "examples/quickstart/app.py",
            "--config",
            "examples/quickstart/kafka.yaml",
            "--max-messages",
            "20",
        ],
        cwd=ROOT,
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
