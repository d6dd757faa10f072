"""OpenTelemetry's SDK with an in-memory exporter, installed once for the process (a
tracer provider can be set only once)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

_exporter = InMemorySpanExporter()
_provider = TracerProvider()
_provider.add_span_processor(SimpleSpanProcessor(_exporter))
trace.set_tracer_provider(_provider)


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """The spans finished during the test."""
    _exporter.clear()
    yield _exporter
    _exporter.clear()


def by_name(
    finished: tuple[ReadableSpan, ...] | list[ReadableSpan],
) -> dict[str, list[ReadableSpan]]:
    """Finished spans grouped by name."""
    found: dict[str, list[ReadableSpan]] = {}
    for span in finished:
        found.setdefault(span.name, []).append(span)
    return found
