"""The Parquet type of each output column, chosen so that any mix of values a run produced can be written.

hfbatch's own columns have fixed types (`OWN_COLUMNS`), widened as below only if a value does
not fit them. Every other column (an input column the user kept, or an own-looking column the
table does not know yet) gets the narrowest type that holds every value it has, in the old
file and in the journal:

| values (nulls aside) | column |
| --- | --- |
| none | string (all null) |
| booleans | bool |
| integers in int64 range | int64 |
| integers within +/-2**53 and floats | float64 |
| strings | string |
| anything else: lists, objects, mixed kinds, integers past int64 (or past 2**53 beside floats) | JSON text |

A JSON-text column is a string column holding each value's JSON text (`json_text`).

Ids: int64 when every id is an integer in int64 range, string when every id is a string that
UTF-8 can carry, otherwise each id's JSON text, so `1` and `"1"` stay apart on resume. JSON-text
columns are named in the file's metadata (`JSON_COLUMNS`, `ID_ENCODING`), so readers decode them.
A lone UTF-16 surrogate (JSON allows `"\\udc80"`, UTF-8 cannot carry it) becomes U+FFFD in every
value, JSON text included; only ids keep it (as a JSON escape), so that a resume finds them.

Types only widen: a column that was JSON text stays JSON text, and an integer once in a float64
column stays a float. Choosing a type needs only the small set of *kinds* of value each column
has shown (`column_kinds`), so a survey of millions of rows keeps a few strings per column;
values are then converted chunk by chunk (`to_arrow`, and `convert` for the old file's columns).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

__all__ = [
    "BOOL",
    "FLOAT64",
    "ID_ENCODING",
    "INT64",
    "JSON_COLUMNS",
    "JSON_TEXT",
    "OWN_COLUMNS",
    "STRING",
    "STRING_LIST",
    "ColumnType",
    "arrow_kinds",
    "column_kinds",
    "convert",
    "id_kinds",
    "id_text",
    "id_type",
    "json_text",
    "kept_type",
    "own_type",
    "to_arrow",
    "value_kind",
]

#: Schema metadata: b"json" when the id column holds each id's JSON text.
ID_ENCODING = b"hfbatch.id_encoding"
#: Schema metadata: a JSON list of the other columns holding JSON text.
JSON_COLUMNS = b"hfbatch.json_columns"

# Kinds of value. Integers are split by the widest type that holds them exactly.
NULL_K = "null"  # shown by a column, not a type: the rules ignore it
BOOL_K = "bool"
INT_K = "int"  # |v| <= 2**53: exact in float64 too
WIDE_K = "wide"  # in int64, not exact in float64
HUGE_K = "huge"  # past int64
FLOAT_K = "float"
STR_K = "str"
BAD_STR_K = "bad_str"  # a string UTF-8 cannot carry (ids only: other strings get U+FFFD)
STR_LIST_K = "str_list"  # a list of strings (or nulls)
NESTED_K = "nested"  # any other list, or an object
JSON_K = "json"  # a value already stored as JSON text
OTHER_K = "other"  # anything else Arrow gave back from an old file (dates, bytes, ...)

_EXACT = 2**53
_I64_MIN, _I64_MAX = -(2**63), 2**63 - 1
#: The kind of a value of each type that needs no closer look.
_SIMPLE_KINDS: dict[type, str] = {str: STR_K, type(None): NULL_K, float: FLOAT_K, bool: BOOL_K, dict: NESTED_K}


@dataclass(frozen=True)
class ColumnType:
    """A column's Parquet type: the kinds of value it holds as they are, and what stands for it when widened."""

    name: str
    arrow: pa.DataType
    accepts: frozenset[str]
    kind: str

    @property
    def is_json(self) -> bool:
        """Whether the column holds each value's JSON text."""
        return self is JSON_TEXT


STRING = ColumnType("string", pa.string(), frozenset({STR_K}), STR_K)
INT64 = ColumnType("int64", pa.int64(), frozenset({INT_K, WIDE_K}), INT_K)
FLOAT64 = ColumnType("float64", pa.float64(), frozenset({INT_K, FLOAT_K}), FLOAT_K)
BOOL = ColumnType("bool", pa.bool_(), frozenset({BOOL_K}), BOOL_K)
STRING_LIST = ColumnType("list<string>", pa.list_(pa.string()), frozenset({STR_LIST_K}), STR_LIST_K)
JSON_TEXT = ColumnType("json", pa.string(), frozenset(), JSON_K)

#: hfbatch's own columns (the id aside) and their types; all nullable. A new own column is one line here.
OWN_COLUMNS: dict[str, ColumnType] = {
    "output": STRING,
    "finish_reason": STRING,
    "prompt_tokens": INT64,
    "completion_tokens": INT64,
    "provider": STRING,
    "model": STRING,
    "attempts": INT64,
    "latency_s": FLOAT64,
    "cost_usd": FLOAT64,
    "outputs": STRING_LIST,
    "finish_reasons": STRING_LIST,
    "reasoning": STRING,
    "reasonings": STRING_LIST,
    "prompt": STRING,
    "messages": JSON_TEXT,
    "response": JSON_TEXT,
    "request_id": STRING,
}


