"""The per-row JSON codec writes and reads exactly what the standard library's json does."""

from __future__ import annotations

import datetime
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hfbatch.json_codec import compact_encoder, loads_reply, loads_text

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(JSON_VALUES)
def test_records_and_bodies_are_encoded_as_json_dumps_encodes_them(value: Any) -> None:
    """Every JSON value (NaN, lone surrogates and all) encodes to the stdlib's text, in both layouts."""
    for separators in ((",", ":"), (", ", ": ")):
        expected = json.dumps(value, ensure_ascii=False, separators=separators)
        assert compact_encoder(separators)(value) == expected


def test_a_value_json_cannot_hold_goes_through_default_or_fails_as_with_json() -> None:
    """`default=str` writes a date as text; without a default the TypeError is json's."""
    when = datetime.date(2026, 11, 29)
    assert compact_encoder((", ", ": "), default=str)({"d": when}) == '{"d": "2026-11-29"}'
    with pytest.raises(TypeError, match="not JSON serializable"):
        compact_encoder((",", ":"))({"d": when})


def test_a_value_nested_too_deeply_raises_recursion_error() -> None:
    """A body nested past the recursion limit raises RecursionError, which the callers turn into a row error."""
    deep: Any = []
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(RecursionError):
        compact_encoder((",", ":"))(deep)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"a": "\xc3\xa9"}',
        b'[1, 2, {"b": null}]',
        '{"a": "é"}'.encode("utf-16"),
        '{"a": "é"}'.encode("utf-16-le"),
        '{"a": "é"}'.encode("utf-32"),
        b'\xef\xbb\xbf{"bom": true}',
        b'  {"leading": "space"}',
        b'{"surrogate": "\xed\xa0\x80"}',
        b"42",
    ],
)
def test_a_reply_body_reads_as_json_loads_reads_it(raw: bytes) -> None:
    """UTF-8, UTF-16 and UTF-32 bodies, a byte order mark, leading space: the same value as json.loads."""
    assert loads_reply(raw) == json.loads(raw)


@pytest.mark.parametrize("raw", [b"", b"{", b'{"a": "\xff"}', b"[1,]", b"{}{}"])
def test_a_broken_reply_body_fails_as_json_loads_fails(raw: bytes) -> None:
    """Empty, cut short, invalid UTF-8, trailing data: a ValueError, as json.loads raises."""
    with pytest.raises(ValueError) as ours:
        loads_reply(raw)
    with pytest.raises(ValueError) as theirs:
        json.loads(raw)
    assert type(ours.value) is type(theirs.value)


@pytest.mark.parametrize(
    "text",
    [
        '{"id": 1, "prompt": "p"}\n',
        '{"a": 1}\r\n',
        ' {"a": 1}',
        '"s"',
        "1 2",
        '{"a": 1} x',
        '{"a": 1',
        "",
        "\u00a0{}",
        "{} \u00a0",
    ],
)
def test_an_input_line_reads_as_json_loads_reads_it(text: str) -> None:
    """A line with its newline, with space before or junk after, or broken: json's value or json's error."""
    try:
        expected = json.loads(text)
    except ValueError as exc:
        with pytest.raises(type(exc), match=str(exc).split(":")[0]):
            loads_text(text)
    else:
        assert loads_text(text) == expected
