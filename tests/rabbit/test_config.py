"""Validation of the rabbit binder's settings and binding options (no broker needed)."""

from __future__ import annotations

import pytest

from binder.errors import ConfigError
from binder.plugins import load_registry
from binders.rabbit.client import effective_urls
from binders.rabbit.topology import (
    BindDecl,
    QueueDecl,
    consumer_topology,
    dead_letter_target,
    group_queue_topology,
)


def _type():  # type: ignore[no-untyped-def]
    return load_registry().get("rabbit")


def test_plugin_is_registered_without_importing_kombu() -> None:
    import subprocess
    import sys

    code = (
        "import sys; from binder.plugins import load_registry; "
        "load_registry().get('rabbit'); print('kombu' in sys.modules, 'amqp' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False"


def test_settings_defaults_and_secret_keys() -> None:
    binder_type = _type()
    settings = binder_type.validate_settings({"url": "amqp://u:p@h:5672//"})
    assert settings["heartbeat"] == 30.0
    assert settings["url"] == ["amqp://u:p@h:5672//"]
    assert {"url", "password"} <= binder_type.secret_keys()


def test_bad_url_error_does_not_echo_the_url() -> None:
    with pytest.raises(ConfigError) as caught:
        _type().validate_settings({"url": "http://user:s3cret-pw@host/"})
    assert "s3cret-pw" not in str(caught.value)
    assert caught.value.key == "url"


def test_username_and_password_settings_override_the_url() -> None:
    urls = effective_urls(
        {"url": ["amqp://a:b@h1//", "amqp://h2:5672//"], "username": "eb", "password": "p@ss:/"}
    )
    assert urls == ["amqp://eb:p%40ss%3A%2F@h1//", "amqp://eb:p%40ss%3A%2F@h2:5672//"]


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"exchange_type": "x-delayed"}, "exchange_type"),
        ({"binding_arguments": {"x-match": "all"}}, "binding_arguments"),
        ({"queue_type": "stream"}, "queue_type"),
        ({"ttl": -1}, "ttl"),
        ({"default_exchange": True, "exchange_type": "fanout"}, "exchange_type"),
        ({"exchange_typ": "topic"}, "exchange_typ"),
    ],
)
def test_invalid_consumer_options_name_the_key(options: dict, key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _type().validate_binding_options(options, "consumer")
    assert caught.value.key == key


def test_the_old_rabbit_prefetch_option_is_gone() -> None:
    """The core binding key ``prefetch`` is the basic.qos now: one knob, not two."""
    with pytest.raises(ConfigError, match="unknown key 'prefetch'") as caught:
        _type().validate_binding_options({"prefetch": 16}, "consumer")
    assert caught.value.key == "prefetch"


def test_dead_letter_targets_keep_springs_layout() -> None:
    assert dead_letter_target("orders", "billing") == ("orders.billing.dlq", "orders.billing")
    assert dead_letter_target("orders", "billing", "orders.billing.dlq") == (
        "orders.billing.dlq",
        "orders.billing",
    )
    assert dead_letter_target("orders", None) == ("orders.anonymous.dlq", "orders.anonymous")
    assert dead_letter_target("orders", "billing", "parking") == ("parking", "parking")


def test_a_consumer_without_dead_letters_declares_no_dlq_of_its_own() -> None:
    options = _type().validate_binding_options({"auto_bind_dlq": True}, "consumer")
    parking = consumer_topology("orders", "billing", options, dead_letter="parking")
    assert QueueDecl("parking") in parking.decls
    off = consumer_topology("orders", "billing", options, dead_letter=None)
    assert QueueDecl("parking") not in off.decls
    # the group queue's own broker-side dead letters still have their DLQ
    assert QueueDecl("orders.billing.dlq") in off.decls


def test_without_auto_bind_dlq_the_group_queue_has_no_dead_letter_arguments_but_a_dlq() -> None:
    """Spring's autoBindDlq: false layout, while eventbinder's own dead letters still land."""
    options = _type().validate_binding_options({"auto_bind_dlq": False}, "consumer")
    top = consumer_topology("orders", "billing", options, dead_letter="orders.billing.dlq")
    assert QueueDecl("orders.billing") in top.decls
    assert QueueDecl("orders.billing.dlq") in top.decls
    assert BindDecl("orders.billing.dlq", "DLX", "orders.billing") in top.decls


@pytest.mark.parametrize(
    ("value", "normalised"),
    [
        ("orders.eu", {"fixed": "orders.eu"}),
        ({"header": "region"}, {"header": "region"}),
        ({"message_key": True}, {"message_key": True}),
    ],
)
def test_routing_key_forms(value: object, normalised: dict) -> None:
    options = _type().validate_binding_options({"routing_key": value}, "producer")
    assert options["routing_key"] == normalised


def test_routing_key_rejects_unknown_forms() -> None:
    with pytest.raises(ConfigError):
        _type().validate_binding_options({"routing_key": {"expression": "x"}}, "producer")
    with pytest.raises(ConfigError):  # a producer-only option on a consumer
        _type().validate_binding_options({"routing_key": "x"}, "consumer")


def test_group_queue_arguments_do_not_depend_on_the_consumer() -> None:
    options = _type().validate_binding_options({"queue_type": "quorum", "ttl": 1000}, "consumer")
    provisioned = group_queue_topology("orders", "billing", options)
    consumed = consumer_topology("orders", "billing", options, dead_letter="parking")
    queue = next(d for d in provisioned.decls if getattr(d, "name", "") == "orders.billing")
    assert queue in consumed.decls
    assert dict(queue.arguments) == {
        "x-queue-type": "quorum",
        "x-message-ttl": 1000,
        "x-dead-letter-exchange": "DLX",
        "x-dead-letter-routing-key": "orders.billing",
    }


def test_anonymous_queues_are_exclusive_auto_delete_classic() -> None:
    options = _type().validate_binding_options({"queue_type": "quorum"}, "consumer")
    top = consumer_topology("orders", None, options)
    queue = next(d for d in top.decls if getattr(d, "name", "") == top.queue)
    assert top.queue.startswith("orders.anonymous.")
    assert (queue.exclusive, queue.auto_delete, queue.durable) == (True, True, False)
    assert "x-queue-type" not in dict(queue.arguments)


def test_a_quorum_group_queue_has_a_quorum_dead_letter_queue() -> None:
    """A classic DLQ lives on one node: losing that node stopped the re-declaration of
    the quorum group queue's consumer in a cluster."""
    options = _type().validate_binding_options({"queue_type": "quorum"}, "consumer")
    top = consumer_topology("orders", "billing", options, dead_letter="parking")
    quorum = (("x-queue-type", "quorum"),)
    assert QueueDecl("orders.billing.dlq", arguments=quorum) in top.decls
    assert QueueDecl("parking", arguments=quorum) in top.decls
    classic = consumer_topology(
        "orders", "billing", _type().validate_binding_options({}, "consumer"), dead_letter=None
    )
    assert QueueDecl("orders.billing.dlq") in classic.decls
