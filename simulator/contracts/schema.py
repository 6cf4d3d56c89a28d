"""Building blocks of the message schemas: strict objects, nullable values, the common field types.

Every schema here is plain JSON Schema that means the same in draft 2020-12 (the published files)
and in draft-07 (what an AsyncAPI document's default schema format builds on): no ``$ref``, no
``$defs``, no keyword the two drafts read differently.  Objects are strict: every field listed,
every field required (a field a message may lack is nullable instead), nothing else allowed.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

Schema = dict[str, Any]
DRAFT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_BASE = "urn:factorysim:schema:"  # the $id prefix of the published files

NUMBER: Schema = {"type": "number"}
COUNT: Schema = {"type": "integer", "minimum": 0}
SECONDS: Schema = {"type": "number", "minimum": 0}
RATIO: Schema = {"type": "number", "minimum": 0, "maximum": 1}
BOOLEAN: Schema = {"type": "boolean"}
TEXT: Schema = {"type": "string"}
UTC_INSTANT: Schema = {"type": "string", "format": "date-time", "pattern": "Z$",
                       "description": "UTC, millisecond precision, 'Z'"}
LOCAL_INSTANT: Schema = {"type": "string", "format": "date-time",
                         "description": "the location's local time with its UTC offset, millisecond precision"}
UUID: Schema = {"type": "string", "format": "uuid"}


def described(schema: Schema, description: str) -> Schema:
    return {**copy.deepcopy(schema), "description": description}


def nullable(schema: Schema) -> Schema:
    """``schema`` or null (a value a message may not know)."""
    schema = copy.deepcopy(schema)
    if "enum" in schema:
        values = list(schema["enum"])
        return {**schema, "enum": values if None in values else [*values, None]}
    if "const" in schema:
        const = schema.pop("const")
        return {**schema, "enum": [const, None]}
    kind = schema.get("type")
    if isinstance(kind, str):
        return {**schema, "type": [kind, "null"]}
    if isinstance(kind, list):
        return {**schema, "type": kind if "null" in kind else [*kind, "null"]}
    return {"anyOf": [schema, {"type": "null"}]}


def enum(values: Iterable[Any], description: str | None = None) -> Schema:
    schema: Schema = {"enum": list(dict.fromkeys(values))}
    if description:
        schema["description"] = description
    return schema


def const(value: Any, description: str | None = None) -> Schema:
    schema: Schema = {"const": value}
    if description:
        schema["description"] = description
    return schema


def strict(properties: Mapping[str, Schema], *, title: str | None = None, description: str | None = None,
           optional: Iterable[str] = ()) -> Schema:
    """An object of exactly ``properties`` (in that order), each required but those in ``optional``."""
    left_out = set(optional)
    schema: Schema = {"type": "object"}
    if title:
        schema["title"] = title
    if description:
        schema["description"] = description
    schema["properties"] = {name: copy.deepcopy(value) for name, value in properties.items()}
    schema["required"] = [name for name in properties if name not in left_out]
    schema["additionalProperties"] = False
    return schema


def one_of(schemas: list[Schema], description: str | None = None) -> Schema:
    """One of ``schemas`` (itself when there is one)."""
    if len(schemas) == 1:
        schema = copy.deepcopy(schemas[0])
        if description:
            schema["description"] = description
        return schema
    combined: Schema = {"oneOf": copy.deepcopy(schemas)}
    if description:
        combined["description"] = description
    return combined


def standalone(schema: Schema, name: str) -> Schema:
    """``schema`` as a file of its own: with ``$schema`` (draft 2020-12) and ``$id``."""
    return {"$schema": DRAFT, "$id": f"{SCHEMA_BASE}{name}", **copy.deepcopy(schema)}
