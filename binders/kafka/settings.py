"""Configuration schemas of the Kafka binder: binder settings and binding options.

Pure data (no aiokafka import), so the plugin can validate configuration even where
the client library is not installed.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from binder.schema import Option, non_negative, positive
from binders.kafka.assignment import DEFAULT_STRATEGIES, parse_strategies

__all__ = [
    "BINDER_SCHEMA",
    "CONSUMER_SCHEMA",
    "PRODUCER_SCHEMA",
    "parse_reset_target",
]


def _servers(value: Any) -> str | list[str]:
    if isinstance(value, str):
        if not value.strip():
            raise ValueError("must name at least one host:port")
        return value
    servers = list(value)
    if not servers or not all(isinstance(s, str) and s for s in servers):
        raise ValueError("must be a 'host:port[,host:port]' string or a list of them")
    return servers


def _topic_config(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise ValueError("must be a mapping of topic configuration names to values")
    return {str(k): str(v).lower() if isinstance(v, bool) else str(v) for k, v in value.items()}


def parse_reset_target(value: Any) -> str | float:
    """Normalise a replay target: 'earliest', 'latest' or a POSIX timestamp (seconds).

    Accepts ISO 8601 strings (naive ones are taken as UTC), numbers and datetimes.
    """
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        return moment.timestamp()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        if value in ("earliest", "latest"):
            return value
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(
                f"must be 'earliest', 'latest' or an ISO 8601 timestamp, got {value!r}"
            ) from None
        return parse_reset_target(moment)
    raise ValueError(f"must be 'earliest', 'latest' or an ISO 8601 timestamp, got {value!r}")


def _reset(value: Any) -> str | float:
    return parse_reset_target(value)


_TOPIC_OPTIONS: dict[str, Option] = {
    "partitions": Option(
        int, None, check=positive, help="partitions for a topic this binding creates"
    ),
    "replication_factor": Option(
        int, None, check=positive, help="replication factor for a topic this binding creates"
    ),
    "config": Option(
        dict, None, check=_topic_config, help="topic configs, e.g. {cleanup.policy: compact}"
    ),
    "auto_add_partitions": Option(
        bool, None, help="grow an existing topic that has fewer partitions than asked"
    ),
}

BINDER_SCHEMA: dict[str, Option] = {
    # The core takes ``type`` out of ``binders.<name>`` before validating the rest; it
    # is accepted here only for callers handing a whole section to the binder type
    # themselves (tests/kafka/helpers.py does).
    "bootstrap_servers": Option(
        (str, list), "127.0.0.1:9092", check=_servers, help="host:port[,host:port]"
    ),
    "client_id": Option(str, "eventbinder"),
    "security_protocol": Option(
        str,
        "PLAINTEXT",
        choices=("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"),
        help="SSL: TLS (mutual TLS with ssl_certfile); SASL_SSL: TLS and a SASL login",
    ),
    "sasl_mechanism": Option(str, "PLAIN", choices=("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")),
    "sasl_plain_username": Option(str, None, help="SASL user, for every mechanism"),
    "sasl_plain_password": Option(
        str, None, secret=True, help="SASL password, for every mechanism"
    ),
    "ssl_cafile": Option(str, None, help="CA bundle to verify the brokers"),
    "ssl_certfile": Option(str, None, help="client certificate (mutual TLS)"),
    "ssl_keyfile": Option(str, None, help="client private key (mutual TLS)"),
    "ssl_password": Option(str, None, secret=True, help="password of ssl_keyfile"),
    "ssl_check_hostname": Option(
        bool, True, help="the broker's certificate must hold the name connected to"
    ),
    # producer (one producer per binder, shared by its producer bindings)
    "acks": Option((str, int), "all", choices=("all", 0, 1, -1)),
    "enable_idempotence": Option(bool, True),
    "linger_ms": Option(int, 5, check=non_negative),
    "max_batch_size": Option(int, 16384, check=positive),
    "compression_type": Option(str, None, choices=(None, "gzip", "snappy", "lz4", "zstd")),
    "spring_header_types": Option(
        bool,
        True,
        help="list text headers as Java Strings in spring_json_header_types, which "
        "Spring Cloud Stream consumers need to read eventbinder's records",
    ),
    "max_request_size": Option(
        int,
        1048576,
        check=positive,
        help="largest record in bytes (key, value, headers, batch overhead) a producer "
        "binding sends; a producer binding's max_request_size overrides it",
    ),
    "delivery_timeout_ms": Option(
        int,
        120000,
        check=positive,
        help="how long a publish waits for the broker's acknowledgement in all (Java's "
        "delivery.timeout.ms); after it the publish fails, though the broker may "
        "still write the record",
    ),
    # consumers
    "session_timeout_ms": Option(int, 10000, check=positive),
    "heartbeat_interval_ms": Option(int, 500, check=positive),
    "max_poll_interval_ms": Option(int, 300000, check=positive),
    "request_timeout_ms": Option(int, 30000, check=positive),
    "metadata_max_age_ms": Option(
        int, 30000, check=positive, help="how soon consumers see partitions added elsewhere"
    ),
    "commit_interval": Option(float, 0.5, check=positive, help="seconds between commits"),
    "max_partition_fetch_bytes": Option(
        int,
        1048576,
        check=positive,
        help="bytes a fetch asks per partition (default of the consumer bindings)",
    ),
    "fetch_max_bytes": Option(
        int,
        52428800,
        check=positive,
        help="bytes a fetch asks in all (default of the consumer bindings)",
    ),
    "partition_assignment_strategy": Option(
        (str, list),
        list(DEFAULT_STRATEGIES),
        check=parse_strategies,
        help="assignment protocols consumers offer, preferred first (Java's "
        "partition.assignment.strategy: range, roundrobin, sticky or the Java class names); "
        "every member of a group must offer one in common",
    ),
    "assignment_timeout": Option(
        float, 30.0, check=positive, help="seconds bind_consumer waits for partitions"
    ),
    # provisioning defaults
    "auto_create_topics": Option(bool, True),
    "partitions": Option(int, 1, check=positive),
    "replication_factor": Option(int, 1, check=positive),
    "auto_add_partitions": Option(bool, False),
}

CONSUMER_SCHEMA: dict[str, Option] = {
    **_TOPIC_OPTIONS,
    "start_offset": Option(
        str,
        None,
        choices=(None, "earliest", "latest"),
        help="where a group without committed offsets starts (default: earliest; "
        "anonymous consumers always start at latest)",
    ),
    "reset_offsets": Option(
        (str, int, float, datetime),
        None,
        check=_reset,
        help="replay: seek to 'earliest', 'latest' or an ISO timestamp on first assignment",
    ),
    "max_poll_records": Option(
        int, 500, check=positive, help="records per fetch at most (prefetch bounds the unsettled)"
    ),
    "redelivery_delay": Option(
        float, 0.1, check=non_negative, help="seconds before a failed record is delivered again"
    ),
    "max_partition_fetch_bytes": Option(
        int, None, check=positive, help="bytes a fetch asks per partition (default: the binder's)"
    ),
    "partition_assignment_strategy": Option(
        (str, list),
        None,
        check=parse_strategies,
        help="assignment protocols this binding's consumer offers (default: the binder's)",
    ),
    "fetch_max_bytes": Option(
        int, None, check=positive, help="bytes a fetch asks in all (default: the binder's)"
    ),
}

PRODUCER_SCHEMA: dict[str, Option] = {
    **_TOPIC_OPTIONS,
    "max_request_size": Option(
        int,
        None,
        check=positive,
        help="largest record in bytes this binding sends (default: the binder's)",
    ),
}
