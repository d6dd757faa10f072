"""binder.logs.RepeatFilter: a repeating failure does not flood the log."""

from __future__ import annotations

import logging

import pytest

from binder.logs import RepeatFilter


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def record(
    message: str, *args: object, level: int = logging.ERROR, name: str = "x"
) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, message, args, None)


def passed(repeat: RepeatFilter, *records: logging.LogRecord) -> list[str]:
    return [r.getMessage() for r in records if repeat.filter(r)]


def test_a_burst_passes_then_the_same_kind_is_suppressed_with_a_word() -> None:
    clock = Clock()
    repeat = RepeatFilter(burst=3, interval=10.0, clock=clock)
    shown = passed(repeat, *(record("message %s failed: %s", n, "boom") for n in range(100)))
    assert shown == [
        "message 0 failed: boom",
        "message 1 failed: boom",
        "message 2 failed: boom [more like this are suppressed for 10s]",
    ]
    clock.now = 10.0
    assert passed(repeat, record("message %s failed: %s", 100, "boom")) == [
        "message 100 failed: boom [97 more like this were suppressed]"
    ]


def test_kinds_are_counted_apart_and_low_levels_always_pass() -> None:
    repeat = RepeatFilter(burst=1, interval=10.0, clock=Clock())
    shown = passed(
        repeat,
        record("a %s", 1),
        record("a %s", 2),
        record("b %s", 1),
        record("a %s", 1, name="other"),
        record("a %s", 1, level=logging.WARNING),
        *(record("progress %s", n, level=logging.INFO) for n in range(3)),
    )
    assert [s.split(" [")[0] for s in shown] == [
        "a 1",
        "b 1",
        "a 1",
        "a 1",
        "progress 0",
        "progress 1",
        "progress 2",
    ]


def test_installed_on_a_handler_it_filters_what_the_handler_writes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = logging.getLogger("binder.test-repeat")
    caplog.handler.addFilter(RepeatFilter(burst=2, interval=60.0))
    try:
        for n in range(50):
            log.error("handler failed for message %d", n)
    finally:
        caplog.handler.filters.clear()
    assert len(caplog.records) == 2


def test_burst_and_interval_must_make_sense() -> None:
    with pytest.raises(ValueError):
        RepeatFilter(burst=0)
    with pytest.raises(ValueError):
        RepeatFilter(interval=0)
