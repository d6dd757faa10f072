"""Binding names and destinations: any function name, destination and group through the
decorators, and any binding name in the configuration, either resolve as documented
(``<fn>-in-0`` / ``<fn>-out-0``, a name ending in ``-in-<n>`` is a consumer, names
compared ignoring case and ``-``/``_``) or fail with the documented errors only."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from binder import App
from binder.bindings import binding_direction, normalize_name
from binder.config import load_settings
from binder.errors import ConfigError
from binder.plugins import load_registry
from binder.resolve import resolve_bindings, resolve_dynamic

from .strategies import check_config_error, make_app, values

REGISTRY = load_registry()
DEFAULTS = load_settings(None, registry=REGISTRY, environ={}, discover=False)
HERE = __file__.rsplit("/", 1)[-1]

# Function names as ``__name__`` may hold them (Python does not check), with the
# suffixes that matter to the naming rules mixed in.
_SUFFIXES = ["", "-in-0", "_in_0", "-out-1", "-IN-2", "-in-", "-in-x", "\n", "-in-0\n", "-in-٣"]
names = st.builds(lambda a, b: a + b, st.text(max_size=12), st.sampled_from(_SUFFIXES))
texts = st.text(max_size=20)


def consumer_rule(name: str) -> bool:
    """The documented rule, written out: a name ending in ``-in-<n>`` (compared
    ignoring case and ``-``/``_``) is a consumer binding."""
    return re.fullmatch(r".+_in_\d+", normalize_name(name), re.DOTALL) is not None


def _handler(name: str, *, supplier: bool = False) -> Callable[..., Any]:
    if supplier:

        def beat() -> dict[str, Any]:  # pragma: no cover - never called
            return {}

        function: Callable[..., Any] = beat
    else:

        def handle(payload: dict[str, Any]) -> None:  # pragma: no cover
            pass

        function = handle
    function.__name__ = name
    return function


# --------------------------------------------------------------------------- rule


@settings(max_examples=300)
@given(name=st.one_of(names, st.text()))
@example(name="a\nb-in-0")
@example(name="orders-in-0\n")
@example(name="bill_in_0")
@example(name="BILL-IN-0")
def test_direction_follows_the_documented_rule(name: str) -> None:
    expected = "consumer" if consumer_rule(name) else "producer"
    assert binding_direction(name) == expected


# --------------------------------------------------------------------------- decorators


@settings(max_examples=150, deadline=None)
@given(
    fn=st.text(min_size=1, max_size=12),
    source=texts,
    sink=texts,
    group=st.one_of(st.none(), texts),
    kind=st.sampled_from(["consumer", "function", "supplier"]),
)
@example(fn="a\nb", source="x", sink="y", group=None, kind="function")
@example(fn="x-in-0", source="", sink="", group="", kind="function")
def test_any_names_through_the_decorators(
    fn: str, source: str, sink: str, group: str | None, kind: str
) -> None:
    """Any (non-empty) function name, destination and group is accepted, and the app's
    bindings resolve to exactly them, in the right direction."""
    app = App("names")
    if kind == "consumer":
        app.consumer(source, group=group)(_handler(fn))
    elif kind == "function":
        app.function(source, sink, group=group)(_handler(fn))
    else:
        app.supplier(sink, every=1.0)(_handler(fn, supplier=True))
    resolved = resolve_bindings(app, DEFAULTS)
    expected = set()
    if kind != "supplier":
        binding = resolved[f"{fn}-in-0"]
        assert (binding.destination, binding.group) == (source, group)
        assert binding.direction == "consumer"
        expected.add(f"{fn}-in-0")
    if kind != "consumer":
        binding = resolved[f"{fn}-out-0"]
        assert (binding.destination, binding.group) == (sink, None)
        assert binding.direction == "producer"
        expected.add(f"{fn}-out-0")
    assert set(resolved) == expected


@settings(max_examples=100, deadline=None)
@given(
    destination=values.filter(lambda v: not isinstance(v, str)),
    kind=st.sampled_from(["consumer", "function", "supplier"]),
)
@example(destination=None, kind="consumer")
@example(destination=b"orders", kind="supplier")
def test_a_destination_that_is_not_text_is_refused_at_the_decorator(
    destination: Any, kind: str
) -> None:
    """A destination of another type than str is a ConfigError naming this file (the
    decorator's) and the binding's destination key."""
    app = App("names")
    with pytest.raises(ConfigError) as caught:
        if kind == "consumer":
            app.consumer(destination)(_handler("f"))
        elif kind == "function":
            app.function(destination, destination)(_handler("f"))
        else:
            app.supplier(destination, every=1.0)(_handler("f", supplier=True))
    check_config_error(caught.value, sources=lambda s: s.endswith(HERE))
    assert caught.value.key in ("bindings.f-in-0.destination", "bindings.f-out-0.destination")


@settings(max_examples=60, deadline=None)
@given(first=st.text(min_size=1, max_size=6), second=st.text(min_size=1, max_size=6))
def test_two_handlers_of_one_name_are_an_error(first: str, second: str) -> None:
    app = App("names")
    app.consumer("a")(_handler(first))
    if first == second:
        with pytest.raises(ValueError, match="already has a handler named"):
            app.consumer("b")(_handler(second))
    else:
        app.consumer("b")(_handler(second))
        assert set(resolve_bindings(app, DEFAULTS)) == {f"{first}-in-0", f"{second}-in-0"}


# --------------------------------------------------------------------------- configuration


@settings(max_examples=200, deadline=None)
@given(key=st.one_of(names, st.sampled_from(["bill_in_0", "MAIL-IN-0", "Beat_Out_0"])), group=texts)
@example(key="a\nb-in-0", group="g")
@example(key="bill-in-0\n", group="g")
def test_configured_binding_names(key: str, group: str) -> None:
    """A configured name of one of the app's bindings (in any spelling) configures it;
    another name shaped like a handler binding is a ConfigError naming it; any other
    name configures ``App.send`` to that destination."""
    assume(key != "default")
    app = make_app()
    declared = {
        normalize_name(n): n for n in ("mail-in-0", "bill-in-0", "bill-out-0", "beat-out-0")
    }
    doc = {"bindings": {key: {"group": group}}}
    try:
        loaded = load_settings(doc, registry=REGISTRY, environ={})
        resolved = resolve_bindings(app, loaded)
    except ConfigError as exc:
        check_config_error(exc, sources=lambda s: s == "<mapping>")
        assert exc.key == f"bindings.{key}"
        assert normalize_name(key) not in declared
        assert re.fullmatch(r".+_(in|out)_\d+", normalize_name(key), re.DOTALL)
        return
    own = declared.get(normalize_name(key))
    if own is not None:
        assert resolved[own].group == group
    else:
        assert not re.fullmatch(r".+_(in|out)_\d+", normalize_name(key), re.DOTALL)
        dynamic = resolve_dynamic(key, loaded)
        assert dynamic.destination == key
        assert dynamic.group == group
        assert dynamic.direction == ("consumer" if consumer_rule(key) else "producer")


@settings(max_examples=150, deadline=None)
@given(destination=texts)
def test_send_destinations_resolve(destination: str) -> None:
    """``App.send`` to any destination resolves to a binding of that name and
    destination (or the configured one)."""
    binding = resolve_dynamic(destination, DEFAULTS)
    assert binding.name == destination
    assert binding.destination == destination
    assert binding.binder == "memory"
