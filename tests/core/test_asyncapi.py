"""``binder asyncapi``: the AsyncAPI 3.0.0 document of an app.

The documents are validated against the official AsyncAPI 3.0.0 JSON Schema, vendored
in tests/core/asyncapi/ (see its README), offline.  No broker runs: the configuration
names RabbitMQ, Kafka and MQTT brokers that do not exist, and any attempt to connect
fails the tests.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import json
import socket
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from binder import App, Message
from binder.asyncapi import SchemaSet, asyncapi_document, payload_annotations
from binder.cli import main
from binder.cli.target import load_app
from binder.config import load_settings
from binder.plugins import load_registry
from binder.redaction import secret_values

from .cli_support import binder_without

HERE = Path(__file__).resolve().parent
SCHEMA = HERE / "asyncapi" / "asyncapi-3.0.0.schema.json"
SHOP = HERE / "asyncapi" / "shop_app.py"

RABBIT_PASSWORD = "Rabbit-pw-7f3a"
RABBIT_URL_PASSWORD = "rabbit/url:pw@9c"  # '/', ':' and '@' unescaped
KAFKA_PASSWORD = "Kafka-pw-51d0"
KAFKA_KEY_PASSWORD = "Kafka-keypw-e2b4"
MQTT_PASSWORD = "Mqtt-pw-0be7"
MQTT_URL_PASSWORD = "Mqtt-urlpw-a66c"
SECRETS = (
    RABBIT_PASSWORD,
    RABBIT_URL_PASSWORD,
    KAFKA_PASSWORD,
    KAFKA_KEY_PASSWORD,
    MQTT_PASSWORD,
    MQTT_URL_PASSWORD,
)
USER_NAMES = ("rabbit-user", "kafka-user", "mqtt-user")

CONFIG = f"""\
default_binder: rabbit
binders:
  rabbit:
    type: rabbit
    url:
      - "amqps://rabbit-user:{RABBIT_URL_PASSWORD}@rabbit1.example.com/shop"
      - "amqps://rabbit-user:{RABBIT_URL_PASSWORD}@rabbit2.example.com:5700/shop"
    password: {RABBIT_PASSWORD}
  kafka:
    type: kafka
    bootstrap_servers: "kafka1.example.com:9093,kafka2.example.com:9093"
    security_protocol: SASL_SSL
    sasl_mechanism: SCRAM-SHA-512
    sasl_plain_username: kafka-user
    sasl_plain_password: {KAFKA_PASSWORD}
    ssl_password: {KAFKA_KEY_PASSWORD}
  mqtt:
    type: mqtt
    url: "mqtts://mqtt-user:{MQTT_URL_PASSWORD}@mqtt.example.com"
    username: mqtt-user
    password: {MQTT_PASSWORD}
    protocol: 5
    will: {{topic: shop/gone, qos: 1}}
bindings:
  audit-in-0: {{binder: rabbit}}
  bill-in-0: {{binder: kafka, kafka: {{partitions: 6, replication_factor: 3}}}}
  bill-out-0: {{binder: kafka, partition_key: key, partition_count: 3}}
  beat-out-0:
    binder: mqtt
    content_type: text/plain
    mqtt: {{qos: 0, retain: true}}
