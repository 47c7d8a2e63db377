"""JSON on the per-row path: the standard library's C encoder and decoder, without their per-call Python layers.

`json.JSONEncoder.encode` builds a new C encoder on every call, and `json.loads` of bytes
first sniffs their encoding in Python; for a request body and a result record per row
that is some 150 bytecodes of Python each time. `compact_encoder` builds the C encoder
once (where this Python has it, and only if it encodes a probe exactly as the stdlib
does; else the stdlib's `encode` is used); `loads_text` calls the C scanner at once;
`loads_reply` decodes UTF-8 directly, which is what RFC 8259 requires of JSON between
systems (any other encoding goes the stdlib's way). These accept and reject what `json`
does, with one difference: the encoder does not look for reference cycles, so a cyclic
value raises RecursionError, not ValueError (what is encoded here was read from JSON,
or built from it).

Where orjson is installed (the `fast` extra), request bodies, replies and result records
go through it first: it writes and reads them in a fifth of the stdlib's instructions
(some 10% of a row's on a fast server, more on long rows). Whatever it refuses (NaN in a
reply, lone surrogates, integers past 64 bits in what is written, 255 levels of nesting)
goes the stdlib's way, so the error for what cannot be read is json's, and a record is
written in one layout either way (compact, `dumps_record`). Two differences remain, both
about values JSON between systems should not hold: a reply's integer past 64 bits reads
as a float (`exact=True` reads it as json does: for replies kept whole in the output),
and a NaN or infinite float written goes as null, where json writes the non-standard NaN
token (which servers refuse, and many JSON readers too). Input lines keep the stdlib's
decoder: ids and columns read exactly.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from json import encoder as _stdlib_encoder
from typing import Any

try:
    import orjson as orjson  # re-exported: the tests run the codec without it too
except ImportError:  # the fast extra is not installed: the stdlib does it all
    orjson = None  # type: ignore[assignment]

__all__ = ["BACKEND", "compact_encoder", "dumps_body", "dumps_record", "loads_reply", "loads_text"]

#: The JSON library the per-row path uses first ("orjson" or "json"), for the stats.
BACKEND = "json" if orjson is None else "orjson"

_PROBE: Any = {"a": [1, 2.5, None, True, float("inf")], 'é\n"': {"x": "\ud800"}, "n": -0.0, "s": ""}
_decoder = json.JSONDecoder()
_decode = _decoder.decode
_scan: Callable[[str, int], tuple[Any, int]] = _decoder.scan_once  # type: ignore[attr-defined]  # not in the stubs
_JSON_SPACE = " \t\n\r"
_OPENERS = (b"{", b"[")


def compact_encoder(separators: tuple[str, str], default: Callable[[Any], Any] | None = None) -> Callable[[Any], str]:
    """`json.JSONEncoder(ensure_ascii=False, separators=..., default=...).encode`, its C encoder built once."""
    stdlib = json.JSONEncoder(ensure_ascii=False, separators=separators, default=default)
    make = getattr(_stdlib_encoder, "c_make_encoder", None)
    if make is None:
        return stdlib.encode
    try:
        # The arguments JSONEncoder.iterencode passes (Python 3.11 to 3.14), without the cycle markers.
        iterencode = make(
            None,
            stdlib.default,
            _stdlib_encoder.encode_basestring,
            None,
            stdlib.key_separator,
            stdlib.item_separator,
            stdlib.sort_keys,
            stdlib.skipkeys,
            stdlib.allow_nan,
        )

        def encode(value: Any) -> str:
            return "".join(iterencode(value, 0))

        if encode(_PROBE) != stdlib.encode(_PROBE):
            return stdlib.encode
    except Exception:  # another Python's C encoder: the stdlib's own way is always right
        return stdlib.encode
    return encode


_body_encoder = compact_encoder((",", ":"))


def dumps_body(value: Any) -> bytes:
    """Compact UTF-8 JSON of a request body; RecursionError when nested too deeply for json.

    A lone UTF-16 surrogate (valid in JSON, not in UTF-8) is written as its `\\udcXX` escape.
    """
    if orjson is not None:
        try:
            return orjson.dumps(value)
        except TypeError:  # orjson.JSONEncodeError: a lone surrogate, a huge int, deep nesting, a non-str key
            pass
    # backslashreplace: a lone surrogate can only sit inside a JSON string, so the server reads the same string.
    return _body_encoder(value).encode("utf-8", "backslashreplace")


# default=str: kept Parquet columns may hold dates or decimals, which JSON has no type for.
_record_encoder = compact_encoder((",", ":"), default=str)
# Dates, times and dataclasses go to `default` as with json (orjson would write dates its own way).
_RECORD_OPTIONS = 0 if orjson is None else orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def _as_text(value: Any) -> str:
    """orjson's `default` for records: str() as json's default=str, but a float subclass (numpy's) is json's number."""
    if isinstance(value, float):
        raise TypeError("a float subclass: json writes it")
    return str(value)


def dumps_record(value: Any) -> str:
    """Compact JSON of a result record, `str()` of what JSON has no type for (a date, a decimal)."""
    if orjson is not None:
        try:
            return orjson.dumps(value, default=_as_text, option=_RECORD_OPTIONS).decode()
        except TypeError:  # orjson.JSONEncodeError: a lone surrogate, a huge int, deep nesting, a non-str key
            pass
    return _record_encoder(value)


def loads_text(text: str) -> Any:
    """`json.loads(text)`, with one call into the C scanner when the text is one value (and JSON spaces after it)."""
    try:
        value, end = _scan(text, 0)
    except StopIteration:
        return _decode(text)  # leading space, or nothing JSON can read: json reads it, or raises its error
    if end != len(text) and text[end:].strip(_JSON_SPACE):
        return _decode(text)  # more after the value: json's "Extra data"
    return value


def loads_reply(raw: bytes, *, exact: bool = False) -> Any:
    """`json.loads(raw)`: by orjson where it reads it (see above; `exact`: never), else as json does.

    For json, a body that starts as UTF-8 JSON does is decoded directly, any other as json.loads decodes it.
    """
    if orjson is not None and not exact:
        try:
            return orjson.loads(raw)
        except ValueError:  # orjson.JSONDecodeError: what it refuses, json may still read (UTF-16, NaN)
            pass
    if raw[:1] in _OPENERS and raw[1:2] != b"\x00":  # not UTF-16 or 32, no byte order mark
        return loads_text(raw.decode("utf-8", "surrogatepass"))
    return json.loads(raw)