def value_kind(value: Any) -> str:
    """The kind of one value (of a column other than the id)."""
    t = type(value)
    if t is int:
        if -_EXACT <= value <= _EXACT:
            return INT_K
        return WIDE_K if _I64_MIN <= value <= _I64_MAX else HUGE_K
    if t is list:
        return STR_LIST_K if all(type(x) is str or x is None for x in value) else NESTED_K
    return _SIMPLE_KINDS.get(t, OTHER_K)


def column_kinds(values: list[Any]) -> set[str]:
    """The kinds of a column's values, in C loops where their types allow."""
    types = set(map(type, values))
    kinds = {_SIMPLE_KINDS.get(t, OTHER_K) for t in types if t is not int and t is not list}
    if int in types:
        # Each integer type holds an interval around 0, so the extremes decide which can hold them all.
        ints = values if len(types) == 1 else [v for v in values if type(v) is int]
        kinds.update((value_kind(min(ints)), value_kind(max(ints))))
    if list in types:
        kinds.update(value_kind(v) for v in values if type(v) is list)
    return kinds


def id_kinds(values: list[Any]) -> set[str]:
    """The kinds of a chunk of ids: as values, and "bad_str" when a string id is one UTF-8 cannot carry."""
    kinds = column_kinds(values)
    if STR_K in kinds:
        # Joined, since a string UTF-8 cannot carry makes any string holding it one too.
        text = "".join(v for v in values if type(v) is str)
        if not (text.isascii() or _utf8_safe(text)):
            kinds.add(BAD_STR_K)
    return kinds


def kept_type(kinds: Iterable[str]) -> ColumnType:
    """The narrowest type holding every value of a column that showed `kinds`."""
    k = set(kinds) - {NULL_K}
    if not k:
        return STRING
    if k == {BOOL_K}:
        return BOOL
    if k <= INT64.accepts:
        return INT64
    if k <= FLOAT64.accepts:
        return FLOAT64
    if k == {STR_K}:
        return STRING
    return JSON_TEXT


def own_type(declared: ColumnType, kinds: Iterable[str]) -> ColumnType:
    """An own column's declared type, widened as a kept column's would be when a value does not fit it."""
    k = set(kinds) - {NULL_K}
    return declared if k <= declared.accepts else kept_type(k | {declared.kind})


def id_type(kinds: Iterable[str]) -> ColumnType:
    """The id column's type: int64, string, or JSON text when neither holds every id exactly."""
    k = set(kinds) - {NULL_K}
    if k <= INT64.accepts:
        return INT64
    return STRING if k == {STR_K} else JSON_TEXT


def arrow_kinds(dtype: pa.DataType, *, is_json: bool, low: Any = None, high: Any = None) -> set[str]:
    """The kinds of value an old file's column holds, from its type (and, for integers, its min and max)."""
    if is_json:
        return {JSON_K}
    if pa.types.is_null(dtype):
        return set()
    if pa.types.is_boolean(dtype):
        return {BOOL_K}
    if pa.types.is_integer(dtype):
        return {value_kind(low), value_kind(high)} - {NULL_K}
    if pa.types.is_floating(dtype):
        return {FLOAT_K}
    if pa.types.is_string(dtype) or pa.types.is_large_string(dtype):
        return {STR_K}
    if (pa.types.is_list(dtype) or pa.types.is_large_list(dtype)) and pa.types.is_string(dtype.value_type):
        return {STR_LIST_K}
    return {OTHER_K}


# Compact, and readable where UTF-8 can carry the text; `str` stands in for what JSON lacks
# (dates, decimals, bytes from an old file written before these rules).
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str).encode
_dumps_ascii = json.JSONEncoder(separators=(",", ":"), default=str).encode


def json_text(value: Any) -> str:
    """A value's JSON text, each lone surrogate in it as U+FFFD."""
    text = _dumps(value)
    return text if text.isascii() or _utf8_safe(text) else _replace_surrogates(text)


def id_text(value: Any) -> str:
    """An id's JSON text, with \\u escapes for lone surrogates, so that it reads back exactly."""
    text = _dumps(value)
    return text if text.isascii() or _utf8_safe(text) else _dumps_ascii(value)


def _utf8_safe(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _replace_surrogates(value: Any) -> Any:
    """A string (or list of strings) with each lone surrogate as U+FFFD."""
    if type(value) is str:
        # UTF-16 joins surrogates that form a pair and marks the lone ones as U+FFFD.
        return value.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    if type(value) is list:
        return [_replace_surrogates(x) for x in value]
    return value


def to_arrow(values: list[Any], ctype: ColumnType, *, exact: bool = False) -> pa.Array:
    """Journal values (parsed JSON) as an Arrow array of `ctype`, of the kinds it was chosen for; `exact` for ids."""
    if ctype.is_json:
        text = id_text if exact else json_text
        return pa.array([None if v is None else text(v) for v in values], pa.string())
    try:
        return pa.array(values, ctype.arrow)
    except UnicodeEncodeError:
        return pa.array([_replace_surrogates(v) for v in values], ctype.arrow)


def convert(array: pa.Array, ctype: ColumnType, *, was_json: bool, exact: bool = False) -> pa.Array:
    """An old file's column as `ctype`, which its kinds chose (so a cast never loses a value); `exact` for ids."""
    if ctype.is_json:
        if was_json:
            return array.cast(pa.string())
        text = id_text if exact else json_text
        return pa.array([None if v is None else text(v) for v in array.to_pylist()], pa.string())
    return array.cast(ctype.arrow)
