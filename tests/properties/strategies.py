"""Hypothesis strategies and checks shared by the property tests.

Configuration documents are drawn "near" real ones: the keys are mostly the real keys
(top level, binder names and types, binding names, core binding keys, every binder
type's own options) or small misspellings of them, the values mostly the options'
defaults and choices or values of a wrong type, so that the search reaches the deep
validation code instead of stopping at the first unknown top-level key.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from hypothesis import strategies as st

from binder import App
from binder.bindings import BINDING_SCHEMA
from binder.config import RUNTIME_SCHEMA, TOP_LEVEL_KEYS
from binder.errors import ConfigError
from binder.schema import Option
from binders.kafka import settings as kafka_settings
from binders.mqtt import settings as mqtt_settings
from binders.rabbit import settings as rabbit_settings

# --------------------------------------------------------------------------- the app


def make_app() -> App:
    """An app with a consumer, a function and a supplier: bindings ``mail-in-0``,
    ``bill-in-0``, ``bill-out-0`` and ``beat-out-0``."""
    app = App("props")

    @app.consumer("invoices", group="mailer")
    def mail(invoice: dict[str, Any]) -> None:  # pragma: no cover - never called
        pass

    @app.function(input="orders", output="invoices", group="billing")
    def bill(order: dict[str, Any]) -> dict[str, Any]:  # pragma: no cover
        return order

    @app.supplier("beats", every=5.0)
    def beat() -> dict[str, Any]:  # pragma: no cover
        return {}

    return app


APP_BINDINGS = ("mail-in-0", "bill-in-0", "bill-out-0", "beat-out-0")

# --------------------------------------------------------------------------- text

#: Text a UTF-8 file can hold (no lone surrogates).
file_text = st.text(st.characters(codec="utf-8"), max_size=12)
#: Secrets planted in documents: long enough to be masked (3+), from an alphabet that
#: cannot meet the mask "***".
secrets = st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.~", min_size=3)

# --------------------------------------------------------------------------- keys

BINDER_TYPES = ("memory", "rabbit", "kafka", "mqtt")
BINDER_NAMES = (*BINDER_TYPES, "bus", "main")
BINDING_NAMES = (
    *APP_BINDINGS,
    "default",
    "bill_in_0",
    "BILL-IN-0",
    "Mail_In_0",
    "audit",
    "nosuch-in-0",
    "bil-out-0",
)

#: Settings and binding options of each binder type: (binder settings, consumer
#: options, producer options).
TYPE_SCHEMAS: dict[str, tuple[Mapping[str, Option], ...]] = {
    "memory": ({}, {}, {}),
    "rabbit": (
        rabbit_settings.SETTINGS,
        rabbit_settings.CONSUMER_OPTIONS,
        rabbit_settings.PRODUCER_OPTIONS,
    ),
    "kafka": (
        kafka_settings.BINDER_SCHEMA,
        kafka_settings.CONSUMER_SCHEMA,
        kafka_settings.PRODUCER_SCHEMA,
    ),
    "mqtt": (
        mqtt_settings.SETTINGS,
        mqtt_settings.CONSUMER_OPTIONS,
        mqtt_settings.PRODUCER_OPTIONS,
    ),
}
NESTED_SCHEMAS: dict[str, Mapping[str, Option]] = {
    "ssl": rabbit_settings.SSL_OPTIONS,
    "tls": mqtt_settings.TLS_OPTIONS,
    "will": mqtt_settings.WILL_OPTIONS,
}


def mostly(
    good: st.SearchStrategy[Any], other: st.SearchStrategy[Any], odds: int = 8
) -> st.SearchStrategy[Any]:
    """``good`` ``odds`` times out of ``odds + 1``, else ``other`` (``one_of`` would
    flatten nested alternatives and weigh every branch alike)."""
    return st.integers(0, odds).flatmap(lambda i: other if i == 0 else good)


def _misspell(word: str) -> st.SearchStrategy[str]:
    """``word`` in another case, with ``-``/``_`` swapped, a letter dropped or doubled."""
    variants = {
        word.upper(),
        word.replace("_", "-"),
        word.replace("-", "_"),
        word[:-1],
        word + word[-1:],
        word.capitalize(),
        word + "s",
    }
    variants.discard("")
    return st.sampled_from(sorted(variants))


def keys_near(words: tuple[str, ...] | list[str]) -> st.SearchStrategy[str]:
    """Mostly one of ``words``, sometimes a misspelling of one, rarely any text."""
    real = st.sampled_from(sorted(words)) if words else st.nothing()
    misspelt = real.flatmap(_misspell) if words else st.nothing()
    return mostly(real, st.one_of(misspelt, file_text))


# --------------------------------------------------------------------------- values

scalars: st.SearchStrategy[Any] = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.sampled_from([0, 1, -1, 2**31, 65536, 65535]),
    st.floats(allow_nan=True, allow_infinity=True),
    file_text,
    st.sampled_from(
        [
            "",
            "memory",
            "rabbit",
            "kafka",
            "mqtt",
            "bus",
            "quorum",
            "classic",
            "topic",
            "headers",
            "earliest",
            "latest",
            "5",
            "3.1.1",
            "localhost:9092",
            "amqp://guest:guest@localhost:5672//",
            "mqtt://localhost:1883",
            "key",
            "a,b",
        ]
    ),
)

#: Any document value: scalars, lists and mappings nested a few levels.
values: st.SearchStrategy[Any] = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(keys_near(["header", "message_key", "x-match", "a"]), inner, max_size=4),
    ),
    max_leaves=12,
)


def option_value(name: str, option: Option) -> st.SearchStrategy[Any]:
    """Mostly a plausible value of ``option`` (its default, a choice, the right type),
    sometimes any value."""
    plausible: list[Any] = []
    if not option.required:
        plausible.append(option.default)
    plausible.extend(option.choices or ())
    plausible = [list(v) if isinstance(v, tuple) else v for v in plausible]  # as files hold
    kinds = option.kind if isinstance(option.kind, tuple) else (option.kind,)
    typed: list[st.SearchStrategy[Any]] = []
    if int in kinds or float in kinds:
        typed.append(st.integers(min_value=-5, max_value=2**40))
    if float in kinds:
        typed.append(st.floats())
    if str in kinds:
        typed.append(file_text)
    if bool in kinds:
        typed.append(st.booleans())
    nested = NESTED_SCHEMAS.get(name)
    if nested is not None:
        typed.append(sections(nested))
    good = st.one_of(*([st.sampled_from(plausible)] if plausible else []), *typed)
    return mostly(good, values, odds=4)


def sections(schema: Mapping[str, Option]) -> st.SearchStrategy[dict[str, Any]]:
    """A mapping of ``schema``'s keys (some misspelt) with plausible or wrong values."""
    known = sorted(schema)
    entry = st.sampled_from(known).flatmap(
        lambda key: st.tuples(st.just(key), option_value(key, schema[key]))
    )
    stray = st.tuples(keys_near(known), values)
    pairs = st.lists(mostly(entry, stray) if known else stray, max_size=5)
    return pairs.map(dict)


