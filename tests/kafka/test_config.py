"""Configuration of the Kafka binder: validation without a broker."""

from __future__ import annotations

import pytest

from binder.errors import ConfigError
from binder.plugins import load_registry
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
