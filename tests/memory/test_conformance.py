"""The in-memory binder passes the conformance suite every binder must pass."""

from __future__ import annotations

from binder.testing.conformance import BinderConformance


class TestMemoryConformance(BinderConformance):
    binder_settings = {"type": "memory"}