def _binder_body(name: str) -> st.SearchStrategy[Any]:
    def body(type_name: str) -> st.SearchStrategy[Any]:
        settings = sections(TYPE_SCHEMAS.get(type_name, TYPE_SCHEMAS["memory"])[0])
        typed = settings.map(lambda s: {"type": type_name, **s})
        untyped = settings  # the type defaults to the name
        return st.one_of(typed, untyped)

    own_type = name if name in BINDER_TYPES else "rabbit"
    return mostly(
        st.sampled_from([own_type, own_type, *BINDER_TYPES]).flatmap(body),
        st.one_of(
            st.builds(lambda s, t: {"type": t, **s}, sections({}), keys_near(BINDER_TYPES)),
            values,
        ),
    )


_binders = st.lists(
    keys_near(BINDER_NAMES).flatmap(lambda n: st.tuples(st.just(n), _binder_body(n))),
    max_size=3,
).map(dict)
binders_sections: st.SearchStrategy[Any] = mostly(_binders, values)


def _binding_layer(name: str) -> st.SearchStrategy[Any]:
    direction = 1 if name.replace("_", "-").lower().endswith("-in-0") else 2
    core = sections(BINDING_SCHEMA)
    type_sections = st.lists(
        st.sampled_from(BINDER_TYPES).flatmap(
            lambda t: st.tuples(st.just(t), mostly(sections(TYPE_SCHEMAS[t][direction]), values))
        ),
        max_size=2,
    ).map(dict)
    both = st.builds(lambda c, t: {**c, **t}, core, type_sections)
    return mostly(both, st.one_of(core, values))


