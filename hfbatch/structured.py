"""Structured output: the `response_format` a job asks for, and checking every reply against it.

`--response-format json` sends `{"type": "json_object"}` and takes any reply that parses as a
JSON object. `--response-format SCHEMA.json` sends the schema as
`{"type": "json_schema", "json_schema": {"name", "schema", "strict": true}}` and takes a reply
only if it parses as JSON valid against the schema. A reply that fails is an
`InvalidOutputError` (retried like a 5xx); its text is never written as a result.

The schema is checked by `jsonschema` when that package is installed (`pip install
'hfbatch[jsonschema]'`: every keyword of every draft), else by hfbatch's own checker
(`hfbatch.schema`: types, required keys, enums, nested objects and arrays, and the rest of
the subset structured-output schemas use).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable
from itertools import islice
from pathlib import Path
from typing import Any

from hfbatch.errors import JobSpecError
from hfbatch.schema import schema_errors

__all__ = ["JSON_OBJECT", "OutputCheck", "check_for", "load_response_format"]

JSON_OBJECT: dict[str, Any] = {"type": "json_object"}
# Schema names may hold letters, digits, _ and - (at most 64), as OpenAI-compatible servers require.
_NAME_CHARS = re.compile(r"[^A-Za-z0-9_-]+")
_MAX_NAME = 64
_SHOWN_ERRORS = 3
_CACHED_CHECKS = 64


def _schema_name(spec: dict[str, Any], path: Path) -> str:
    raw = spec.get("title") if isinstance(spec.get("title"), str) else path.stem
    return (_NAME_CHARS.sub("_", str(raw)).strip("_") or "output")[:_MAX_NAME]


def load_response_format(value: str) -> dict[str, Any]:
    """The `response_format` to send for `json` or a schema file; JobSpecError when the file is unusable.

    The file holds a JSON Schema, or OpenAI's `json_schema` object (`{"name", "schema", "strict"}`),
    or a whole `response_format`. It is read once while it stays the same.
    """
    if value == "json":
        return dict(JSON_OBJECT)
    try:
        st = Path(value).stat()
        version: tuple[int, int] = (st.st_mtime_ns, st.st_size)
    except OSError:
        version = (0, 0)  # _load says why it cannot be read
    return _load(value, version)


@functools.lru_cache(maxsize=8)
def _load(value: str, version: tuple[int, int]) -> dict[str, Any]:
    path = Path(value)
    where = f"key 'response_format': {path}"
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise JobSpecError(f"{where}: no such file; give a JSON Schema file, or 'json' for any JSON object") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise JobSpecError(f"{where}: cannot be read ({exc})") from None
    except ValueError as exc:
        raise JobSpecError(f"{where}: is not JSON ({exc}); give a JSON Schema file") from None
    if not isinstance(spec, dict):
        raise JobSpecError(f"{where}: a JSON Schema is an object, this file holds {type(spec).__name__}")
    if spec.get("type") == "json_schema" and isinstance(spec.get("json_schema"), dict):
        spec = spec["json_schema"]  # a whole response_format
    if isinstance(spec.get("schema"), dict) and "name" in spec:
        wire = {"name": str(spec["name"]), "schema": spec["schema"], "strict": spec.get("strict", True)}
    else:
        wire = {"name": _schema_name(spec, path), "schema": spec, "strict": True}
    problem = _schema_problem(wire["schema"])
    if problem is not None:
        raise JobSpecError(f"{where}: is not a valid JSON Schema ({problem})")
    return {"type": "json_schema", "json_schema": wire}


def _schema_problem(schema: Any) -> str | None:
    """What makes `schema` unusable as a schema, or None."""
    try:
        import jsonschema
    except ImportError:
        return None if isinstance(schema, dict) else "not an object"
    try:
        jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator).check_schema(schema)
    except jsonschema.SchemaError as exc:
        return " ".join(str(exc.message).split())[:200]
    return None


def _validator(schema: Any) -> Callable[[Any], list[str]]:
    """A function listing what is wrong with an instance: jsonschema's when installed, else hfbatch's own."""
    try:
        import jsonschema
    except ImportError:
        return lambda instance: schema_errors(instance, schema)
    try:
        cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
        checker = cls(schema)
    except (jsonschema.SchemaError, TypeError):
        return lambda instance: schema_errors(instance, schema)

    def errors(instance: Any) -> list[str]:
        return [
            f"{'$' + ''.join(f'[{p}]' if isinstance(p, int) else f'.{p}' for p in e.absolute_path)}: {e.message}"
            for e in islice(checker.iter_errors(instance), _SHOWN_ERRORS)
        ]

    return errors


class OutputCheck:
    """Checks a reply's text against one `response_format`: it must be JSON, and valid under the schema."""

    __slots__ = ("_errors", "_object_only")

    def __init__(self, response_format: dict[str, Any]) -> None:
        spec = response_format.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        self._object_only = response_format.get("type") == "json_object"
        self._errors = _validator(schema) if schema is not None else None

    def problem(self, text: str) -> str | None:
        """Why `text` is not an acceptable reply, or None when it is."""
        try:
            value = json.loads(text)
        except RecursionError:
            return "the reply is JSON nested too deeply to read"
        except json.JSONDecodeError as exc:
            return f"the reply is not JSON ({exc.msg} at character {exc.pos} of {len(text)})"
        except ValueError as exc:
            return f"the reply is not JSON ({exc})"
        if self._object_only and not isinstance(value, dict):
            return f"the reply is JSON but not an object ({type(value).__name__})"
        if self._errors is not None:
            errors = self._errors(value)
            if errors:
                return "the reply breaks the schema: " + "; ".join(errors[:_SHOWN_ERRORS])
        return None


_checks: dict[str, OutputCheck | None] = {}


def check_for(response_format: Any) -> OutputCheck | None:
    """The check for a request's `response_format` (None when it asks for plain text); cached per format."""
    if not isinstance(response_format, dict) or response_format.get("type") not in ("json_object", "json_schema"):
        return None
    try:
        key = json.dumps(response_format, sort_keys=True)
    except (TypeError, ValueError, RecursionError):
        return OutputCheck(response_format)
    check = _checks.get(key)
    if check is None:
        if len(_checks) >= _CACHED_CHECKS:
            _checks.clear()  # rows with ever-new schemas: keep memory bounded
        check = _checks[key] = OutputCheck(response_format)
    return check
