"""Prometheus metrics of a running app, read from the engine's counters at scrape time.

The delivery engine keeps plain integer counters per binding
(:class:`~binder.dispatch.BindingStats`) and per producer
(:class:`~binder.output.OutputPort`); this collector turns them into metric families
when ``/metrics`` is scraped, so the per-message path pays for an integer increment,
not for a metrics library. Names and labels: docs/operations.md.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from binder.dispatch.plan import DURATION_BUCKETS
from binder.spi import ReportsConnections, ReportsLag

if TYPE_CHECKING:
    from binder.bindings import BindingSettings
    from binder.runtime import Runtime

__all__ = ["LABELS", "RuntimeCollector"]

LABELS = ("app", "binding", "destination", "group", "binder")


class RuntimeCollector(Collector):
    """The metric families of one :class:`~binder.runtime.Runtime`."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def _labels(self, settings: BindingSettings) -> list[str]:
        return [
            self.runtime.app.name,
            settings.name,
            settings.destination,
            settings.group or "",
            settings.binder,
        ]

    def collect(self) -> Iterator[Metric]:
        """Called by prometheus-client for every scrape."""
        runtime = self.runtime

        def counter(name: str, text: str) -> CounterMetricFamily:
            return CounterMetricFamily(f"eventbinder_{name}", text, labels=LABELS)

        received = counter("messages_received", "Messages taken from the broker.")
        handled = counter("messages_handled", "Messages handled successfully and settled.")
        dead = counter(
            "messages_dead_lettered",
            "Messages that failed for good: stored as dead letters (or dropped, with "
            "dead_letter off).",
        )
        returned = counter(
            "messages_returned",
            "Messages handed back to the broker unhandled (it delivers them again).",
        )
        attempts_failed = counter(
            "handler_attempts_failed", "Handler attempts that raised or could not decode."
        )
        retries = counter("handler_retries", "Failed handler attempts that were tried again.")
        in_flight = GaugeMetricFamily(
            "eventbinder_messages_in_flight",
            "Messages taken and not settled yet (handling, or output unconfirmed).",
            labels=LABELS,
        )
        durations = HistogramMetricFamily(
            "eventbinder_handler_duration_seconds",
            "Time in the handler per message (its attempts added up, backoffs left out).",
            labels=LABELS,
        )
        lag = GaugeMetricFamily(
            "eventbinder_consumer_lag",
            "Records not handled yet per partition (Kafka: high watermark minus the "
            "position handled up to).",
            labels=(*LABELS, "partition"),
        )
        for consumer in runtime.consumers.values():
            labels = self._labels(consumer.settings)
            stats = consumer.stats
            counts, running = [], 0
            for bound, count in zip(DURATION_BUCKETS, stats.durations, strict=False):
                running += count
                counts.append((repr(bound), running))
            counts.append(("+Inf", running + stats.durations[-1]))
            durations.add_metric(labels, counts, stats.duration_sum)
            if isinstance(consumer.binding, ReportsLag):
                for partition, behind in sorted(consumer.binding.lag().items()):
                    lag.add_metric([*labels, str(partition)], behind)
            received.add_metric(labels, stats.received)
            handled.add_metric(labels, stats.handled - stats.dead_lettered)
            dead.add_metric(labels, stats.dead_lettered)
            returned.add_metric(labels, stats.failed)
            attempts_failed.add_metric(labels, stats.attempts_failed)
            retries.add_metric(labels, stats.retried)
            dispatcher = consumer.dispatcher
            in_flight.add_metric(labels, dispatcher.in_flight if dispatcher is not None else 0)

        published = counter("messages_published", "Messages the broker confirmed.")
        failures = counter(
            "publish_failures", "Publishes that failed (a handler's are tried again)."
        )
        # A function's outputs are counted by its input binding's engine.
        by_port: dict[int, tuple[int, int]] = {}
        for consumer in runtime.consumers.values():
            port = runtime.outputs.get(consumer.handler.name)
            if port is not None:
                ok, failed = by_port.get(id(port), (0, 0))
                stats = consumer.stats
                by_port[id(port)] = (ok + stats.published, failed + stats.publish_failures)
        for port in runtime.output_ports():
            ok, failed = by_port.get(id(port), (0, 0))
            labels = self._labels(port.settings)
            published.add_metric(labels, port.published + ok)
            failures.add_metric(labels, port.publish_failures + failed)

        yield from (received, handled, dead, returned, attempts_failed, retries, in_flight)
        yield from (durations, lag, published, failures)
        yield from self._binders()

    def _binders(self) -> Iterator[Metric]:
        from binder.management.health import UP, readiness

        up = GaugeMetricFamily(
            "eventbinder_binder_up",
            "1 while the binder is connected (every one of its connections), else 0.",
            labels=("app", "binder", "type"),
        )
        reconnects = CounterMetricFamily(
            "eventbinder_binder_reconnects",
            "Connections of the binder lost and made again.",
            labels=("app", "binder", "type"),
        )
        runtime = self.runtime
        binders = readiness(runtime)["components"]["binders"]["components"]
        for name, component in binders.items():
            labels = [runtime.app.name, name, runtime.settings.binders[name].type]
            up.add_metric(labels, 1.0 if component["status"] == UP else 0.0)
            binder = runtime.binders.get(name)
            if isinstance(binder, ReportsConnections):
                reconnects.add_metric(labels, binder.reconnects())
        yield from (up, reconnects)
