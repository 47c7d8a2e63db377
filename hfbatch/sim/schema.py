"""Deterministic JSON instances of a JSON Schema, and schema-breaking variants, for the simulator.

Generates for the subset structured-output requests use: `type` (one or a list), `properties`,
`required`, `enum`, `const`, `items`/`prefixItems`, `minItems`/`maxItems`, `minimum`/`maximum`
(and the exclusive forms), `minLength`/`maxLength`, `anyOf`/`oneOf`/`allOf`, and local `$ref`s.
Instances never carry undeclared properties. Checking is the library's (`hfbatch.schema`):
the simulator depends on the library, never the reverse.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from typing import Any

from hfbatch.schema import as_list as _list
from hfbatch.schema import as_map as _map
from hfbatch.schema import number as _number
from hfbatch.schema import resolve as _resolve
from hfbatch.schema import schema_errors

__all__ = ["instance_for", "schema_errors", "violate"]

# Recursive schemas (a tree of $refs) stop growing here: only required keys, empty arrays.
_MAX_DEPTH = 6


def _type_of(schema: Mapping[str, Any]) -> str:
    declared = schema.get("type")
    if isinstance(declared, list):
        declared = next((t for t in declared if t != "null"), "null")
    if isinstance(declared, str):
        return declared
    if "properties" in schema or "required" in schema:
        return "object"
    if "items" in schema or "prefixItems" in schema:
        return "array"
    return "string"


def _bounds(schema: Mapping[str, Any], step: float) -> tuple[float, float]:
    """The closed range a generated number is drawn from (exclusive bounds moved in by `step`)."""
    low = _number(schema, "minimum")
    if (bound := _number(schema, "exclusiveMinimum")) is not None:
        low = bound + step
    high = _number(schema, "maximum")
    if (bound := _number(schema, "exclusiveMaximum")) is not None:
        high = bound - step
    if low is None:
        low = 0.0 if high is None or high >= 0 else high - 100
    if high is None:
        high = low + 100
    return low, max(low, high)


def _generate(schema: Any, root: Any, rng: random.Random, label: str, depth: int) -> Any:
    schema = _resolve(schema, root)
    if not isinstance(schema, Mapping):
        return f"{label}-{rng.randrange(16**6):06x}"  # `true` accepts anything
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return rng.choice(schema["enum"])
    for key in ("anyOf", "oneOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            plain = [o for o in options if not (isinstance(o, Mapping) and o.get("type") == "null")]
            return _generate((plain or options)[0], root, rng, label, depth)
    kind = _type_of(schema)
    if kind == "object":
        props = _map(schema, "properties")
        required = _list(schema, "required")
        keys = [k for k in props if depth < _MAX_DEPTH or k in required]
        return {k: _generate(props[k], root, rng, k, depth + 1) for k in keys}
    if kind == "array":
        prefix = _list(schema, "prefixItems")
        low = schema["minItems"] if isinstance(schema.get("minItems"), int) else 0
        high = schema.get("maxItems") if isinstance(schema.get("maxItems"), int) else None
        size = max(low, len(prefix), 0 if depth >= _MAX_DEPTH else 2)
        size = min(size, high) if high is not None else size
        items = schema.get("items", {})
        return [
            _generate(prefix[i] if i < len(prefix) else items, root, rng, f"{label}{i}", depth + 1) for i in range(size)
        ]
    if kind == "integer":
        low, high = _bounds(schema, 1)
        return rng.randint(math.ceil(low), max(math.ceil(low), math.floor(high)))
    if kind == "number":
        low, high = _bounds(schema, 0.01)
        value = round(rng.uniform(low, high), 2)
        return value if low <= value <= high else low
    if kind == "boolean":
        return rng.random() < 0.5
    if kind == "null":
        return None
    text = f"{label}-{rng.randrange(16**6):06x}"
    if isinstance(schema.get("minLength"), int) and len(text) < schema["minLength"]:
        text += "x" * (schema["minLength"] - len(text))
    if isinstance(schema.get("maxLength"), int):
        text = text[: schema["maxLength"]]
    return text


def instance_for(schema: Any, seed: str) -> Any:
    """A JSON value valid against `schema`, the same for the same schema and seed."""
    return _generate(schema, schema, random.Random(seed), "value", 0)


def violate(instance: Any, schema: Any) -> Any:
    """A JSON value close to `instance` that `schema` rejects: a required key dropped, else a wrong type."""
    resolved = _resolve(schema, schema)
    if isinstance(resolved, Mapping) and isinstance(instance, dict):
        required = resolved.get("required")
        if isinstance(required, list) and required and required[0] in instance:
            return {k: v for k, v in instance.items() if k != required[0]}
    wrong: Any = 12345 if isinstance(instance, str) else "not the expected type"
    if not schema_errors(wrong, schema):
        wrong = [wrong]
    return wrong
