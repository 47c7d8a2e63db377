"""Deterministic JSON instances of a JSON Schema, schema-breaking variants, and a small checker.

Covers the subset structured-output requests use: `type` (one or a list), `properties`,
`required`, `enum`, `const`, `items`/`prefixItems`, `minItems`/`maxItems`, `minimum`/`maximum`
(and the exclusive forms), `minLength`/`maxLength`, `anyOf`/`oneOf`/`allOf`, and local `$ref`s
(`#/$defs/...`, `#/definitions/...`). Other keywords (`pattern`, `format`, `multipleOf`,
`additionalProperties`...) are ignored: instances never carry undeclared properties.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from typing import Any

__all__ = ["instance_for", "schema_errors", "violate"]

# Recursive schemas (a tree of $refs) stop growing here: only required keys, empty arrays.
_MAX_DEPTH = 6
_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
}


def _list(schema: Mapping[str, Any], key: str) -> list[Any]:
    value = schema.get(key)
    return value if isinstance(value, list) else []


def _map(schema: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = schema.get(key)
    return value if isinstance(value, Mapping) else {}


def _pointer(root: Any, ref: str) -> Any:
    """What a local `$ref` like `#/$defs/Item` points at ({} when nothing)."""
    target = root
    for part in ref[2:].split("/"):
        key = part.replace("~1", "/").replace("~0", "~")
        target = target.get(key, {}) if isinstance(target, Mapping) else {}
    return target


def _resolve(schema: Any, root: Any) -> Any:
    """Follow local `$ref`s (and merge `allOf`) until a plain schema is left."""
    for _ in range(32):
        if not isinstance(schema, Mapping):
            return schema
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/"):
            target: Any = root
            for part in ref[2:].split("/"):
                target = (
                    target.get(part.replace("~1", "/").replace("~0", "~"), {}) if isinstance(target, Mapping) else {}
                )
            rest = {k: v for k, v in schema.items() if k != "$ref"}
            schema = {**target, **rest} if isinstance(target, Mapping) else rest
            continue
        if isinstance(schema.get("allOf"), list):
            merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
            for part in schema["allOf"]:
                part = _resolve(part, root)
                if isinstance(part, Mapping):
                    merged = {**part, **merged}
            schema = merged
            continue
        return schema
    return schema


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


def _number(schema: Mapping[str, Any], key: str) -> float | None:
    value = schema.get(key)
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


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


def _in_range(schema: Mapping[str, Any], value: float) -> bool:
    low, low_strict = _number(schema, "minimum"), _number(schema, "exclusiveMinimum")
    high, high_strict = _number(schema, "maximum"), _number(schema, "exclusiveMaximum")
    return (
        (low is None or value >= low)
        and (low_strict is None or value > low_strict)
        and (high is None or value <= high)
        and (high_strict is None or value < high_strict)
    )


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


def _matches(instance: Any, kind: str) -> bool:
    if kind in ("integer", "number") and isinstance(instance, bool):
        return False
    if kind == "integer" and isinstance(instance, float):
        return instance.is_integer()
    return isinstance(instance, _TYPES.get(kind, (object,)))


def _errors(instance: Any, schema: Any, root: Any, path: str) -> list[str]:
    schema = _resolve(schema, root)
    if not isinstance(schema, Mapping):
        return [] if schema is not False else [f"{path}: nothing is allowed"]
    where = path or "$"
    if "const" in schema and instance != schema["const"]:
        return [f"{where}: expected {schema['const']!r}"]
    if isinstance(schema.get("enum"), list) and instance not in schema["enum"]:
        return [f"{where}: {instance!r} is not one of {schema['enum']!r}"]
    for key in ("anyOf", "oneOf"):
        options = schema.get(key)
        if isinstance(options, list) and options and all(_errors(instance, o, root, path) for o in options):
            return [f"{where}: matches none of {key}"]
    declared = schema.get("type")
    if declared is not None:
        kinds = declared if isinstance(declared, list) else [declared]
        if not any(_matches(instance, k) for k in kinds):
            return [f"{where}: expected {' or '.join(map(str, kinds))}, got {type(instance).__name__}"]
    found: list[str] = []
    if isinstance(instance, dict):
        for key in _list(schema, "required"):
            if key not in instance:
                found.append(f"{where}: missing required key {key!r}")
        for key, sub in _map(schema, "properties").items():
            if key in instance:
                found += _errors(instance[key], sub, root, f"{path}.{key}" if path else key)
    if isinstance(instance, list):
        if isinstance(schema.get("minItems"), int) and len(instance) < schema["minItems"]:
            found.append(f"{where}: fewer than {schema['minItems']} items")
        if isinstance(schema.get("maxItems"), int) and len(instance) > schema["maxItems"]:
            found.append(f"{where}: more than {schema['maxItems']} items")
        prefix = _list(schema, "prefixItems")
        for i, item in enumerate(instance):
            sub = prefix[i] if i < len(prefix) else schema.get("items", True)
            found += _errors(item, sub, root, f"{path}[{i}]")
    if isinstance(instance, int | float) and not isinstance(instance, bool):
        if not _in_range(schema, instance):
            found.append(f"{where}: {instance} is out of range")
    if isinstance(instance, str):
        if isinstance(schema.get("minLength"), int) and len(instance) < schema["minLength"]:
            found.append(f"{where}: shorter than {schema['minLength']}")
        if isinstance(schema.get("maxLength"), int) and len(instance) > schema["maxLength"]:
            found.append(f"{where}: longer than {schema['maxLength']}")
    return found


def schema_errors(instance: Any, schema: Any) -> list[str]:
    """What is wrong with `instance` under `schema` (the subset above); empty when it is valid."""
    return _errors(instance, schema, schema, "")
