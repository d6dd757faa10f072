"""The ``binder`` command, run as a user runs it: a subprocess."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from .cli_support import QUICKSTART, binder


def test_run_the_demo_on_the_memory_binder_and_stop_after_n_messages() -> None:
    result = binder("run", str(QUICKSTART), "--max-messages", "20")
    assert result.returncode == 0, result.stderr
    invoices = [line for line in result.stdout.splitlines() if line.startswith("invoice for")]
    assert len(invoices) >= 10
    assert "invoice for order 1: 2 x coffee = 7.00" in result.stdout
    assert "stopped after 20 message(s)" in result.stderr


def test_run_with_duration_stops_by_itself() -> None:
    result = binder("run", str(QUICKSTART), "--duration", "0.3")
    assert result.returncode == 0, result.stderr
    assert "invoice for order 1" in result.stdout


def test_sigint_drains_and_exits_zero(tmp_path: Path) -> None:
    app = tmp_path / "slowapp.py"
    app.write_text(
        "import asyncio, pathlib\n"
        "from binder import App\n"
        "app = App('slow')\n"
        "@app.supplier('ticks', every=0.05)\n"
        "def tick() -> dict:\n"
        "    return {'t': 1}\n"
        "@app.consumer('ticks', group='g')\n"
        "async def handle(payload: dict) -> None:\n"
        "    print('handling', flush=True)\n"
        "    while not pathlib.Path('release').exists():  # the test creates it after SIGINT\n"
        "        await asyncio.sleep(0.01)\n"
        "    print('handled', flush=True)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "binder.cli", "run", str(app)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + 30
    while proc.stdout.readline().strip() != "handling":  # blocks until the handler runs
        assert time.monotonic() < deadline and proc.poll() is None, "app never handled a message"
    proc.send_signal(signal.SIGINT)
    (tmp_path / "release").touch()  # only now may the in-flight handler finish
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert out.splitlines()[0] == "handled", "the in-flight handler must finish before exit"
    assert "SIGINT received" in err
    assert "Traceback" not in err


def test_bindings_shows_resolved_destinations_groups_and_binders(tmp_path: Path) -> None:
    config = tmp_path / "binder.yaml"
    config.write_text("bindings:\n  price-in-0: {destination: web-orders}\n")
    result = binder("bindings", str(QUICKSTART), "--config", str(config))
    assert result.returncode == 0, result.stderr
    lines = {line.split()[0]: line.split() for line in result.stdout.splitlines()[1:]}
    assert lines["price-in-0"] == [
        "price-in-0",
        "consumer",
        "web-orders",
        "pricing",
        "memory",
        "(memory)",
    ]
    assert lines["price-out-0"][2] == "invoices"
    assert lines["print_invoice-in-0"][3] == "mailer"
    assert lines["new_order-out-0"][1:3] == ["producer", "orders"]


def test_config_redacts_secrets(tmp_path: Path) -> None:
    (tmp_path / "binder.yaml").write_text(
        "binders:\n  memory: {type: memory}\nbindings:\n  default: {max_attempts: 4}\n"
    )
    result = binder(
        "config",
        cwd=tmp_path,
        env={"EVENTBINDER_BINDINGS__DEFAULT__GROUP": "from-env"},
    )
    assert result.returncode == 0, result.stderr
    assert f"# source: {tmp_path / 'binder.yaml'}" in result.stdout
    assert "max_attempts: 4" in result.stdout
    assert "group: from-env" in result.stdout


def test_binders_lists_the_installed_binder_types() -> None:
    result = binder("binders")
    assert result.returncode == 0, result.stderr
    names = [line.split()[0] for line in result.stdout.splitlines()]
    assert "memory" in names


def test_a_bad_config_is_one_line_on_stderr_with_exit_2(tmp_path: Path) -> None:
    config = tmp_path / "binder.yaml"
    config.write_text("bindings:\n  price-in-0:\n    max_attemps: 3\n")
    result = binder("run", str(QUICKSTART), "--config", str(config))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert str(config) in result.stderr
    assert "line 3" in result.stderr
    assert 'did you mean "max_attempts"' in result.stderr


def test_a_bad_target_is_reported_without_traceback(tmp_path: Path) -> None:
    result = binder("run", str(tmp_path / "missing.py"))
    assert result.returncode == 2
    assert "no such file" in result.stderr
    assert "Traceback" not in result.stderr
    result = binder("run", "json:dumps")
    assert result.returncode == 2
    assert "is not a binder.App" in result.stderr


def test_module_attr_targets_load(tmp_path: Path) -> None:
    result = binder("bindings", "examples.quickstart.app:app")
    assert result.returncode == 0, result.stderr
    assert "print_invoice-in-0" in result.stdout


def test_mistakes_in_the_app_file_are_one_line_errors(tmp_path: Path) -> None:
    broken = tmp_path / "broken.py"
    broken.write_text("from binder import App\napp = App('x'\n")
    result = binder("run", str(broken))
    assert result.returncode == 2
    assert "line 2" in result.stderr and "Traceback" not in result.stderr
    typo = tmp_path / "typo.py"
    typo.write_text(
        "from binder import App\napp = App('x')\n"
        "@app.consumer('in', max_attemps=3)\ndef handle(p: dict) -> None: ...\n"
    )
    result = binder("run", str(typo))
    assert result.returncode == 2
    assert 'did you mean "max_attempts"' in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_decorator_options_fail_binder_bindings_with_the_decorator_line(
    tmp_path: Path,
) -> None:
    app = tmp_path / "orders.py"
    app.write_text(
        "from binder import App\napp = App('x')\n\n"
        "@app.consumer('orders', group='g', max_attempts='three', backoff_initial=-5)\n"
        "def bill(order: dict) -> None: ...\n"
    )
    result = binder("bindings", str(app))
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"binder: error: {app}, line 4, key 'bindings.bill-in-0.max_attempts': "
        "expected int, got str 'three'"
    )


def test_instance_index_must_be_below_instance_count(tmp_path: Path) -> None:
    config = tmp_path / "binder.yaml"
    config.write_text(
        "bindings:\n  default:\n    instance_count: 2\n"
        "  print-invoice-in-0:\n    group: g\n    instance_index: 2\n"
    )
    result = binder("bindings", str(QUICKSTART), "--config", str(config))
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"binder: error: {config}, line 6, key 'bindings.print_invoice-in-0.instance_index': "
        "must be less than instance_count (2), got 2"
    )


def test_max_messages_and_duration_must_be_positive() -> None:
    for option, value, reason in [
        ("--max-messages", "-1", "must be greater than 0, got -1"),
        ("--max-messages", "0", "must be greater than 0, got 0"),
        ("--max-messages", "many", "expected a positive integer, got 'many'"),
        ("--duration", "-1", "must be a finite number of seconds greater than 0, got -1"),
        ("--duration", "0", "must be a finite number of seconds greater than 0, got 0"),
        ("--duration", "inf", "must be a finite number of seconds greater than 0, got inf"),
        ("--duration", "nan", "must be a finite number of seconds greater than 0, got nan"),
    ]:
        result = binder("run", str(QUICKSTART), option, value)
        assert result.returncode == 2, (option, value)
        assert f"argument {option}: {reason}" in result.stderr, result.stderr
    result = binder("tail", "orders", "--max-messages", "-3")
    assert result.returncode == 2
    assert "argument --max-messages: must be greater than 0, got -3" in result.stderr
