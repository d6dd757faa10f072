"""What a new user gets wrong with the ``binder`` command gets one clear answer."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from .cli_support import QUICKSTART, ROOT, binder, binder_without, free_port

CLIENTS = [
    ("rabbit", ["kombu", "amqp"], "kombu"),
    ("kafka", ["aiokafka"], "aiokafka"),
    ("mqtt", ["paho", "paho.mqtt"], "paho.mqtt"),
]


@pytest.mark.parametrize(("type_name", "blocked", "module"), CLIENTS)
def test_a_missing_client_library_is_one_line_naming_the_extra(
    tmp_path: Path, type_name: str, blocked: list[str], module: str
) -> None:
    config = tmp_path / "binder.yaml"
    config.write_text(f"binders:\n  main: {{type: {type_name}}}\n")
    result = binder_without(blocked, "run", str(QUICKSTART), "--config", str(config))
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == (
        f"binder: error: binder 'main' (type {type_name}) needs {module}, which is not "
        f"installed: pip install 'eventbinder[{type_name}]'"
    )


def test_binders_marks_types_whose_library_is_missing_and_config_warns(tmp_path: Path) -> None:
    listing = binder_without(["kombu", "amqp"], "binders")
    assert listing.returncode == 0, listing.stderr
    rows = {line.split()[0]: line for line in listing.stdout.splitlines()}
    assert "NOT USABLE: kombu missing (pip install 'eventbinder[rabbit]')" in rows["rabbit"]
    assert "NOT USABLE" not in rows["kafka"] and "NOT USABLE" not in rows["memory"]

    (tmp_path / "binder.yaml").write_text("binders:\n  bus: {type: rabbit}\n")
    config = binder_without(["kombu", "amqp"], "config", cwd=tmp_path)
    assert config.returncode == 0, config.stderr
    assert "type: rabbit" in config.stdout
    assert config.stderr.strip() == (
        "binder: warning: binder 'bus' (type rabbit) needs kombu, which is not installed: "
        "pip install 'eventbinder[rabbit]'"
    )


def test_an_app_failing_in_a_helper_module_shows_the_users_frames(tmp_path: Path) -> None:
    (tmp_path / "shop.py").write_text("from binder import App\nimport sizes\napp = App('x')\n")
    (tmp_path / "sizes.py").write_text(
        "def size(value):\n    return len(value)\n\n\nLIMIT = size(5)\n"
    )
    result = binder("run", "shop.py", cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert lines == [
        "binder: error: cannot load shop.py: TypeError: object of type 'int' has no len()",
        "  shop.py, line 2, in <module>: import sizes",
        "  sizes.py, line 5, in <module>: LIMIT = size(5)",
        "  sizes.py, line 2, in size: return len(value)",
        "  (--log-level DEBUG shows the whole traceback)",
    ]
    debug = binder("--log-level", "DEBUG", "run", "shop.py", cwd=tmp_path)
    assert debug.returncode == 2
    assert "Traceback (most recent call last):" in debug.stderr
    assert "importlib" in debug.stderr  # the framework's frames too


def test_any_exception_while_loading_is_reported_the_same_way(tmp_path: Path) -> None:
    (tmp_path / "boom.py").write_text(
        "from binder import App\n\nraise RuntimeError('no database configured')\n"
    )
    result = binder("bindings", "boom.py", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines()[:2] == [
        "binder: error: cannot load boom.py: RuntimeError: no database configured",
        "  boom.py, line 3, in <module>: raise RuntimeError('no database configured')",
    ]
    assert "Traceback" not in result.stderr


def test_a_failing_startup_hook_is_an_app_error_with_its_frames(tmp_path: Path) -> None:
    (tmp_path / "hooked.py").write_text(
        "from binder import App\napp = App('x')\n\n@app.on_startup\n"
        "def connect() -> None:\n    raise ConnectionError('database at db:5432 refused')\n"
    )
    result = binder("run", "hooked.py", cwd=tmp_path)
    assert result.returncode == 1
    assert "binder: error: ConnectionError: database at db:5432 refused" in result.stderr
    assert "  hooked.py, line 6, in connect: raise ConnectionError(" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_decorator_without_parentheses_fails_loading_with_its_line(tmp_path: Path) -> None:
    (tmp_path / "bare.py").write_text(
        "from binder import App\napp = App('x')\n\n"
        "@app.consumer\ndef handle(p: dict) -> None: ...\n"
    )
    result = binder("run", "bare.py", cwd=tmp_path)
    assert result.returncode == 2
    assert "bare.py, line 4: @app.consumer needs its input destination" in result.stderr


def test_a_bad_log_level_variable_is_one_line() -> None:
    result = binder("binders", env={"BINDER_LOG_LEVEL": "LOUD"})
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "binder: error: environment variable BINDER_LOG_LEVEL: expected one of DEBUG, INFO, "
        "WARNING, ERROR, CRITICAL, got 'LOUD'"
    )
    flag_wins = binder("--log-level", "warning", "binders", env={"BINDER_LOG_LEVEL": "LOUD"})
    assert flag_wins.returncode == 0, flag_wins.stderr


def test_version_names_eventbinder_python_and_the_client_libraries() -> None:
    result = binder("--version", env={"COLUMNS": "40"})
    assert result.returncode == 0
    assert result.stdout.startswith("eventbinder 0.1.0 (Python 3.")
    assert result.stdout.count("\n") == 1, "one line, however narrow the terminal"
    for library in ("kombu", "aiokafka", "paho-mqtt"):
        assert f"{library} " in result.stdout


def test_a_closed_stdout_ends_the_run_quietly() -> None:
    """``binder run app.py | head -3``: the demo prints a line per order and invoice."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "binder.cli", "run", str(QUICKSTART)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    lines = [proc.stdout.readline() for _ in range(3)]
    assert all(line.startswith(("order", "invoice")) for line in lines), lines
    proc.stdout.close()  # what head does after three lines
    try:
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "standard output was closed: stopping" in err
    assert "BrokenPipe" not in err and "Traceback" not in err
    assert "dead-lettered" not in err


