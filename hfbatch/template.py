"""Prompt templates: `str.format` over a row's fields, with defaults and readable lists.

- `{field}` inserts the field; numbers take format specs as in `str.format` (`{score:.2f}`),
  and `{{`, `}}` are literal braces.
- `{field[key]}` and `{field[0]}` reach into an object or a list.
- A list is inserted as its items, one per line (items that are not strings as JSON); an
  object as JSON. Never as a Python repr.
- `{field|default}` inserts `default` when the row has no such field or it is null;
  `{field|}` inserts nothing then. A default cannot hold `:`, `!`, `{` or `}`.

A field with no default that a row lacks, or holds null, makes that row a bad row.
Rendering runs once per row: a row whose values are plain strings and numbers takes
`str.format_map` (C speed); only lists, objects and defaults take the slower path.
"""

from __future__ import annotations

import json
import string
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["LIST_SEPARATOR", "Template", "TemplateError"]

#: What a list's items are joined with.
LIST_SEPARATOR = "\n"
_MISSING: Any = object()


class TemplateError(ValueError):
    """A row cannot fill the template; the message says why, for the bad-row reason."""


def _item_text(item: Any) -> str:
    return item if type(item) is str else json.dumps(item, ensure_ascii=False)


class _Formatter(string.Formatter):
    """`str.format` with `{field|default}`, and lists and objects written as text, not reprs."""

    def get_field(self, field_name: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
        path, sep, default = field_name.partition("|")
        if sep:
            value = kwargs.get(_base(path), None)
            if value is None:
                return default, path
        return super().get_field(path, args, kwargs)

    def format_field(self, value: Any, format_spec: str) -> Any:
        if type(value) is list:
            value = LIST_SEPARATOR.join(_item_text(v) for v in value)
        elif type(value) is dict:
            value = json.dumps(value, ensure_ascii=False)
        return format(value, format_spec)


_FORMATTER = _Formatter()


def _base(path: str) -> str:
    """The row field a field path reads: "a" for "a", "a.b" and "a[0]"."""
    return path.split(".", 1)[0].split("[", 1)[0]


class Template:
    """A checked prompt template; `render(row)` fills it from one row."""

    __slots__ = ("_plain", "fields", "required", "text")

    def __init__(self, text: str) -> None:
        """Parse `text`; ValueError when it is not a usable template."""
        fields: list[str] = []
        required: list[str] = []
        defaults = False
        try:
            parsed = list(string.Formatter().parse(text))
        except ValueError as exc:
            raise ValueError(str(exc)) from None
        for _literal, field, _spec, conversion in parsed:
            if field is None:
                continue
            path, sep, _default = field.partition("|")
            base = _base(path)
            if not base or base.isdigit():
                raise ValueError(f"field {{{field}}} is positional; name a column, as in {{text}}")
            if conversion not in (None, "r", "s", "a"):
                raise ValueError(f"field {{{field}!{conversion}}} has an unknown conversion; use !r, !s or !a")
            defaults = defaults or bool(sep)
            if base not in fields:
                fields.append(base)
            if not sep and base not in required:
                required.append(base)
        if not fields:
            raise ValueError("it names no column; use {column} for each value to insert")
        self.text = text
        #: Every row field the template reads.
        self.fields = tuple(fields)
        #: The fields with no default: a row must have them, not null.
        self.required = tuple(required)
        self._plain = not defaults

    def render(self, row: Mapping[str, Any]) -> str:
        """The prompt for `row`; TemplateError saying why when the row cannot fill it."""
        plain = self._plain
        for field in self.fields:
            value = row.get(field, _MISSING)
            kind = type(value)
            if kind is list or kind is dict:
                plain = False
            elif value is _MISSING or value is None:
                if field not in self.required:
                    continue
                if value is _MISSING:
                    raise TemplateError(f"no '{field}' field, which the template uses; add it or change --template")
                raise TemplateError(f"'{field}' is null, and the template uses it; fill it or change --template")
        try:
            if plain:
                return self.text.format_map(row)
            return _FORMATTER.vformat(self.text, (), row)
        except (KeyError, IndexError, AttributeError, ValueError, TypeError) as exc:
            detail = " ".join(str(exc).split()) or type(exc).__name__
            raise TemplateError(f"the template cannot be filled from this row ({detail})") from None
