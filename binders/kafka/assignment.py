"""Partition assignment strategies, named as Kafka's Java client names them.

A consumer group agrees on one assignment protocol that every member offers; Java
clients offer ``range`` and ``cooperative-sticky`` by default.  eventbinder offers
``roundrobin`` and ``range`` by default, so a group of eventbinder members keeps
round-robin assignment and a group mixed with Java members (Spring apps included)
settles on ``range``.

Pure data (no aiokafka import): :func:`parse_strategies` validates configuration
where the client library is not installed; :func:`assignors` maps the names onto
aiokafka's assignor classes.
"""

from __future__ import annotations

from typing import Any

__all__ = ["DEFAULT_STRATEGIES", "assignors", "parse_strategies"]

DEFAULT_STRATEGIES: tuple[str, ...] = ("roundrobin", "range")

_JAVA_PACKAGE = "org.apache.kafka.clients.consumer."
_BY_NAME = {
    "range": "range",
    "roundrobin": "roundrobin",
    "sticky": "sticky",
    f"{_JAVA_PACKAGE}RangeAssignor": "range",
    f"{_JAVA_PACKAGE}RoundRobinAssignor": "roundrobin",
    f"{_JAVA_PACKAGE}StickyAssignor": "sticky",
}
_COOPERATIVE = ("cooperative-sticky", f"{_JAVA_PACKAGE}CooperativeStickyAssignor")


def parse_strategies(value: Any) -> list[str]:
    """Normalise a strategy list: a comma-separated string or a list of names.

    Accepts the protocol names (``range``, ``roundrobin``, ``sticky``) and the Java
    class names (``org.apache.kafka.clients.consumer.RangeAssignor``); returns the
    protocol names in order of preference, without repeats.  Raises ``ValueError``
    with a sentence for an unknown or unsupported name.
    """
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple):
        raise ValueError("must be a list of assignor names or a comma-separated string")
    names: list[str] = []
    for item in items:
        name = str(item).strip()
        if name in _COOPERATIVE:
            raise ValueError(
                f"'{name}' needs cooperative rebalancing, which aiokafka does not have; "
                "list 'range' (Java clients offer it by default) or 'sticky', and "
                "add 'range' to the Java members' partition.assignment.strategy if "
                "they list only cooperative-sticky"
            )
        if name not in _BY_NAME:
            known = ", ".join(sorted(n for n in _BY_NAME if "." not in n))
            raise ValueError(f"unknown assignor '{name}'; known: {known} or their Java names")
        if _BY_NAME[name] not in names:
            names.append(_BY_NAME[name])
    if not names:
        raise ValueError("must name at least one assignor")
    return names


def assignors(names: list[str]) -> tuple[type, ...]:
    """aiokafka's assignor classes for normalised strategy ``names``, in order."""
    from aiokafka.coordinator.assignors.range import RangePartitionAssignor
    from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
    from aiokafka.coordinator.assignors.sticky.sticky_assignor import (
        StickyPartitionAssignor,
    )

    classes: dict[str, type] = {
        "range": RangePartitionAssignor,
        "roundrobin": RoundRobinPartitionAssignor,
        "sticky": StickyPartitionAssignor,
    }
    return tuple(classes[name] for name in names)
