"""Configuration of the Kafka binder: validation without a broker."""

from __future__ import annotations

import json
import struct
from typing import Any

import pytest

from binder.app import App
from binder.config import load_settings
from binder.errors import ConfigError
from binder.plugins import load_registry
from binder.resolve import resolve_bindings
from binders.kafka.plugin import KafkaBinderType
from binders.kafka.settings import parse_reset_target


def test_the_plugin_registers_through_the_entry_point_without_importing_aiokafka() -> None:
    kind = load_registry().get("kafka")
    assert isinstance(kind, KafkaBinderType)
    assert kind.secret_keys() == {"sasl_plain_password", "ssl_password"}


def test_defaults_are_safe() -> None:
    settings = KafkaBinderType().validate_settings({})
    assert settings["acks"] == "all"
    assert settings["enable_idempotence"] is True
    assert settings["bootstrap_servers"] == "127.0.0.1:9092"


def test_unknown_keys_suggest_the_right_one() -> None:
    with pytest.raises(ConfigError, match='did you mean "bootstrap_servers"'):
        KafkaBinderType().validate_settings({"bootstrap_server": "x:9092"})
    with pytest.raises(ConfigError, match="start_offset"):
        KafkaBinderType().validate_binding_options({"start_offset": "middle"}, "consumer")


def test_a_wrong_secret_is_not_echoed() -> None:
    with pytest.raises(ConfigError) as raised:
        KafkaBinderType().validate_settings({"sasl_plain_password": 12345678})
    assert "12345678" not in str(raised.value)


def test_consumer_only_options_are_refused_on_producers() -> None:
    with pytest.raises(ConfigError, match="reset_offsets"):
        KafkaBinderType().validate_binding_options({"reset_offsets": "earliest"}, "producer")


def test_topic_config_values_become_strings() -> None:
    options = KafkaBinderType().validate_binding_options(
        {"partitions": 3, "config": {"cleanup.policy": "compact", "segment.ms": 100}},
        "producer",
    )
    assert options["config"] == {"cleanup.policy": "compact", "segment.ms": "100"}


def test_replay_targets() -> None:
    assert parse_reset_target("earliest") == "earliest"
    assert parse_reset_target("2026-01-01T00:00:00Z") == 1767225600.0
    assert parse_reset_target("2026-01-01T00:00:00") == 1767225600.0
    with pytest.raises(ValueError, match="ISO 8601"):
        parse_reset_target("yesterday")


def test_size_settings_are_positive_ints_with_kafkas_defaults() -> None:
    kind = KafkaBinderType()
    settings = kind.validate_settings({})
    assert settings["max_request_size"] == 1048576
    assert settings["max_partition_fetch_bytes"] == 1048576
    assert settings["fetch_max_bytes"] == 52428800
    for key in ("max_request_size", "max_partition_fetch_bytes", "fetch_max_bytes"):
        with pytest.raises(ConfigError, match="greater than 0") as raised:
            kind.validate_settings({key: 0})
        assert raised.value.key == key
        with pytest.raises(ConfigError, match="expected int"):
            kind.validate_settings({key: "5MB"})


def test_size_options_belong_to_their_direction() -> None:
    kind = KafkaBinderType()
    producer = kind.validate_binding_options({"max_request_size": 8388608}, "producer")
    assert producer["max_request_size"] == 8388608
    consumer = kind.validate_binding_options(
        {"max_partition_fetch_bytes": 8388608, "fetch_max_bytes": 16777216}, "consumer"
    )
    assert (consumer["max_partition_fetch_bytes"], consumer["fetch_max_bytes"]) == (
        8388608,
        16777216,
    )
    # Absent: None, so the binder's setting applies.
    assert kind.validate_binding_options({}, "producer")["max_request_size"] is None
    assert kind.validate_binding_options({}, "consumer")["fetch_max_bytes"] is None
    with pytest.raises(ConfigError, match="max_request_size"):
        kind.validate_binding_options({"max_request_size": 1}, "consumer")
    with pytest.raises(ConfigError, match="fetch_max_bytes"):
        kind.validate_binding_options({"fetch_max_bytes": 1}, "producer")
    with pytest.raises(ConfigError, match="greater than 0"):
        kind.validate_binding_options({"max_request_size": -1}, "producer")