"""


# --------------------------------------------------------------------------- helpers


@functools.cache
def _validator() -> Any:
    jsonschema = pytest.importorskip("jsonschema")
    referencing = pytest.importorskip("referencing")

    def bundled_only(uri: str) -> Any:
        raise LookupError(f"{uri} is not bundled in {SCHEMA.name}: no network here")

    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    registry = referencing.Registry(retrieve=bundled_only)
    return jsonschema.Draft7Validator(schema, registry=registry)


def asyncapi_errors(document: Any) -> list[str]:
    """Everything the AsyncAPI 3.0.0 schema finds wrong with ``document``."""
    return [
        f"{'/'.join(map(str, error.absolute_path))}: {error.message[:300]}"
        for error in _validator().iter_errors(document)
    ]


def references(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from references(value)
    elif isinstance(node, list):
        for item in node:
            yield from references(item)


def dangling_references(document: dict[str, Any]) -> list[str]:
    """The ``$ref``s of ``document`` that point at nothing in it (the schema cannot
    check those)."""
    missing = []
    for ref in references(document):
        node: Any = document
        assert ref.startswith("#/"), ref
        for part in ref[2:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(node, dict) or part not in node:
                missing.append(ref)
                break
            node = node[part]
    return missing


def assert_valid(document: dict[str, Any]) -> None:
    assert asyncapi_errors(document) == []
    assert dangling_references(document) == []


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Generating a document must not connect to anything."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"binder asyncapi tried to connect: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "binder.yaml"
    path.write_text(CONFIG, encoding="utf-8")
    return path


@functools.cache
def shop() -> App:
    return load_app(str(SHOP))


def shop_document(config: Path, **kwargs: Any) -> dict[str, Any]:
    registry = load_registry()
    settings = load_settings(config, registry=registry, environ={})
    return asyncapi_document(shop(), settings, registry=registry, environ={}, **kwargs)


def load_module(path: Path) -> Any:
    """Import the file at ``path`` as a module of its own."""
    spec = importlib.util.spec_from_file_location(f"asyncapi_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def shop_module() -> Any:
    """The names of the shop app's module as :func:`shop` loaded it (a later
    ``binder asyncapi`` of the file loads it again, under the same module name)."""
    return types.SimpleNamespace(**shop().handlers["bill"].invoker.function.__globals__)


# --------------------------------------------------------------------------- the document


def test_the_vendored_schema_rejects_what_asyncapi_forbids(config: Path) -> None:
    document = shop_document(config)
    document["operations"]["audit-in-0"]["action"] = "publish"  # AsyncAPI 2's verb
    document["channels"]["payments"]["bindings"]["kafka"]["partitions"] = "six"
    del document["info"]["version"]
    errors = "\n".join(asyncapi_errors(document))
    assert "operations/audit-in-0" in errors
    assert "channels/payments" in errors
    assert "info" in errors


def test_the_shop_document_is_valid_asyncapi_3(config: Path) -> None:
    document = shop_document(config, app_version="1.4.2")
    assert_valid(document)
    assert document["asyncapi"] == "3.0.0"
    assert document["info"]["title"] == "webshop"
    assert document["info"]["version"] == "1.4.2"
    assert document["defaultContentType"] == "application/json"


def test_one_server_per_binder_without_credentials(config: Path) -> None:
    servers = shop_document(config)["servers"]
    assert set(servers) == {"rabbit", "kafka", "mqtt"}

    rabbit = servers["rabbit"]
    assert rabbit["host"] == "rabbit1.example.com:5671"  # amqps: the TLS port
    assert rabbit["protocol"] == "amqps"
    assert rabbit["protocolVersion"] == "0.9.1"
    assert "rabbit2.example.com:5700" in rabbit["description"]  # failover URL
    assert "virtual host `shop`" in rabbit["description"]

    kafka = servers["kafka"]
    assert kafka["host"] == "kafka1.example.com:9093"
    assert kafka["protocol"] == "kafka-secure"
    assert "kafka2.example.com:9093" in kafka["description"]

    mqtt = servers["mqtt"]
    assert mqtt["host"] == "mqtt.example.com:8883"
    assert mqtt["protocol"] == "secure-mqtt"
    assert mqtt["protocolVersion"] == "5"
    assert mqtt["bindings"]["mqtt"]["lastWill"] == {"topic": "shop/gone", "qos": 1, "retain": False}


def test_servers_without_tls_or_login() -> None:
    registry = load_registry()
    config = {
        "default_binder": "rabbit",
        "binders": {
            "rabbit": {"type": "rabbit", "url": "amqp://rabbit.local/"},
            "kafka": {"type": "kafka", "bootstrap_servers": ["kafka.local:9092"]},
            "mqtt": {"type": "mqtt", "host": "mqtt.local", "protocol": "3.1.1"},
        },
        "bindings": {"bill-in-0": {"binder": "kafka"}, "beat-out-0": {"binder": "mqtt"}},
    }
    settings = load_settings(config, registry=registry, environ={})
    document = asyncapi_document(shop(), settings)
    assert_valid(document)
    servers = {
        key: (s["host"], s["protocol"], s.get("protocolVersion"))
        for key, s in document["servers"].items()
    }
    assert servers == {
        "rabbit": ("rabbit.local:5672", "amqp", "0.9.1"),
        "kafka": ("kafka.local:9092", "kafka", None),
        "mqtt": ("mqtt.local:1883", "mqtt", "3.1.1"),
    }
    assert "security" not in document["servers"]["kafka"]
    assert "security" not in document["servers"]["mqtt"]  # no user name configured
    assert document["channels"]["orders"]["bindings"]["amqp"]["exchange"]["vhost"] == "/"


def test_security_schemes_name_the_login_not_the_credentials(config: Path) -> None:
    document = shop_document(config)
    schemes = document["components"]["securitySchemes"]
    assert {key: scheme["type"] for key, scheme in schemes.items()} == {
        "rabbit.userPassword": "userPassword",
        "kafka.scramSha512": "scramSha512",
        "mqtt.userPassword": "userPassword",
    }
    assert document["servers"]["kafka"]["security"] == [
        {"$ref": "#/components/securitySchemes/kafka.scramSha512"}
    ]


def configured_secrets() -> set[str]:
    """Every secret of CONFIG as ``binder config`` finds them: the values of the keys the
    binder types declare secret (whole URLs included) and the passwords in URLs."""
    registry = load_registry()
    keys = frozenset().union(*(binder.secret_keys() for binder in registry.types.values()))
    return secret_values(yaml.safe_load(CONFIG)["binders"], keys)


@pytest.mark.parametrize("dump", [json.dumps, yaml.safe_dump], ids=["json", "yaml"])
def test_no_password_and_no_user_name_anywhere(config: Path, dump: Any) -> None:
    text = dump(shop_document(config))
    secrets = configured_secrets()
    assert set(SECRETS) <= secrets
    for secret in (*secrets, *USER_NAMES):
        assert secret not in text
    for fragment in ("rabbit/url", "pw@9c", "url:pw"):  # no piece of the odd URL password
        assert fragment not in text


def test_channels_one_per_destination_with_their_broker_bindings(config: Path) -> None:
    channels = shop_document(config)["channels"]
    assert {key: channel["address"] for key, channel in channels.items()} == {
        "orders": "orders",
        "payments": "payments",
        "invoices": "invoices",
        "shop_heartbeat": "shop/heartbeat",
    }
    assert channels["orders"]["servers"] == [{"$ref": "#/servers/rabbit"}]
    assert channels["orders"]["bindings"]["amqp"] == {
        "is": "routingKey",
        "exchange": {"name": "orders", "type": "topic", "durable": True, "vhost": "shop"},
        "bindingVersion": "0.3.0",
    }
    assert channels["payments"]["bindings"]["kafka"] == {
        "topic": "payments",
        "partitions": 6,
        "replicas": 3,
        "bindingVersion": "0.5.0",
    }
    assert channels["invoices"]["bindings"]["kafka"] == {
        "topic": "invoices",
        "bindingVersion": "0.5.0",
    }
    assert "bindings" not in channels["shop_heartbeat"]  # AsyncAPI has no MQTT channel binding
    assert channels["orders"]["messages"] == {"Order": {"$ref": "#/components/messages/Order"}}


def test_operations_receive_inputs_and_send_outputs(config: Path) -> None:
    operations = shop_document(config)["operations"]
    assert {key: op["action"] for key, op in operations.items()} == {
        "audit-in-0": "receive",
        "bill-in-0": "receive",
        "bill-out-0": "send",
        "beat-out-0": "send",
    }
    audit = operations["audit-in-0"]
    assert audit["channel"] == {"$ref": "#/channels/orders"}
    assert audit["messages"] == [{"$ref": "#/channels/orders/messages/Order"}]
    assert "`audit`" in audit["description"]
    assert "durable queue `orders.audit`" in audit["description"]
    assert audit["bindings"]["amqp"]["ack"] is True

    bill_in = operations["bill-in-0"]
    assert bill_in["bindings"]["kafka"]["groupId"] == {"type": "string", "enum": ["billing"]}
    assert "Kafka consumer group `billing`" in bill_in["description"]

    bill_out = operations["bill-out-0"]
    assert bill_out["channel"] == {"$ref": "#/channels/invoices"}
    assert "bindings" not in bill_out
    assert "Partitioned by the message key over 3 partitions" in bill_out["description"]

    beat = operations["beat-out-0"]
    assert beat["bindings"]["mqtt"] == {"qos": 0, "retain": True, "bindingVersion": "0.2.0"}
    assert "every 5 s" in beat["summary"]


def test_payload_schemas_from_the_annotations(config: Path) -> None:
    components = shop_document(config)["components"]
    schemas, messages = components["schemas"], components["messages"]

    order = schemas["Order"]
    assert order["type"] == "object"
    assert order["required"] == ["id", "items", "address", "placed_at"]
    assert order["properties"]["items"] == {"type": "array", "items": {"type": "string"}}
    assert order["properties"]["address"] == {"$ref": "#/components/schemas/Address"}
    assert order["properties"]["placed_at"] == {"type": "string", "format": "date-time"}
    assert order["properties"]["note"] == {"type": ["string", "null"], "default": None}
    assert order["properties"]["tags"] == {
        "type": "object",
        "additionalProperties": {"type": "integer"},
    }
    assert schemas["Address"]["description"] == "Where an order goes."
    assert schemas["Address"]["required"] == ["street", "city"]

    invoice = schemas["Invoice"]
    assert invoice["required"] == ["order_id", "lines", "total"]
    assert invoice["properties"]["lines"] == {
        "type": "array",
        "items": {"$ref": "#/components/schemas/InvoiceLine"},
    }
    assert messages["Invoice"]["payload"] == {"$ref": "#/components/schemas/Invoice"}

    assert messages["str"] == {
        "name": "str",
        "title": "str",
        "contentType": "text/plain",
        "payload": {"type": "string"},
    }
    assert messages["Order"]["contentType"] == "application/json"


def test_a_pydantic_model_is_described_by_pydantic(config: Path) -> None:
    if not shop_module().HAVE_PYDANTIC:
        pytest.skip("pydantic is not installed")
    schemas = shop_document(config)["components"]["schemas"]
    payment = schemas["Payment"]
    assert payment["required"] == ["order_id", "amount"]
    assert payment["properties"]["currency"]["enum"] == ["EUR", "USD"]
    assert payment == shop_module().Payment.model_json_schema()


# --------------------------------------------------------------------------- edge cases


def test_without_configuration_the_memory_binder_is_an_in_process_server() -> None:
    registry = load_registry()
    settings = load_settings(None, registry=registry, discover=False, environ={})
    document = asyncapi_document(shop(), settings)
    assert_valid(document)
    assert document["servers"] == {
        "memory": {
            "host": "in-process",
            "protocol": "memory",
            "title": "memory (in-memory binder)",
            "description": document["servers"]["memory"]["description"],
        }
    }
    assert "Not a network server" in document["servers"]["memory"]["description"]


def test_the_rabbit_url_from_the_environment_shows_its_host_only() -> None:
    registry = load_registry()
    environ = {"EVENTBINDER_RABBIT_URL": f"amqp://env-user:{RABBIT_PASSWORD}@env-rabbit:5673/"}
    settings = load_settings(
        {"binders": {"rabbit": {"type": "rabbit"}}, "default_binder": "rabbit"},
        registry=registry,
        environ=environ,
    )
    document = asyncapi_document(shop(), settings, registry=registry, environ=environ)
    assert_valid(document)
    assert document["servers"]["rabbit"]["host"] == "env-rabbit:5673"
    assert document["servers"]["rabbit"]["protocol"] == "amqp"
    text = json.dumps(document)
    assert RABBIT_PASSWORD not in text and "env-user" not in text
    # Without the registry, the binder's own default is described.
    plain = asyncapi_document(shop(), settings)
    assert plain["servers"]["rabbit"]["host"] == "localhost:5672"


class Opaque:
    """Neither a dataclass nor a model: nothing to describe."""


@dataclasses.dataclass
class Holder:
    thing: Opaque
    raw: bytes
    later: UnknownName  # type: ignore[name-defined]  # noqa: F821 - unresolvable on purpose


def test_what_cannot_be_described_accepts_anything_and_says_why() -> None:
    app = App("odd")

    @app.consumer("things")
    def take(thing: Opaque) -> None: ...

    @app.consumer("envelopes")
    def envelope(message: Message) -> None: ...

    @app.function("holders", "raw", content_type="application/octet-stream")
    def unwrap(holder: dict[str, Any]) -> bytes:
        return b""

    registry = load_registry()
    document = asyncapi_document(app, load_settings(None, registry=registry, discover=False))
    assert_valid(document)
    messages = document["components"]["messages"]
    assert set(messages["Opaque"]["payload"]) == {"description"}
    assert "Opaque" in messages["Opaque"]["payload"]["description"]
    assert messages["Any"]["payload"] == {}  # the whole Message: any JSON value
    assert messages["bytes"]["payload"]["format"] == "binary"
    assert messages["bytes"]["contentType"] == "application/octet-stream"
    assert messages["dict_str_Any"]["payload"] == {"type": "object"}

    schemas = SchemaSet()
    assert schemas.schema(Holder) == {"$ref": "#/components/schemas/Holder"}
    holder = schemas.components["Holder"]
    assert holder["type"] == "object"
    assert "cannot resolve the annotations of Holder" in holder["description"]


def test_pydantic_schemas_are_adapted_to_draft_7() -> None:
    pytest.importorskip("pydantic")
    pets = load_module(HERE / "asyncapi" / "pet_models.py")
    schemas = SchemaSet()
    assert schemas.schema(list[pets.Basket]) == {
        "type": "array",
        "items": {"$ref": "#/components/schemas/Basket"},
    }
    found = schemas.components
    assert set(found) == {"Basket", "Pet", "Cat", "Dog", "Color"}  # one Color for both
    pet = found["Pet"]["properties"]
    assert "discriminator" not in pet["pet"]  # AsyncAPI's discriminator is a string
    assert pet["pet"]["oneOf"] == [
        {"$ref": "#/components/schemas/Cat"},
        {"$ref": "#/components/schemas/Dog"},
    ]
    assert pet["position"]["items"] == [{"type": "integer"}, {"type": "integer"}]
    assert "prefixItems" not in pet["position"]

    def take(basket: Any) -> None: ...

    take.__annotations__ = {"basket": pets.Basket, "return": None}  # not a local name
    app = App("pets")
    app.consumer("baskets")(take)
    registry = load_registry()
    document = asyncapi_document(app, load_settings(None, registry=registry, discover=False))
    assert_valid(document)


def test_payload_annotations_unwrap_optional_returns() -> None:
    decl = shop().handlers["bill"]
    source, sink = payload_annotations(decl)
    assert source is shop_module().Payment
    assert sink is shop_module().Invoice  # `Invoice | None`: None publishes nothing
    assert payload_annotations(shop().handlers["audit"]) == (shop_module().Order, None)


def test_a_destination_on_two_binders_is_two_channels() -> None:
    app = App("twice")

    @app.consumer("events", group="a")
    def first(event: dict[str, Any]) -> None: ...

    @app.consumer("events", group="b", binder="other")
    def second(event: dict[str, Any]) -> None: ...

    registry = load_registry()
    settings = load_settings(
        {"default_binder": "memory", "binders": {"memory": {}, "other": {"type": "memory"}}},
        registry=registry,
    )
    document = asyncapi_document(app, settings)
    assert_valid(document)
    assert {key: ch["address"] for key, ch in document["channels"].items()} == {
        "events": "events",
        "other.events": "events",
    }
    assert document["channels"]["other.events"]["servers"] == [{"$ref": "#/servers/other"}]


# --------------------------------------------------------------------------- the command


def test_the_command_needs_no_client_library(config: Path) -> None:
    result = binder_without(
        ["kombu", "amqp", "aiokafka", "paho"], "asyncapi", str(SHOP), "--config", str(config)
    )
    assert result.returncode == 0, result.stderr
    assert_valid(yaml.safe_load(result.stdout))


@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_the_command_writes_the_document(
    config: Path, fmt: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["asyncapi", str(SHOP), "--config", str(config), "--format", fmt])
    out, err = capsys.readouterr()
    assert code == 0, err
    document = json.loads(out) if fmt == "json" else yaml.safe_load(out)
    assert_valid(document)
    assert document["info"] == shop_document(config)["info"]
    assert set(document["operations"]) == {"audit-in-0", "bill-in-0", "bill-out-0", "beat-out-0"}
    for secret in SECRETS:
        assert secret not in out and secret not in err


def test_yaml_is_the_default_and_output_writes_a_file(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "asyncapi.yaml"
    args = ["asyncapi", str(SHOP), "--config", str(config), "--output", str(target)]
    code = main([*args, "--app-version", "2.0.0"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert out == ""
    document = yaml.safe_load(target.read_text(encoding="utf-8"))
    assert document["info"]["version"] == "2.0.0"
    assert_valid(document)


def test_an_unwritable_output_is_a_user_error(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "missing" / "asyncapi.json"
    code = main(["asyncapi", str(SHOP), "--config", str(config), "--output", str(target)])
    _, err = capsys.readouterr()
    assert code == 2
    assert f"binder: error: cannot write {target}" in err
    assert "Traceback" not in err


def test_a_bad_configuration_is_the_usual_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "binder.yaml"
    config.write_text("bindings:\n  audit-in-0: {binder: nowhere}\n", encoding="utf-8")
    code = main(["asyncapi", str(SHOP), "--config", str(config)])
    _, err = capsys.readouterr()
    assert code == 2
    assert "nowhere" in err and "Traceback" not in err
