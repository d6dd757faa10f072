"""Python annotations -> JSON Schema, for the payloads of an AsyncAPI document.

The schemas follow what :mod:`binder.codecs` puts on the wire: a dataclass, a
``TypedDict`` or a pydantic model is a JSON object, ``list[T]`` an array, ``str`` a
string, ``bytes`` the raw payload.  Named types (dataclasses, TypedDicts, pydantic
models, enums) become entries of ``components.schemas`` referenced with ``$ref``; the
rest is written inline.  The result is an AsyncAPI Schema Object (a superset of JSON
Schema Draft 7); pydantic models describe themselves (:mod:`binder.asyncapi.models`).

Nothing here raises on an annotation it cannot describe: it becomes a schema that
accepts any value, with a ``description`` saying why.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import math
import re
import types
import typing
import uuid
from collections import abc
from collections.abc import Mapping
from typing import Any

from binder.asyncapi.models import model_schema, rename_refs
from binder.codecs import is_json, is_text

__all__ = ["SchemaSet", "component_key"]

#: Characters a component key may not hold (AsyncAPI 3.0: ``^[\w\d.\-_]+$``, ASCII here).
_NOT_KEY = re.compile(r"[^A-Za-z0-9_.\-]+")

Schema = dict[str, Any]

_SIMPLE: Mapping[object, Schema] = {
    str: {"type": "string"},
    int: {"type": "integer"},
    float: {"type": "number"},
    bool: {"type": "boolean"},
    type(None): {"type": "null"},
    datetime.datetime: {"type": "string", "format": "date-time"},
    datetime.date: {"type": "string", "format": "date"},
    datetime.time: {"type": "string", "format": "time"},
    uuid.UUID: {"type": "string", "format": "uuid"},
    decimal.Decimal: {"type": ["number", "string"]},
}
#: Annotations (or their ``get_origin``) that JSON writes as arrays, and as objects.
_ARRAYS: frozenset[object] = frozenset(
    {list, set, frozenset, abc.Sequence, abc.MutableSequence, abc.Collection}
    | {abc.Iterable, abc.Set, abc.MutableSet}
)
_OBJECTS: frozenset[object] = frozenset({dict, abc.Mapping, abc.MutableMapping})


def component_key(text: str) -> str:
    """``text`` made a valid component key: runs of other characters become ``_``."""
    key = _NOT_KEY.sub("_", text).strip("_")
    return key or "_"


def _spell(annotation: Any) -> str:
    """How a reader writes ``annotation`` (``list[Order]``, ``int | None``)."""
    if annotation is None or annotation is type(None):
        return "None"
    if annotation is Ellipsis:
        return "..."
    if isinstance(annotation, str):
        return annotation
    if isinstance(annotation, typing.ForwardRef):
        return annotation.__forward_arg__
    if isinstance(annotation, typing.TypeVar | typing.NewType):
        return annotation.__name__
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_spell(arg) for arg in args)
    if origin is typing.Literal:
        return f"Literal[{', '.join(repr(arg) for arg in args)}]"
    if origin is not None and args:
        return f"{_spell(origin)}[{', '.join(_spell(arg) for arg in args)}]"
    if isinstance(annotation, type):
        return annotation.__qualname__
    name = getattr(annotation, "_name", None) or getattr(annotation, "__name__", None)
    return str(name) if name else repr(annotation)


def _any(reason: str) -> Schema:
    return {"description": reason}


def _is_pydantic(annotation: Any) -> bool:
    return isinstance(annotation, type) and callable(getattr(annotation, "model_json_schema", None))


def _is_named(annotation: Any) -> bool:
    return isinstance(annotation, type) and (
        dataclasses.is_dataclass(annotation)
        or typing.is_typeddict(annotation)
        or _is_pydantic(annotation)
        or issubclass(annotation, enum.Enum)
    )


def _own_doc(cls: type) -> str | None:
    """The class docstring the user wrote (not the one dataclasses or Enum generate)."""
    doc = cls.__dict__.get("__doc__")
    if not isinstance(doc, str) or not doc.strip():
        return None
    if doc.startswith(f"{cls.__name__}(") or doc == "An enumeration.":
        return None
    return " ".join(doc.split())


def _scalar(value: Any) -> tuple[bool, Any]:
    """``(True, value)`` for a JSON scalar (an enum member: its value), else ``(False, None)``."""
    if isinstance(value, enum.Enum):
        value = value.value
    if value is None or type(value) in (str, bool, int):
        return True, value
    if type(value) is float and math.isfinite(value):
        return True, value
    return False, None


def _merge_union(schemas: list[Schema]) -> Schema:
    """``{"type": [a, b]}`` when every member is a bare type, else ``anyOf``."""
    unique: list[Schema] = []
    for schema in schemas:
        if schema not in unique:
            unique.append(schema)
    if len(unique) == 1:
        return unique[0]
    if all(set(s) == {"type"} and isinstance(s["type"], str) for s in unique):
        return {"type": [s["type"] for s in unique]}
    return {"anyOf": unique}


class SchemaSet:
    """Builds the schemas of payload annotations, collecting the named ones.

    :attr:`components` maps component names to schemas (``components.schemas`` of the
    document); :meth:`payload` returns the schema of one payload, a ``$ref`` to a
    component for a named type.  The same class always gets the same name; two
    classes with the same ``__name__`` get their module in the second one's name.
    """

    def __init__(self) -> None:
        self.components: dict[str, Schema] = {}
        self._names: dict[object, str] = {}

    def payload(self, annotation: Any, content_type: str | None) -> Schema:
        """The schema of a payload annotated ``annotation`` under ``content_type``.

        ``bytes`` is the payload as sent; ``Any`` (or no annotation) is whatever the
        content type decodes to: a JSON value, a string for ``text/*``, else bytes.
        """
        if annotation is typing.Any:
            if is_json(content_type):
                return {}
            if is_text(content_type):
                return {"type": "string"}
            annotation = bytes
        if annotation in (bytes, bytearray):
            return {
                "type": "string",
                "format": "binary",
                "description": f"raw bytes ({content_type}), passed on as they are",
            }
        return self.schema(annotation)

    def schema(self, annotation: Any) -> Schema:
        """The schema of a value annotated ``annotation`` inside a JSON payload."""
        try:
            return self._schema(annotation)
        except RecursionError:
            return _any(f"{_spell(annotation)}: nested too deeply to describe; any value")
        except Exception as exc:  # an annotation no rule expected: described, never raised
            return _any(f"{_spell(annotation)}: cannot describe it ({exc}); any value")

    def label(self, annotation: Any) -> str:
        """A component key naming ``annotation``: its component name for a named type,
        else its spelling (``list_Order``, ``str``, ``Any``)."""
        name = self._names.get(annotation)
        if name is not None:
            return name
        return component_key(_spell(annotation).replace(" | ", "_or_").replace(", ", "_"))

    # ------------------------------------------------------------------ the mapping

    def _schema(self, tp: Any) -> Schema:
        if tp is typing.Any or tp is object:
            return {}
        if isinstance(tp, typing.TypeVar):
            return _any(f"type variable {tp.__name__}: any value")
        if isinstance(tp, typing.NewType):
            return self._schema(tp.__supertype__)
        simple = _SIMPLE.get(tp)
        if simple is not None:
            return dict(simple)
        if tp in (bytes, bytearray):
            return _any("bytes: eventbinder's JSON codec cannot write them inside JSON")
        if _is_named(tp):
            return {"$ref": f"#/components/schemas/{self._named(tp)}"}
        origin = typing.get_origin(tp)
        args = typing.get_args(tp)
        if origin is typing.Annotated or origin in (typing.Required, typing.NotRequired):
            return self._schema(args[0])
        if origin in (typing.Union, types.UnionType):
            return _merge_union([self._schema(arg) for arg in args])
        if origin is typing.Literal:
            return self._literal(args)
        if tp in _ARRAYS or origin in _ARRAYS:
            schema: Schema = {"type": "array"}
            if args:
                schema["items"] = self._schema(args[0])
            if (origin or tp) in (set, frozenset):
                schema["uniqueItems"] = True
            return schema
        if tp is tuple or origin is tuple:
            return self._tuple(args)
        if tp in _OBJECTS or origin in _OBJECTS:
            schema = {"type": "object"}
            if len(args) == 2 and args[1] is not typing.Any:
                schema["additionalProperties"] = self._schema(args[1])
            return schema
        if isinstance(tp, type) and issubclass(tp, tuple) and hasattr(tp, "_fields"):
            return self._namedtuple(tp)
        if isinstance(tp, str | typing.ForwardRef):
            return _any(f"unresolved annotation {_spell(tp)!s}: any value")
        return _any(
            f"{_spell(tp)}: not a type eventbinder describes (dataclass, TypedDict, "
            "pydantic model, str, int, float, bool, list, dict, ...); any JSON value"
        )

    def _literal(self, values: tuple[Any, ...], *, const: bool = True) -> Schema:
        plain = []
        for value in values:
            ok, scalar = _scalar(value)
            if not ok:
                return _any(f"Literal/Enum value {value!r} is not a JSON scalar; any value")
            plain.append(scalar)
        schema: Schema = {"const": plain[0]} if const and len(plain) == 1 else {"enum": plain}
        kinds = {_SIMPLE[type(value)]["type"] for value in plain}
        if len(kinds) == 1:
            schema["type"] = kinds.pop()
        return schema

    def _tuple(self, args: tuple[Any, ...]) -> Schema:
        if not args:
            return {"type": "array"}
        if len(args) == 2 and args[1] is Ellipsis:
            return {"type": "array", "items": self._schema(args[0])}
        if args == ((),):  # tuple[()]
            return {"type": "array", "maxItems": 0}
        items = [self._schema(arg) for arg in args]
        return {
            "type": "array",
            "items": items,
            "additionalItems": False,
            "minItems": len(items),
            "maxItems": len(items),
        }

    def _namedtuple(self, cls: type) -> Schema:
        hints = self._hints(cls)
        fields: tuple[str, ...] = getattr(cls, "_fields", ())
        if isinstance(hints, str):
            return {"type": "array", "title": cls.__name__, "description": hints}
        items = [self._schema(hints.get(name, typing.Any)) for name in fields]
        schema: Schema = {"type": "array", "title": cls.__name__, "minItems": len(items)}
        if items:
            schema.update(items=items, additionalItems=False, maxItems=len(items))
        return schema

    # ------------------------------------------------------------------ named types

    def _new_name(self, cls: type) -> str:
        for candidate in (cls.__name__, f"{cls.__module__}.{cls.__qualname__}"):
            key = component_key(candidate)
            if key not in self.components:
                return key
        return self._unused(component_key(f"{cls.__module__}.{cls.__qualname__}"))

    def _named(self, cls: type) -> str:
        known = self._names.get(cls)
        if known is not None:
            return known
        if _is_pydantic(cls):
            return self._pydantic(cls)
        if issubclass(cls, enum.Enum):
            return self._enum(cls)
        name = self._new_name(cls)
        self._names[cls] = name
        self.components[name] = {}  # reserved: a recursive type refers to itself
        schema = self._typeddict(cls) if typing.is_typeddict(cls) else self._dataclass(cls)
        doc = _own_doc(cls)
        if doc:
            schema = {"title": schema.pop("title"), "description": doc, **schema}
        self.components[name] = schema
        return name

    def _enum(self, cls: type[enum.Enum]) -> str:
        """An enum: its values, written as pydantic writes them (so that the component
        pydantic made for the same enum is reused)."""
        schema = {**self._literal(tuple(cls), const=False), "title": cls.__name__}
        doc = _own_doc(cls)
        if doc:
            schema["description"] = doc
        name = component_key(cls.__name__)
        if self.components.get(name, schema) != schema:
            name = self._new_name(cls)
        self._names[cls] = name
        self.components[name] = schema
        return name

    @staticmethod
    def _hints(cls: type, extras: bool = False) -> dict[str, Any] | str:
        """The resolved annotations of ``cls``, or a sentence saying why not."""
        try:
            return typing.get_type_hints(cls, include_extras=extras)
        except Exception as exc:  # a forward reference that does not resolve, ...
            return (
                f"cannot resolve the annotations of {cls.__qualname__} "
                f"({type(exc).__name__}: {exc}); its fields are not described"
            )

    def _dataclass(self, cls: type) -> Schema:
        schema: Schema = {"type": "object", "title": cls.__name__}
        hints = self._hints(cls)
        if isinstance(hints, str):
            schema["description"] = hints
            return schema
        properties: dict[str, Schema] = {}
        required: list[str] = []
        for item in dataclasses.fields(cls):
            prop = self._schema(hints.get(item.name, typing.Any))
            if item.default is not dataclasses.MISSING:
                shown, value = _scalar(item.default)
                if shown and "$ref" not in prop:
                    prop["default"] = value
            elif item.default_factory is dataclasses.MISSING and item.init:
                required.append(item.name)
            description = item.metadata.get("description")
            if isinstance(description, str) and "$ref" not in prop:
                prop["description"] = description
            properties[item.name] = prop
        schema["properties"] = properties
        if required:
            schema["required"] = required
        return schema

    def _typeddict(self, cls: type) -> Schema:
        schema: Schema = {"type": "object", "title": cls.__name__}
        hints = self._hints(cls, extras=True)
        if isinstance(hints, str):
            schema["description"] = hints
            return schema
        required = set(getattr(cls, "__required_keys__", ()))
        properties: dict[str, Schema] = {}
        for key, hint in hints.items():
            origin = typing.get_origin(hint)
            if origin is typing.NotRequired:
                required.discard(key)
            elif origin is typing.Required:
                required.add(key)
            properties[key] = self._schema(hint)
        schema["properties"] = properties
        listed = [key for key in properties if key in required]
        if listed:
            schema["required"] = listed
        return schema

    def _unused(self, key: str) -> str:
        number = 2
        while f"{key}_{number}" in self.components:
            number += 1
        return f"{key}_{number}"

    def _pydantic(self, cls: type) -> str:
        """A pydantic v2 model: its own schema, the models it refers to as components
        (renamed where a different schema has the name already)."""
        described = model_schema(cls)
        if isinstance(described, str):
            name = self._names[cls] = self._new_name(cls)
            self.components[name] = _any(described)
            return name
        schema, defs = described
        renamed: dict[str, str] = {}
        for def_name, definition in defs.items():
            key = component_key(def_name)
            if self.components.get(key, definition) != definition:
                key = self._unused(key)
            renamed[def_name] = key
        for def_name, key in renamed.items():
            self.components[key] = rename_refs(defs[def_name], renamed)
        schema = rename_refs(schema, renamed)
        if set(schema) == {"$ref"}:  # a recursive model: pydantic describes it in $defs
            name = str(schema["$ref"]).rsplit("/", 1)[1]
        else:
            name = component_key(cls.__name__)
            if self.components.get(name, schema) != schema:
                name = self._new_name(cls)
            self.components[name] = schema
        self._names[cls] = name
        return name