def test_bindings_default_takes_size_options_for_either_direction() -> None:
    app = App("sizes")

    @app.function(input="in", output="out", group="g")
    def relay(payload: bytes) -> bytes:
        return payload

    settings = load_settings(
        {
            "binders": {"kafka": {"type": "kafka"}},
            "bindings": {
                "default": {
                    "kafka": {"max_request_size": 8388608, "max_partition_fetch_bytes": 8388608}
                },
                "relay-out-0": {"kafka": {"max_request_size": 4194304}},
            },
        },
        registry=load_registry(),
        discover=False,
        environ={},
    )
    bindings = resolve_bindings(app, settings)
    consumer = bindings["relay-in-0"].options_for("kafka")
    producer = bindings["relay-out-0"].options_for("kafka")
    assert consumer["max_partition_fetch_bytes"] == 8388608
    assert "max_request_size" not in consumer
    assert producer["max_request_size"] == 4194304  # the binding overrides the default


# -- Spring's dead-letter header format and assignment strategies ------------------------


def test_spring_binary_integers_decode_to_decimal_text() -> None:
    from binders.kafka.dead_letters import decode_header

    assert decode_header("x-original-partition", struct.pack(">i", 3)) == "3"
    assert decode_header("x-original-offset", struct.pack(">q", 12345678)) == "12345678"
    assert decode_header("kafka_dlt-original-timestamp", struct.pack(">q", 17)) == "17"
    # eventbinder's older decimal text, even when it is 4 or 8 bytes long, stays as it is
    assert decode_header("x-original-offset", b"12345678") == "12345678"
    assert decode_header("x-original-partition", b"1234") == "1234"
    assert decode_header("tenant", struct.pack(">i", 3)) == "\x00\x00\x00\x03"
    assert decode_header("x-original-topic", None) == ""


@pytest.mark.parametrize(
    ("written", "offered"),
    [
        (None, ["roundrobin", "range"]),
        ("range", ["range"]),
        ("range, roundrobin", ["range", "roundrobin"]),
        (
            [
                "org.apache.kafka.clients.consumer.StickyAssignor",
                "org.apache.kafka.clients.consumer.RangeAssignor",
                "range",
            ],
            ["sticky", "range"],
        ),
    ],
)
def test_assignment_strategies_take_java_names(written: Any, offered: list[str]) -> None:
    settings = {} if written is None else {"partition_assignment_strategy": written}
    assert KafkaBinderType().validate_settings(settings)["partition_assignment_strategy"] == (
        offered
    )


@pytest.mark.parametrize(
    ("written", "says"),
    [
        ("cooperative-sticky", "cooperative rebalancing"),
        ("org.apache.kafka.clients.consumer.CooperativeStickyAssignor", "aiokafka"),
        ("rangee", "unknown assignor 'rangee'"),
        ([], "at least one"),
    ],
)
def test_unsupported_assignment_strategies_are_config_errors(written: Any, says: str) -> None:
    with pytest.raises(ConfigError, match="partition_assignment_strategy") as caught:
        KafkaBinderType().validate_settings({"partition_assignment_strategy": written})
    assert says in str(caught.value)


def test_text_headers_are_listed_as_java_strings_for_spring() -> None:
    from binder.message import Message
    from binders.kafka.mapping import to_record

    message = Message(b"{}", {"tenant": "acme"}, content_type="application/json")
    headers = dict(to_record(message, {"x-original-partition": b"\x00\x00\x00\x01"}).headers)
    assert json.loads(headers["spring_json_header_types"]) == {
        "tenant": "java.lang.String",
        "contentType": "java.lang.String",
    }
    assert headers["contentType"] == b"application/json"  # raw, not JSON-quoted
    plain = dict(to_record(message, spring_header_types=False).headers)
    assert "spring_json_header_types" not in plain
    bare = dict(to_record(Message(b"x")).headers)
    assert set(bare) == {"messageId"}


def test_spring_header_types_are_not_passed_on_as_a_header() -> None:
    from types import SimpleNamespace

    from binders.kafka.mapping import from_record

    record = SimpleNamespace(
        topic="t",
        partition=0,
        offset=3,
        key=None,
        value=b"{}",
        timestamp=1,
        headers=[
            ("contentType", b'"application/json"'),
            ("tenant", b"acme"),
            ("spring_json_header_types", b'{"contentType":"java.lang.String"}'),
        ],
    )
    message = from_record(record)
    assert message.headers == {"tenant": "acme"}
    assert message.content_type == "application/json"