def test_config_piped_into_a_closed_reader_exits_quietly() -> None:
    proc = subprocess.Popen(
        f"{sys.executable} -m binder.cli bindings {QUICKSTART} | head -c 1",
        shell=True,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    _, err = proc.communicate(timeout=30)
    assert "Traceback" not in err and "BrokenPipe" not in err, err


def test_duration_bounds_the_run_while_the_broker_is_unreachable(tmp_path: Path) -> None:
    config = tmp_path / "binder.yaml"
    config.write_text(
        f"binders:\n  bus:\n    type: rabbit\n    url: amqp://guest:guest@127.0.0.1:{free_port()}//\n"
    )
    started = time.monotonic()
    result = binder("run", str(QUICKSTART), "--config", str(config), "--duration", "1.5")
    took = time.monotonic() - started
    assert result.returncode == 1, result.stderr
    assert "--duration ran out before the app started" in result.stderr
    assert "waiting for broker" in result.stderr
    assert took < 20, f"--duration 1.5 took {took:.1f}s"


def test_fail_fast_reports_the_broker_without_a_stopped_line(tmp_path: Path) -> None:
    config = tmp_path / "binder.yaml"
    config.write_text(
        f"binders:\n  bus:\n    type: rabbit\n    url: amqp://guest:guest@127.0.0.1:{free_port()}//\n"
    )
    result = binder("run", str(QUICKSTART), "--config", str(config), "--fail-fast")
    assert result.returncode == 2
    assert "binder: error: binder 'bus' cannot reach its broker:" in result.stderr
    assert "stopped after" not in result.stderr
    assert "guest:guest" not in result.stderr


def test_send_on_the_memory_binder_says_nothing_about_bindings() -> None:
    result = binder("send", "orders", '{"id": 1}')
    assert result.returncode == 0, result.stderr
    assert "binding(s)" not in result.stderr
    assert "stopped after" not in result.stderr


def test_config_masks_only_the_password_of_a_url(tmp_path: Path) -> None:
    (tmp_path / "binder.yaml").write_text(
        "binders:\n  bus:\n    type: rabbit\n    url: amqp://shop:s3cret-pw@broker.example:5672/prod\n"
    )
    result = binder("config", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "url:\n    - amqp://shop:***@broker.example:5672/prod" in result.stdout
    assert "s3cret-pw" not in result.stdout


def test_config_shows_values_from_the_environment_with_their_variable(tmp_path: Path) -> None:
    (tmp_path / "binder.yaml").write_text("binders:\n  bus: {type: rabbit}\n")
    result = binder(
        "config",
        cwd=tmp_path,
        env={
            "EVENTBINDER_RABBIT_URL": "amqp://shop:env-pw@10.0.0.5:5672//",
            "EVENTBINDER_BINDINGS__DEFAULT__GROUP": "billing",
        },
    )
    assert result.returncode == 0, result.stderr
    assert "url: amqp://shop:***@10.0.0.5:5672//" in result.stdout
    assert "#   binders.bus.url: $EVENTBINDER_RABBIT_URL (the binder's default)" in result.stdout
    assert "#   bindings.default.group: $EVENTBINDER_BINDINGS__DEFAULT__GROUP" in result.stdout
    assert "env-pw" not in result.stdout


def test_a_misspelt_binding_name_is_an_error_with_a_suggestion(tmp_path: Path) -> None:
    config = tmp_path / "binder.yaml"
    config.write_text("bindings:\n  pricee-in-0:\n    group: web\n")
    result = binder("bindings", str(QUICKSTART), "--config", str(config))
    assert result.returncode == 2
    assert result.stderr.strip().startswith(
        f"binder: error: {config}, line 2, key 'bindings.pricee-in-0': binding 'pricee-in-0' "
        "is not declared by any handler of app 'quickstart' (did you mean \"price-in-0\"?)"
    )
