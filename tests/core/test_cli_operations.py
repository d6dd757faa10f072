"""``binder run --http`` and ``--log-format json``, and ``binder bindings --url``
against the running app: the command-line side of docs/operations.md."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from binder.testing import wait_until
from tests.core.cli_support import QUICKSTART, ROOT, binder, free_port


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return 0


async def test_run_serves_the_endpoint_and_bindings_url_controls_it(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    config = tmp_path / "binder.yaml"
    config.write_text("management:\n  token: tok-7f3e\n")
    proc = subprocess.Popen(
        [
            sys.executable,
            *("-m", "binder.cli", "--log-format", "json", "run", str(QUICKSTART)),
            *("--config", str(config), "--http", f"127.0.0.1:{port}"),
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        await wait_until(
            lambda: proc.poll() is not None or _status(f"{url}/health/ready") == 200,
            30,
            "the app ready",
        )
        assert proc.poll() is None, "the app exited"
        listed = binder("bindings", "--url", url)
        assert listed.returncode == 0, listed.stderr
        rows = {line.split()[0]: line.split() for line in listed.stdout.splitlines()[1:]}
        assert rows["price-in-0"] == [
            "price-in-0",
            "consumer",
            "orders",
            "pricing",
            "memory",
            "running",
        ]
        refused = binder("bindings", "--url", url, "--pause", "price-in-0")
        assert refused.returncode == 2
        assert "needs the token" in refused.stderr and "tok-7f3e" not in refused.stderr
        paused = binder(
            "bindings",
            "--url",
            url,
            "--pause",
            "price-in-0",
            env={"BINDER_MANAGEMENT_TOKEN": "tok-7f3e"},
        )
        assert (paused.returncode, paused.stdout.strip()) == (0, "price-in-0: paused")
        resumed = binder("bindings", "--url", url, "--token", "tok-7f3e", "--resume", "price-in-0")
        assert resumed.stdout.strip() == "price-in-0: running"
        unknown = binder("bindings", "--url", url, "--token", "tok-7f3e", "--stop", "nope")
        assert unknown.returncode == 2 and "answered 404: no binding 'nope'" in unknown.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    lines = [json.loads(line) for line in err.splitlines() if line.strip()]
    assert lines, "no log lines"
    assert {line["app"] for line in lines} == {"quickstart"}
    assert any("management endpoint on" in line["message"] for line in lines)
    assert "tok-7f3e" not in err


def test_bindings_url_says_when_nothing_answers() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = binder("bindings", "--url", url)
    assert result.returncode == 2
    assert result.stderr.startswith(f"binder: error: cannot reach the management endpoint at {url}")


def test_bindings_needs_a_target_or_a_url() -> None:
    result = binder("bindings")
    assert result.returncode == 2 and "TARGET (an app) or --url" in result.stderr


def test_a_bad_log_format_variable_is_one_line() -> None:
    result = binder("binders", env={"BINDER_LOG_FORMAT": "xml"})
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "binder: error: environment variable BINDER_LOG_FORMAT: expected one of text, json, "
        "got 'xml'"
    )
