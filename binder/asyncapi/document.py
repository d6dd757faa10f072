"""Assembling the AsyncAPI 3.0.0 document of an app from its handlers and configuration.

The bindings are resolved exactly as ``binder run`` resolves them
(:func:`binder.resolve.resolve_bindings`), so the document shows the destinations,
groups, binders and content types the app really uses.  Nothing connects to a broker.
"""

from __future__ import annotations

import contextlib
import functools
import operator
import os
import types
import typing
from collections import abc
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from binder.app import HandlerDecl
from binder.asyncapi.protocols import Broker, broker_for
from binder.asyncapi.schemas import SchemaSet, component_key
from binder.bindings import BindingSettings, binding_default
from binder.message import Message
from binder.resolve import resolve_bindings

if TYPE_CHECKING:
    from binder.app import App
    from binder.config import Settings
    from binder.config.model import BinderTypes

__all__ = [
    "ASYNCAPI_VERSION",
    "DEFAULT_APP_VERSION",
    "asyncapi_document",
    "payload_annotations",
]

#: The AsyncAPI specification version of the documents made here.
ASYNCAPI_VERSION = "3.0.0"
#: ``info.version`` when none is given: AsyncAPI requires one, an app has none.
DEFAULT_APP_VERSION = "0.0.0"
_DEFAULT_CONTENT_TYPE: str = binding_default("content_type")

Json = dict[str, Any]


def payload_annotations(decl: HandlerDecl) -> tuple[Any, Any]:
    """The annotations of a handler's input payload and of its output payload.

    The input is the payload parameter's annotation (``Any`` when the handler takes
    only the :class:`~binder.message.Message`); the output is the return annotation
    without ``None`` (returning ``None`` publishes nothing), ``Any`` when missing or
    when the handler returns a ``Message``.  A consumer's output is ``None``.
    """
    function = decl.invoker.function
    try:
        hints = typing.get_type_hints(function)
    except Exception:  # the Invoker resolved them once; a module changed since
        hints = {}
    param = decl.invoker.payload_param
    source: Any = hints.get(param, Any) if param is not None else Any
    if decl.kind == "consumer":
        return source, None
    return source, _returned(hints.get("return", Any))


def _returned(annotation: Any) -> Any:
    origin = typing.get_origin(annotation)
    if origin in (abc.Awaitable, abc.Coroutine):  # a def returning an awaitable
        annotation = typing.get_args(annotation)[-1]
        origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        members = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        if Message in members:
            return Any
        # A member that is not a type (a string) cannot be or-ed: the union stays whole.
        with contextlib.suppress(TypeError):
            annotation = functools.reduce(operator.or_, members)
    if annotation in (Message, None, type(None)):
        return Any
    return annotation


@dataclass
class _Channel:
    key: str
    binder: str
    destination: str
    bindings: list[BindingSettings] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)


@dataclass
class _Operation:
    decl: HandlerDecl
    binding: BindingSettings
    channel: _Channel
    message: str


def _unique(key: str, taken: typing.Container[str]) -> str:
    if key not in taken:
        return key
    number = 2
    while f"{key}_{number}" in taken:
        number += 1
    return f"{key}_{number}"


def _ref(*path: str) -> Json:
    return {"$ref": "#/" + "/".join(path)}


