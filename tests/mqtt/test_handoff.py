"""The consumer's intake pauses reading at capacity and resumes below the low-water mark."""

from __future__ import annotations

from binders.mqtt.handoff import Intake


def test_reading_pauses_at_capacity_and_resumes_at_the_low_water_mark() -> None:
    events: list[str] = []
    intake = Intake(8, lambda: events.append("pause"), lambda: events.append("resume"))
    for _ in range(7):
        intake.take()
    assert events == [] and not intake.paused
    intake.take()  # the eighth unfinished message
    assert events == ["pause"] and intake.paused
    intake.release()  # 7 unfinished: still above the low-water mark (6)
    assert events == ["pause"]
    intake.release()
    assert events == ["pause", "resume"] and not intake.paused
    intake.take()
    intake.take()  # back at capacity
    assert events == ["pause", "resume", "pause"]
    assert intake.count == 8


def test_capacity_one_pauses_after_every_message() -> None:
    events: list[str] = []
    intake = Intake(1, lambda: events.append("pause"), lambda: events.append("resume"))
    intake.take()
    intake.release()
    intake.take()
    assert events == ["pause", "resume", "pause"]