_bindings = st.lists(
    keys_near(BINDING_NAMES).flatmap(lambda n: st.tuples(st.just(n), _binding_layer(n))),
    max_size=4,
).map(dict)
bindings_sections: st.SearchStrategy[Any] = mostly(_bindings, values)


@st.composite
def documents(draw: st.DrawFn) -> dict[str, Any]:
    """A configuration mapping near a real one."""
    doc: dict[str, Any] = {}
    if draw(st.booleans()):
        doc["binders"] = draw(binders_sections)
    defined = sorted(doc["binders"]) if isinstance(doc.get("binders"), dict) else []
    if draw(st.booleans()):
        names = st.sampled_from(defined or ["memory"])
        doc["default_binder"] = draw(
            mostly(names, st.one_of(st.sampled_from(BINDER_NAMES), scalars))
        )
    if draw(st.booleans()):
        doc["bindings"] = draw(bindings_sections)
        layers = doc["bindings"] if isinstance(doc["bindings"], dict) else {}
        for layer in layers.values():
            if isinstance(layer, dict) and "binder" in layer and draw(st.booleans()):
                layer["binder"] = draw(st.sampled_from(defined or ["memory"]))
    if draw(st.integers(0, 3)) == 0:
        doc["runtime"] = draw(mostly(sections(RUNTIME_SCHEMA), values))
    if draw(st.integers(0, 5)) == 0:
        doc[draw(keys_near(TOP_LEVEL_KEYS))] = draw(values)
    return doc


@st.composite
def documents_with_secrets(draw: st.DrawFn) -> tuple[dict[str, Any], list[str]]:
    """A document plus the secrets planted in it (a password, a URL password)."""
    doc = draw(documents())
    # Prefixed: a secret may then be any part of the document (a key too) but not a
    # piece of the file's path, which the message must show.
    password, url_password = f"Pw-{draw(secrets)}", f"Pw-{draw(secrets)}"
    binders = doc.get("binders")
    if not isinstance(binders, dict):
        binders = doc["binders"] = {}
    where = draw(st.sampled_from(["rabbit", "bus", "kafka", "mqtt"]))
    body = binders.get(where)
    if not isinstance(body, dict):
        body = binders[where] = {"type": "rabbit"} if where == "bus" else {}
    key = {"kafka": "sasl_plain_password"}.get(where, "password")
    body[key] = password
    if where in ("rabbit", "bus"):
        body["url"] = f"amqp://guest:{url_password}@localhost:5672//"
    else:
        url_password = password
    return doc, [password, url_password]


# --------------------------------------------------------------------------- writing


def _toml_string(text: str) -> str:
    out = ['"']
    for char in text:
        if char in '"\\':
            out.append("\\" + char)
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value if v is not None) + "]"
    if isinstance(value, dict):
        items = (f"{_toml_string(k)} = {_toml_value(v)}" for k, v in value.items() if v is not None)
        return "{" + ", ".join(items) + "}"
    raise TypeError(type(value))


def to_toml(doc: Mapping[str, Any]) -> str:
    """``doc`` as TOML, every table inline; TOML has no null, so None is left out."""
    return "".join(
        f"{_toml_string(k)} = {_toml_value(v)}\n" for k, v in doc.items() if v is not None
    )


def without_none(value: Any) -> Any:
    """``value`` as TOML reads it back: None dropped from mappings and lists."""
    if isinstance(value, dict):
        return {k: without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_none(v) for v in value if v is not None]
    return value


# --------------------------------------------------------------------------- checks


def top_segment_written(doc: Any, key: str) -> bool:
    """True when ``key`` (a dotted path) starts with a top-level key of ``doc``."""
    if not isinstance(doc, Mapping):
        return False
    return any(key == str(k) or key.startswith(f"{k}.") for k in doc)


def check_config_error(
    exc: ConfigError,
    *,
    sources: Callable[[str], bool],
    secrets: tuple[str, ...] | list[str] = (),
) -> None:
    """The documented shape of a configuration error: it names an accepted source (and
    its message starts with it), holds no traceback and no planted secret."""
    text = str(exc)
    assert exc.source is not None, text
    assert sources(exc.source), f"unexpected source {exc.source!r}: {text}"
    assert text.startswith(exc.source), text
    if exc.key:
        assert f"key '{exc.key}'" in text, text
    assert "Traceback" not in text, text
    for secret in secrets:
        if len(secret) >= 3:
            assert secret not in text, f"secret {secret!r} in {text!r}"