class _Document:
    """Collects servers, channels, operations and components, then writes the document."""

    def __init__(self, settings: Settings, binder_settings: Mapping[str, Mapping[str, Any]]):
        self.settings = settings
        self.binder_settings = binder_settings
        self.schemas = SchemaSet()
        self.servers: dict[str, Json] = {}
        self.server_keys: dict[str, str] = {}
        self.security: dict[str, Json] = {}
        self.messages: dict[str, Json] = {}
        self.message_keys: dict[tuple[str, str], str] = {}
        self.channels: dict[tuple[str, str], _Channel] = {}
        self.operations: list[_Operation] = []

    def broker(self, binder: str) -> Broker:
        type_name = self.settings.binders[binder].type
        return broker_for(self.settings.binder_type(type_name), type_name)

    def add(self, decl: HandlerDecl, binding: BindingSettings, annotation: Any) -> None:
        """Add one binding of ``decl`` whose payload is annotated ``annotation``."""
        self.server(binding.binder)
        message = self.message(annotation, binding.content_type or _DEFAULT_CONTENT_TYPE)
        channel = self.channel(binding.binder, binding.destination)
        channel.bindings.append(binding)
        if message not in channel.messages:
            channel.messages.append(message)
        self.operations.append(_Operation(decl, binding, channel, message))

    def server(self, binder: str) -> str:
        known = self.server_keys.get(binder)
        if known is not None:
            return known
        key = self.server_keys[binder] = _unique(component_key(binder), self.servers)
        described = self.broker(binder).server(binder, self.binder_settings[binder])
        server = dict(described.server)
        if described.security:
            refs = []
            for scheme, value in described.security.items():
                name = _unique(f"{key}.{scheme}", self.security)
                self.security[name] = value
                refs.append(_ref("components", "securitySchemes", name))
            server["security"] = refs
        self.servers[key] = server
        return key

    def message(self, annotation: Any, content_type: str) -> str:
        schema = self.schemas.payload(annotation, content_type)
        label = self.schemas.label(annotation)
        known = self.message_keys.get((label, content_type))
        if known is not None:
            return known
        key = label if label not in self.messages else component_key(f"{label}.{content_type}")
        key = self.message_keys[(label, content_type)] = _unique(key, self.messages)
        self.messages[key] = {
            "name": label,
            "title": label,
            "contentType": content_type,
            "payload": schema,
        }
        return key

    def channel(self, binder: str, destination: str) -> _Channel:
        found = self.channels.get((binder, destination))
        if found is not None:
            return found
        taken = {channel.key for channel in self.channels.values()}
        key = component_key(destination)
        if key in taken:
            key = component_key(f"{binder}.{destination}")
        channel = _Channel(_unique(key, taken), binder, destination)
        self.channels[(binder, destination)] = channel
        return channel

    # ------------------------------------------------------------------ writing

    def channel_object(self, channel: _Channel) -> Json:
        binder_type = self.settings.binders[channel.binder].type
        out: Json = {
            "address": channel.destination,
            "description": (
                f"Destination `{channel.destination}` on binder `{channel.binder}` "
                f"(type {binder_type})."
            ),
            "servers": [_ref("servers", self.server_keys[channel.binder])],
            "messages": {key: _ref("components", "messages", key) for key in channel.messages},
        }
        bindings = self.broker(channel.binder).channel_bindings(
            channel.destination, channel.bindings, self.binder_settings[channel.binder]
        )
        if bindings:
            out["bindings"] = bindings
        return out

    def operation_object(self, operation: _Operation) -> Json:
        binding, decl = operation.binding, operation.decl
        broker = self.broker(binding.binder)
        receive = binding.direction == "consumer"
        out: Json = {
            "action": "receive" if receive else "send",
            "channel": _ref("channels", operation.channel.key),
            "summary": _summary(decl, binding),
            "description": " ".join(
                (_receiving(binding, broker) if receive else _sending(decl, binding))
                + [
                    f"Binding `{binding.name}` on binder `{binding.binder}`, content type "
                    f"{binding.content_type}."
                ]
            ),
            "messages": [_ref("channels", operation.channel.key, "messages", operation.message)],
        }
        bindings = broker.operation_bindings(binding)
        if bindings:
            out["bindings"] = bindings
        return out

    def document(self, title: str, version: str) -> Json:
        operations: Json = {}
        for operation in self.operations:
            key = _unique(component_key(operation.binding.name), operations)
            operations[key] = self.operation_object(operation)
        components: Json = {}
        if self.schemas.components:
            components["schemas"] = self.schemas.components
        if self.messages:
            components["messages"] = self.messages
        if self.security:
            components["securitySchemes"] = self.security
        document: Json = {
            "asyncapi": ASYNCAPI_VERSION,
            "info": {
                "title": title,
                "version": version,
                "description": (
                    f"The channels, operations and payloads of the event-driven app `{title}`, "
                    "as eventbinder resolves them from its handlers and its configuration "
                    "(generated by `binder asyncapi`)."
                ),
            },
            "defaultContentType": _DEFAULT_CONTENT_TYPE,
        }
        if self.servers:
            document["servers"] = self.servers
        document["channels"] = {
            channel.key: self.channel_object(channel) for channel in self.channels.values()
        }
        document["operations"] = operations
        if components:
            document["components"] = components
        return document


