"""Pydantic v2 models' own JSON Schemas, adapted to the AsyncAPI Schema Object.

``model_json_schema()`` writes Draft 2020-12 with OpenAPI touches; AsyncAPI 3.0's
Schema Object is a superset of Draft 7.  :func:`model_schema` asks pydantic (never
importing it: a model is anything with ``model_json_schema``) for references into
``#/components/schemas/``, and adapts: ``prefixItems`` (a tuple) becomes Draft 7's
``items`` list, and OpenAPI's ``discriminator`` object (AsyncAPI's is a property name
with other rules) is dropped, the ``oneOf`` it annotated staying.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["REF_PREFIX", "model_schema", "rename_refs", "walk_schema"]

#: Where a document's schema components live.
REF_PREFIX = "#/components/schemas/"

Schema = dict[str, Any]

#: Keywords whose value is a schema or a list of schemas, and those mapping names to one.
_NESTED = (
    *("not", "additionalProperties", "additionalItems", "contains", "propertyNames"),
    *("if", "then", "else", "items", "prefixItems", "allOf", "anyOf", "oneOf"),
)
_NAMED = ("properties", "patternProperties", "definitions", "$defs")


def walk_schema(schema: Any, visit: Callable[[Schema], None]) -> None:
    """Call ``visit`` on ``schema`` and every schema nested in it, through the keywords
    that hold schemas (never through ``properties`` names, ``enum`` or ``default``
    values)."""
    if not isinstance(schema, dict):
        return
    visit(schema)
    for keyword in _NAMED:
        children = schema.get(keyword)
        if isinstance(children, dict):
            for child in children.values():
                walk_schema(child, visit)
    for keyword in _NESTED:
        child = schema.get(keyword)
        for item in child if isinstance(child, list) else [child]:
            walk_schema(item, visit)


def _to_draft7(node: Schema) -> None:
    if "prefixItems" in node:
        rest = node.pop("items", None)
        node["items"] = node.pop("prefixItems")
        node["additionalItems"] = rest if rest is not None else False
    if isinstance(node.get("discriminator"), dict):
        del node["discriminator"]


def model_schema(model: type) -> tuple[Schema, dict[str, Schema]] | str:
    """``(schema, definitions)`` of a pydantic model, both adapted to Draft 7, with
    references to the definitions as ``#/components/schemas/<name>``; or, when pydantic
    cannot describe the model, a sentence saying why."""
    describe = model.model_json_schema  # type: ignore[attr-defined]
    try:
        raw = dict(describe(ref_template=REF_PREFIX + "{model}"))
    except Exception as exc:  # pydantic refuses some types (PydanticInvalidForJsonSchema)
        return (
            f"pydantic cannot describe {model.__qualname__} ({type(exc).__name__}: {exc}); "
            "any value"
        )
    definitions: dict[str, Schema] = raw.pop("$defs", None) or {}
    for schema in (raw, *definitions.values()):
        walk_schema(schema, _to_draft7)
    return raw, definitions


def rename_refs(schema: Schema, names: Mapping[str, str]) -> Schema:
    """A copy of ``schema`` whose references to ``#/components/schemas/<old>`` point at
    ``names[old]`` instead."""
    refs = {REF_PREFIX + old: REF_PREFIX + new for old, new in names.items() if old != new}
    renamed = copy.deepcopy(schema)
    if refs:

        def visit(node: Schema) -> None:
            ref = node.get("$ref")
            if isinstance(ref, str) and ref in refs:
                node["$ref"] = refs[ref]

        walk_schema(renamed, visit)
    return renamed
