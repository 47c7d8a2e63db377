"""The per-row JSON codec writes and reads exactly what the standard library's json does."""

from __future__ import annotations

import contextlib
import datetime
import decimal
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hfbatch import json_codec
from hfbatch.errors import ExitCode
from hfbatch.jobspec import JobSpec
from hfbatch.json_codec import compact_encoder, dumps_body, dumps_record, loads_reply, loads_text
from hfbatch.runner import run_job
from hfbatch.sim import SimServer
from tests.helpers import MODEL

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


@pytest.fixture(params=["orjson", "json"])
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each test twice: with orjson first (the fast extra), and with the stdlib alone (without it)."""
    if request.param == "orjson":
        pytest.importorskip("orjson")
    else:
        monkeypatch.setattr(json_codec, "orjson", None)
    return str(request.param)


FINITE_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@contextlib.contextmanager
def using(orjson: Any) -> Iterator[None]:
    """The codec with this orjson module (None: the stdlib alone) for the block."""
    saved = json_codec.orjson
    json_codec.orjson = orjson
    try:
        yield
    finally:
        json_codec.orjson = saved


# Both ways where orjson is installed: first orjson, then the stdlib alone.
BACKENDS = [m for m in (json_codec.orjson,) if m is not None] + [None]


@given(FINITE_JSON_VALUES)
def test_a_request_body_reads_back_as_the_value_sent(value: Any) -> None:
    """Any body (lone surrogates and 100-digit integers too) is UTF-8 JSON the server reads as the value sent."""
    for orjson in BACKENDS:
        with using(orjson):
            body = dumps_body(value)
        assert json.loads(body.decode("utf-8")) == value


@given(FINITE_JSON_VALUES)
def test_a_record_is_compact_json_of_the_value_with_or_without_orjson(value: Any) -> None:
    """A record line reads back as the value written, compact, and the same with and without orjson."""
    lines = []
    for orjson in BACKENDS:
        with using(orjson):
            lines.append(dumps_record({"id": 1, "value": value}))
    for line in lines:
        assert line.startswith('{"id":1,"value":')
        assert json.loads(line) == {"id": 1, "value": value}
    if not _has_float(value):  # orjson writes 1e-06 as 1e-6: the same value, other digits
        assert all(line == lines[0] for line in lines)


def _has_float(value: Any) -> bool:
    if isinstance(value, float):
        return True
    if isinstance(value, list):
        return any(_has_float(v) for v in value)
    if isinstance(value, dict):
        return any(_has_float(v) for v in value.values())
    return False


class _Float(float):
    """A float subclass, as numpy's float64 is."""


def test_a_record_s_dates_and_decimals_are_their_text_and_nan_is_null_with_orjson(backend: str) -> None:
    """Kept dates and decimals are their str(), a float subclass a number; NaN is null by orjson (json_codec)."""
    when = datetime.datetime(2026, 11, 29, 8, 30)
    line = dumps_record({"id": "r", "at": when, "d": decimal.Decimal("1.50"), "day": when.date()})
    assert line == '{"id":"r","at":"2026-11-29 08:30:00","d":"1.50","day":"2026-11-29"}'
    assert dumps_record({"id": "r", "f": _Float(1.5)}) == '{"id":"r","f":1.5}'  # numpy's float64 is one
    nan = dumps_record({"id": "r", "x": float("nan")})
    assert nan == ('{"id":"r","x":null}' if backend == "orjson" else '{"id":"r","x":NaN}')


def test_a_body_without_orjson_is_the_stdlib_s_bytes(backend: str) -> None:
    """Without orjson the bytes are json.dumps's; with it, the same value, NaN aside (see json_codec)."""
    body = {"model": "m", "messages": [{"role": "user", "content": "é \ud800 \n"}], "n": 10**30, "t": 0.5}
    stdlib = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "backslashreplace")
    assert json.loads(dumps_body(body)) == json.loads(stdlib)
    if backend == "json":
        assert dumps_body(body) == stdlib
    nan = dumps_body({"t": float("nan")})
    assert nan == (b'{"t":null}' if backend == "orjson" else b'{"t":NaN}')


@given(FINITE_JSON_VALUES)
def test_a_reply_reads_as_json_loads_reads_it_up_to_64_bit_integers(value: Any) -> None:
    """A reply reads as json.loads reads it; with `exact`, integers past 64 bits too (kept whole in the output)."""
    raw = json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")
    for orjson in BACKENDS:
        with using(orjson):
            assert loads_reply(raw, exact=True) == json.loads(raw)
            if orjson is None or not _has_huge_int(value):
                assert loads_reply(raw) == json.loads(raw)


def _has_huge_int(value: Any) -> bool:
    if type(value) is int:
        return not -(2**63) <= value < 2**64
    if isinstance(value, list):
        return any(_has_huge_int(v) for v in value)
    if isinstance(value, dict):
        return any(_has_huge_int(v) for v in value.values())
    return False


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
        b"[1e400, -1e400]",
        b"[" * 300 + b"]" * 300,
    ],
)
def test_a_reply_body_reads_as_json_loads_reads_it(raw: bytes, backend: str) -> None:
    """UTF-8, UTF-16 and UTF-32 bodies, a byte order mark, leading space: the same value as json.loads."""
    assert loads_reply(raw) == json.loads(raw)


@pytest.mark.parametrize("raw", [b"", b"{", b'{"a": "\xff"}', b"[1,]", b"{}{}", b"[NaN", b"[" * 300 + b"]" * 299])
def test_a_broken_reply_body_fails_as_json_loads_fails(raw: bytes, backend: str) -> None:
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


@pytest.mark.usefixtures("fast_time")
async def test_a_run_writes_the_same_results_with_and_without_orjson(
    sim: SimServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stats name the JSON library; the output holds the same records either way, each row sent once."""
    inp = tmp_path / "in.jsonl"
    rows = [{"id": i, "prompt": f"é \ud800 {i}"} for i in range(20)]
    inp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    outputs = []
    for orjson in BACKENDS:
        monkeypatch.setattr(json_codec, "orjson", orjson)
        monkeypatch.setattr(json_codec, "BACKEND", "json" if orjson is None else "orjson")
        spec = JobSpec(input=inp, output=tmp_path / f"out-{orjson is None}.jsonl", model=MODEL,
                       api_base=sim.api_base, hub_url=sim.hub_url, max_tokens=16)  # fmt: skip
        report = await run_job(spec)
        assert report.exit_code is ExitCode.OK
        stats = json.loads(spec.stats_path.read_text())
        assert stats["json"] == ("json" if orjson is None else "orjson")
        records = [json.loads(line) for line in spec.output.read_text().splitlines()]
        outputs.append(sorted((r["id"], r["output"], r["prompt_tokens"]) for r in records))
    assert all(o == outputs[0] for o in outputs) and len(outputs[0]) == 20
    assert sum(c["requests"] for c in sim.counts().values()) == 20 * len(BACKENDS)