def _summary(decl: HandlerDecl, binding: BindingSettings) -> str:
    where = f"`{binding.destination}`"
    if binding.direction == "consumer":
        return f"{decl.kind.capitalize()} `{decl.name}` handles the messages of {where}."
    if decl.kind == "supplier":
        return f"Supplier `{decl.name}` publishes to {where} every {decl.every:g} s."
    return f"Function `{decl.name}` publishes its return values to {where}."


def _receiving(binding: BindingSettings, broker: Broker) -> list[str]:
    subscription = broker.subscription(binding)
    if binding.group:
        group = (
            f"Consumer group `{binding.group}`: the group's instances compete, each message "
            "reaches one of them" + (f", through {subscription}." if subscription else ".")
        )
    else:
        group = "No group (anonymous): every instance gets its own copy" + (
            f", through {subscription}." if subscription else "."
        )
    attempts = binding.max_attempts
    tries = "not retried" if attempts == 1 else f"retried ({attempts} attempts in all)"
    if binding.dead_letter is False:
        after = "then logged and dropped (dead letters off)"
    elif isinstance(binding.dead_letter, str):
        after = f"then sent to the dead-letter destination `{binding.dead_letter}`"
    else:
        after = "then sent to the binder's dead-letter destination"
    return [group, f"A message whose handler fails is {tries}, {after}."]


def _sending(decl: HandlerDecl, binding: BindingSettings) -> list[str]:
    lines = []
    if decl.kind == "function":
        lines.append("Returning `None` publishes nothing.")
    if binding.partition_key is not None and binding.partition_count > 1:
        by = (
            "the message key"
            if binding.partition_key == "key"
            else f"the header `{binding.partition_key}`"
        )
        lines.append(f"Partitioned by {by} over {binding.partition_count} partitions.")
    return lines


def _binder_settings(
    settings: Settings, registry: BinderTypes | None, environ: Mapping[str, str] | None
) -> dict[str, Mapping[str, Any]]:
    """Each binder's settings, with the unset ones its type reads from the environment
    (``environment_defaults``, as ``binder config`` shows them) filled in."""
    env = os.environ if environ is None else environ
    result: dict[str, Mapping[str, Any]] = {}
    for name, config in settings.binders.items():
        values = dict(config.settings)
        binder_type = registry.types.get(config.type) if registry is not None else None
        defaults: Mapping[str, str] = getattr(binder_type, "environment_defaults", None) or {}
        for key, variable in defaults.items():
            if values.get(key) is None and env.get(variable):
                values[key] = env[variable]
        result[name] = values
    return result


def asyncapi_document(
    app: App,
    settings: Settings,
    *,
    app_version: str = DEFAULT_APP_VERSION,
    registry: BinderTypes | None = None,
    environ: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The AsyncAPI 3.0.0 document of ``app`` under ``settings``, as plain data.

    - ``info``: the app's name as title, ``app_version`` as version;
    - ``servers``: one per binder the app's bindings use, keyed by binder name: its
      first address, protocol and version, never a user name or a password;
    - ``channels``: one per destination and binder (``address``: the destination);
    - ``operations``: one per binding, keyed by binding name (``price-in-0``):
      ``receive`` for consumer and function inputs, ``send`` for function outputs and
      suppliers;
    - ``components``: a message per payload type and content type, the payloads'
      JSON Schemas (from the handlers' annotations), the servers' security schemes.

    The bindings are resolved as ``binder run`` resolves them, so configuration errors
    raise the same :class:`~binder.errors.ConfigError`.  With ``registry``, settings a
    binder type reads from the environment when unset (the RabbitMQ binder's ``url``
    from ``$EVENTBINDER_RABBIT_URL``) are taken from ``environ`` (default
    :data:`os.environ`).  Nothing connects to a broker.
    """
    resolved = resolve_bindings(app, settings)
    document = _Document(settings, _binder_settings(settings, registry, environ))
    for decl in app.handlers.values():
        source, sink = payload_annotations(decl)
        if decl.input is not None:
            document.add(decl, resolved[decl.input.name], source)
        if decl.output is not None:
            document.add(decl, resolved[decl.output.name], sink)
    return document.document(app.name, app_version)
