"""A small JSON Schema checker: the subset structured-output requests use, with no dependency.

Covers `type` (one or a list), `properties`, `required`, `additionalProperties` (false or a
schema), `enum`, `const`, `items`/`prefixItems`, `minItems`/`maxItems`, `minimum`/`maximum` (and
the exclusive forms), `minLength`/`maxLength`, `pattern`, `anyOf`/`oneOf`/`allOf`, and local
`$ref`s (`#/$defs/...`, `#/definitions/...`). Other keywords (`format`, `multipleOf`,
`patternProperties`...) are not checked. `hfbatch.structured` uses the `jsonschema` package
instead when it is installed; the simulator (`hfbatch.sim.schema`) builds on these helpers.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any

__all__ = ["as_list", "as_map", "in_range", "number", "resolve", "schema_errors"]

_MAX_REF_HOPS = 32
_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
}


def as_list(schema: Mapping[str, Any], key: str) -> list[Any]:
    """`schema[key]` when it is a list, else []."""
    value = schema.get(key)
    return value if isinstance(value, list) else []


def as_map(schema: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    """`schema[key]` when it is an object, else {}."""
    value = schema.get(key)
    return value if isinstance(value, Mapping) else {}


def number(schema: Mapping[str, Any], key: str) -> float | None:
    """`schema[key]` when it is a number (not a boolean), else None."""
    value = schema.get(key)
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


def resolve(schema: Any, root: Any) -> Any:
    """Follow local `$ref`s (and merge `allOf`) until a plain schema is left."""
    for _ in range(_MAX_REF_HOPS):
        if not isinstance(schema, Mapping):
            return schema
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/"):
            target: Any = root
            for part in ref[2:].split("/"):
                key = part.replace("~1", "/").replace("~0", "~")
                target = target.get(key, {}) if isinstance(target, Mapping) else {}
            rest = {k: v for k, v in schema.items() if k != "$ref"}
            schema = {**target, **rest} if isinstance(target, Mapping) else rest
            continue
        if isinstance(schema.get("allOf"), list):
            merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
            for part in schema["allOf"]:
                part = resolve(part, root)
                if isinstance(part, Mapping):
                    merged = {**part, **merged}
            schema = merged
            continue
        return schema
    return schema


def in_range(schema: Mapping[str, Any], value: float) -> bool:
    """Whether `value` is within the schema's minimum/maximum (exclusive forms too)."""
    low, low_strict = number(schema, "minimum"), number(schema, "exclusiveMinimum")
    high, high_strict = number(schema, "maximum"), number(schema, "exclusiveMaximum")
    return (
        (low is None or value >= low)
        and (low_strict is None or value > low_strict)
        and (high is None or value <= high)
        and (high_strict is None or value < high_strict)
    )


def _matches(instance: Any, kind: str) -> bool:
    if kind in ("integer", "number") and isinstance(instance, bool):
        return False
    if kind == "integer" and isinstance(instance, float):
        return instance.is_integer()
    return isinstance(instance, _TYPES.get(kind, (object,)))


@functools.lru_cache(maxsize=256)
def _pattern(text: str) -> re.Pattern[str] | None:
    try:
        return re.compile(text)
    except re.error:
        return None  # a pattern Python cannot read is not held against the reply


def _object_errors(instance: dict[str, Any], schema: Mapping[str, Any], root: Any, path: str) -> list[str]:
    where = path or "$"
    found = [f"{where}: missing required key {key!r}" for key in as_list(schema, "required") if key not in instance]
    props = as_map(schema, "properties")
    extra = schema.get("additionalProperties", True)
    for key, value in instance.items():
        sub = props.get(key)
        at = f"{path}.{key}" if path else str(key)
        if sub is not None:
            found += _errors(value, sub, root, at)
        elif extra is False:
            found.append(f"{where}: unexpected key {key!r}")
        elif isinstance(extra, Mapping):
            found += _errors(value, extra, root, at)
    return found


def _errors(instance: Any, schema: Any, root: Any, path: str) -> list[str]:
    schema = resolve(schema, root)
    if not isinstance(schema, Mapping):
        return [] if schema is not False else [f"{path or '$'}: nothing is allowed"]
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
        found += _object_errors(instance, schema, root, path)
    elif isinstance(instance, list):
        if isinstance(schema.get("minItems"), int) and len(instance) < schema["minItems"]:
            found.append(f"{where}: fewer than {schema['minItems']} items")
        if isinstance(schema.get("maxItems"), int) and len(instance) > schema["maxItems"]:
            found.append(f"{where}: more than {schema['maxItems']} items")
        prefix = as_list(schema, "prefixItems")
        for i, item in enumerate(instance):
            sub = prefix[i] if i < len(prefix) else schema.get("items", True)
            found += _errors(item, sub, root, f"{path}[{i}]")
    elif isinstance(instance, int | float) and not isinstance(instance, bool):
        if not in_range(schema, instance):
            found.append(f"{where}: {instance} is out of range")
    elif isinstance(instance, str):
        if isinstance(schema.get("minLength"), int) and len(instance) < schema["minLength"]:
            found.append(f"{where}: shorter than {schema['minLength']}")
        if isinstance(schema.get("maxLength"), int) and len(instance) > schema["maxLength"]:
            found.append(f"{where}: longer than {schema['maxLength']}")
        pattern = schema.get("pattern")
        if isinstance(pattern, str) and (compiled := _pattern(pattern)) is not None and not compiled.search(instance):
            found.append(f"{where}: does not match {pattern!r}")
    return found


def schema_errors(instance: Any, schema: Any) -> list[str]:
    """What is wrong with `instance` under `schema` (the subset above); empty when it is valid."""
    return _errors(instance, schema, schema, "")
