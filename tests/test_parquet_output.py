"""Parquet outputs: every mix of values a run produced is written, opens with sensible types, and resumes exactly."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings

from hfbatch.errors import ExitCode, UsageError
from hfbatch.idset import IdSet
from hfbatch.jobspec import JobSpec
from hfbatch.outputs import OutputFiles
from hfbatch.outputs import parquet_file as parquet_file_module
from hfbatch.outputs.parquet import ParquetFormat
from hfbatch.outputs.parquet_file import merge, read_records
from hfbatch.outputs.parquet_types import (
    FLOAT64,
    INT64,
    OWN_COLUMNS,
    STRING,
    STRING_LIST,
    column_kinds,
    id_kinds,
    id_type,
    kept_type,
    own_type,
    to_arrow,
)
from hfbatch.runner import run_job
from hfbatch.sim import SimServer
from tests.helpers import MODEL

LONE = "\udc80"
FFFD = "\ufffd"


def own(row_id: Any, **fields: Any) -> dict[str, Any]:
    """A result record as the runner makes it, with `fields` added or replaced."""
    record: dict[str, Any] = {
        "id": row_id,
        "output": f"answer {row_id!r}",
        "finish_reason": "stop",
        "prompt_tokens": 12,
        "completion_tokens": 30,
        "provider": "p1",
        "model": MODEL,
        "attempts": 1,
        "latency_s": 0.25,
    }
    record.update(fields)
    return record


def finish_run(out: Path, records: list[dict[str, Any]]) -> None:
    """One run through OutputFiles: resume, add each record, close (which writes the Parquet file)."""
    with OutputFiles(out) as files:
        # force: a journal left before the first end has no manifest beside it
        files.prepare({}, {}, restart=False, force=True)
        done = IdSet()
        files.load_done(done)
        files.start({}, {})
        for record in records:
            assert record["id"] not in done
            files.add_result(record)
        files.close()


def leave_journal(out: Path, records: list[dict[str, Any]], *, raw: bool = False) -> Path:
    """A journal as a crashed run leaves it; lone surrogates as JSON escapes, or `raw` as surrogatepass bytes."""
    journal = OutputFiles(out).paths.journal
    with open(journal, "ab") as f:
        for record in records:
            line = json.dumps(record, ensure_ascii=not raw) + "\n"
            f.write(line.encode("utf-8", "surrogatepass"))
    return journal


def resumed(out: Path) -> IdSet:
    """The ids a resume finds done."""
    done = IdSet()
    with OutputFiles(out) as files:
        files.load_done(done)
    return done


def types_of(out: Path) -> dict[str, str]:
    """Each column's Arrow type, as text."""
    return {f.name: str(f.type) for f in pq.read_schema(out)}


def twin(row_id: Any) -> Any:
    """The id of the other type that looks the same: 1 <-> "1"."""
    return str(row_id) if type(row_id) is int else (int(row_id) if row_id.lstrip("-").isdigit() else None)


def assert_resumes_exactly(out: Path, ids: list[Any]) -> None:
    """A resume finds every id with its type, and not its look-alike of the other type."""
    done = resumed(out)
    assert all(i in done for i in ids)
    twins = [twin(i) for i in ids]
    assert not any(t in done for t in twins if t is not None and t not in ids)
    assert sorted(map(repr, ParquetFormat().existing_ids(out))) == sorted(map(repr, ids))


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        pytest.param([None, None], "string", id="all-null"),
        pytest.param([True, None, False], "bool", id="bools"),
        pytest.param([1, -(2**63), 2**63 - 1], "int64", id="int64-range"),
        pytest.param([1, 2.5], "float64", id="ints-and-floats"),
        pytest.param([2**53 + 1, 2.5], "json", id="int-past-2**53-beside-a-float"),
        pytest.param([2**63], "json", id="int-past-int64"),
        pytest.param(["a", None], "string", id="strings"),
        pytest.param([True, 1], "json", id="bool-and-int"),
        pytest.param([["a"]], "json", id="list"),
        pytest.param([{"a": 1}], "json", id="object"),
    ],
)
def test_kept_column_rules(values: list[Any], expected: str) -> None:
    """The narrowest type that holds every value, JSON text when none does."""
    assert kept_type(column_kinds(values)).name == expected


def test_own_and_id_column_rules() -> None:
    """Own columns keep their declared type while values fit; ids are int64, string or JSON text."""
    assert own_type(INT64, column_kinds([None])).name == "int64"
    assert own_type(INT64, column_kinds([3.5])).name == "float64"
    assert own_type(FLOAT64, column_kinds([1, 2.5])).name == "float64"
    assert own_type(STRING, column_kinds([1])).name == "json"
    assert id_type(id_kinds([1, 2**63 - 1])).name == "int64"
    assert id_type(id_kinds(["a", "é"])).name == "string"
    for mixed in ([1, "1"], [2**63], ["a" + LONE]):
        assert id_type(id_kinds(mixed)).name == "json"


def test_token_counts_null_for_10001_rows_then_ints(tmp_path: Path) -> None:
    """Token counts missing for a whole first chunk and more, then present: int64 columns, every row written."""
    out = tmp_path / "out.parquet"
    records = [own(i, prompt_tokens=None, completion_tokens=None) for i in range(10_001)]
    records += [own(i) for i in range(10_001, 10_011)]
    finish_run(out, records)
    types = types_of(out)
    assert types["prompt_tokens"] == types["completion_tokens"] == "int64" and types["id"] == "int64"
    table = pq.read_table(out)
    assert table.num_rows == 10_011 and table.column("prompt_tokens").null_count == 10_001
    assert table.column("completion_tokens").to_pylist()[-1] == 30
    assert_resumes_exactly(out, list(range(10_011)))
    assert not OutputFiles(out).paths.journal.exists()


CASES: list[Any] = [
    pytest.param(
        [[own(1, topic=3), own(2, topic="three"), own(3, topic=None)]],
        {"topic": "string"},
        {"topic": [3, "three", None]},
        id="kept-int-and-str-is-json-text",
    ),
    pytest.param(
        [[own(2**63 + 5), own(1), own(2)]],
        {"id": "string"},
        {"id": [2**63 + 5, 1, 2]},
        id="uint64-id-beside-small-ints",
    ),
    pytest.param(
        [[own(-(2**63)), own(2**63 - 1), own(0)]],
        {"id": "int64"},
        {"id": [-(2**63), 2**63 - 1, 0]},
        id="int64-extreme-ids-stay-int64",
    ),
    pytest.param(
        [[own("a" + LONE), own("plain"), own("é")]],
        {"id": "string"},
        {"id": ["a" + LONE, "plain", "é"]},
        id="string-ids-with-a-lone-surrogate",
    ),
    pytest.param(
        [[own(1), own(2), own(3)], [own("1"), own("x"), own(4)]],
        {"id": "string"},
        {"id": [1, 2, 3, "1", "x", 4]},
        id="int-ids-then-string-ids",
    ),
    pytest.param(
        [[own(1, meta={"a": [1, 2], "b": None}, tags=["x", "y"]), own(2, meta={}, tags=[])]],
        {"meta": "string", "tags": "string"},
        {"meta": [{"a": [1, 2], "b": None}, {}], "tags": [["x", "y"], []]},
        id="nested-dict-and-list",
    ),
    pytest.param(
        [[own(1, flag=True, both=True), own(2, flag=False, both=7)]],
        {"flag": "bool", "both": "string"},
        {"flag": [True, False], "both": [True, 7]},
        id="bool-only-and-bool-int-mix",
    ),
    pytest.param(
        [[own(1, x=1, big=2**60), own(2, x=2.5, big=0.5)]],
        {"x": "double", "big": "string"},
        {"x": [1.0, 2.5], "big": [2**60, 0.5]},
        id="int-float-mix-and-a-too-big-int-beside-floats",
    ),
    pytest.param(
        [[own(1, empty=None), own(2, empty=None)]],
        {"empty": "string"},
        {"empty": [None, None]},
        id="all-null-kept-column",
    ),
    pytest.param(
        [[own(1, later=None)], [own(2, later=5)]],
        {"later": "int64"},
        {"later": [None, 5]},
        id="all-null-then-ints-in-a-later-run",
    ),
    pytest.param(
        [[own(1, n=1)], [own(2, n=1.5)], [own(3, n="s")]],
        {"n": "string"},
        {"n": [1.0, 1.5, "s"]},
        id="widened-run-after-run",
    ),
    pytest.param(
        [[own(1, prompt_tokens=3.0, latency_s=2, finish_reason=4)]],
        {"prompt_tokens": "double", "latency_s": "double", "finish_reason": "string"},
        {"prompt_tokens": [3.0], "latency_s": [2.0], "finish_reason": [4]},
        id="own-columns-widen-when-a-value-does-not-fit",
    ),
    pytest.param(
        [[own(1, output="bad " + LONE, note=["a", LONE])]],
        {"output": "string", "note": "string"},
        {"output": ["bad " + FFFD], "note": [["a", FFFD]]},
        id="lone-surrogates-in-values-become-fffd",
    ),
]


@pytest.mark.parametrize(("runs", "types", "values"), CASES)
def test_any_mix_of_values_is_written_with_sensible_types(
    tmp_path: Path, runs: list[list[dict[str, Any]]], types: dict[str, str], values: dict[str, list[Any]]
) -> None:
    """Each run's journal becomes a file that opens in pyarrow, with the types and values expected, and resumes."""
    out = tmp_path / "out.parquet"
    for records in runs:
        leave_journal(out, records)
        finish_run(out, [])
        assert not OutputFiles(out).paths.journal.exists()
    assert types.items() <= types_of(out).items()
    assert types_of(out)["output"] == "string" and types_of(out)["prompt_tokens"] in ("int64", "double")
    back = list(read_records(out))
    for name, expected in values.items():
        assert [r[name] for r in back] == expected, name
        assert [type(v) for v in (r[name] for r in back)] == [type(v) for v in expected], name
    assert_resumes_exactly(out, [r["id"] for records in runs for r in records])


def test_id_encoding_is_recorded_in_the_schema_metadata(tmp_path: Path) -> None:
    """JSON-text ids and columns are named in the file's metadata, so other readers can decode them."""
    out = tmp_path / "out.parquet"
    finish_run(out, [own(1, k=[1]), own("1", k="s")])
    meta = pq.read_schema(out).metadata
    assert meta[b"hfbatch.id_encoding"] == b"json"
    assert json.loads(meta[b"hfbatch.json_columns"]) == ["k"]
    assert pq.read_table(out).column("id").to_pylist() == ["1", '"1"']


def test_a_file_from_before_these_rules_merges(tmp_path: Path) -> None:
    """An old output with a null-typed token column and a list<int64> column takes new rows of other types."""
    out = tmp_path / "out.parquet"
    old = [own(i, prompt_tokens=None, k=[i]) for i in range(3)]
    pq.write_table(pa.Table.from_pylist(old), out)
    leave_journal(out, [own(3, k={"a": 1}), own(4, k="text")])
    finish_run(out, [])
    types = types_of(out)
    assert types["prompt_tokens"] == "int64" and types["k"] == "string"
    assert [r["k"] for r in read_records(out)] == [[0], [1], [2], {"a": 1}, "text"]
    assert_resumes_exactly(out, list(range(5)))


def test_a_journal_with_raw_surrogates_merges(tmp_path: Path) -> None:
    """Lone surrogates written raw (surrogatepass bytes) are read; ids keep them, values get U+FFFD."""
    out = tmp_path / "out.parquet"
    journal = leave_journal(out, [own("r" + LONE, output="x" + LONE), own("s")], raw=True)
    merge(out, journal)
    assert [(r["id"], r["output"]) for r in read_records(out)] == [("r" + LONE, "x" + FFFD), ("s", "answer 's'")]
    assert list(ParquetFormat().existing_ids(out)) == ["r" + LONE, "s"]


def test_a_journal_already_in_the_file_is_dropped_and_the_file_kept(tmp_path: Path) -> None:
    """After a crash between the rename and the journal's removal, the next end adds nothing twice."""
    out = tmp_path / "out.parquet"
    finish_run(out, [own(1), own(2)])
    before = out.read_bytes()
    journal = leave_journal(out, [own(1), own(2)])
    finish_run(out, [])
    assert out.read_bytes() == before and not journal.exists()
    leave_journal(out, [own(2), own(3)])
    finish_run(out, [])
    assert [r["id"] for r in read_records(out)] == [1, 2, 3]


def test_a_new_own_column_type_is_one_line_in_the_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Declaring `outputs` list<string> gives a list<string> column; a value that does not fit widens it."""
    monkeypatch.setitem(OWN_COLUMNS, "outputs", STRING_LIST)
    out = tmp_path / "out.parquet"
    finish_run(out, [own(1, outputs=["a", "b"]), own(2, outputs=None)])
    column = pq.read_schema(out).field("outputs").type
    assert pa.types.is_list(column) and column.value_type == pa.string()
    assert [r["outputs"] for r in read_records(out)] == [["a", "b"], None]
    finish_run(out, [own(3, outputs=[1])])
    assert [r["outputs"] for r in read_records(out)] == [["a", "b"], None, [1]]


def test_a_value_that_cannot_be_written_keeps_the_journal_and_names_the_column_and_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If a conversion still failed, the error is one line naming column and id, and nothing is lost."""
    out = tmp_path / "out.parquet"
    finish_run(out, [own(1)])
    before = out.read_bytes()
    real = to_arrow

    def refuse_seven(values: list[Any], ctype: Any, *, exact: bool = False) -> pa.Array:
        if 7 in values:
            raise pa.ArrowInvalid("cannot convert\nthis")
        return real(values, ctype, exact=exact)

    monkeypatch.setattr(parquet_file_module, "to_arrow", refuse_seven)
    journal = leave_journal(out, [own(2, k=1), own(3, k=7)])
    with pytest.raises(UsageError) as err:
        finish_run(out, [])
    message = str(err.value)
    assert "\n" not in message and "'k'" in message and "id 3" in message and str(journal) in message
    assert out.read_bytes() == before and journal.exists()
    assert not out.with_name(out.name + ".tmp").exists()


def test_a_failed_write_keeps_the_journal_and_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A full disk at the rename: one line naming the journal, which stays; no temporary file is left."""
    out = tmp_path / "out.parquet"
    journal = leave_journal(out, [own(1), own(2)])

    def full(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(UsageError, match="No space left on device") as err:
        merge(out, journal)
    assert str(journal) in str(err.value) and "\n" not in str(err.value)
    assert journal.exists() and not out.exists() and not out.with_name(out.name + ".tmp").exists()
    monkeypatch.undo()
    merge(out, journal)
    assert [r["id"] for r in read_records(out)] == [1, 2] and not journal.exists()


# Values as a JSON journal can hold them, surrogates and ints past int64 included.
_TEXT = st.text(st.sampled_from(["a", "1", "é", "😀", LONE, "\ud800", '"', "\\", "\x00"]), max_size=4)
_SCALARS: dict[str, st.SearchStrategy[Any]] = {
    "null": st.none(),
    "bool": st.booleans(),
    "int": st.integers(-(2**53), 2**53),
    "wide": st.integers(-(2**70), 2**70),
    "float": st.floats(allow_nan=True, allow_infinity=True),
    "str": _TEXT,
}
_ANY = st.recursive(
    st.one_of(*_SCALARS.values()),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3),
    max_leaves=6,
)
_COLUMNS = ("output", "prompt_tokens", "latency_s", "k0", "k1", "k2")
# No high surrogate in ids: JSON cannot tell a raw high-low pair from the character they make.
_ID_TEXT = st.text(st.sampled_from(["a", "1", "é", "😀", LONE, '"', "\\", "\x00"]), max_size=4)
_IDS = st.lists(
    st.one_of(st.integers(-5, 5), st.integers(-(2**64), 2**64), _ID_TEXT, st.sampled_from(["1", "-2", "0"])),
    min_size=1,
    max_size=24,
    unique_by=lambda i: (type(i), i),
)


def expected_value(value: Any) -> Any:
    """What a value reads back as, lone surrogates in its strings (and keys) replaced by U+FFFD."""
    if isinstance(value, str):
        return value.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    if isinstance(value, list):
        return [expected_value(v) for v in value]
    if isinstance(value, dict):
        return {expected_value(k): expected_value(v) for k, v in value.items()}
    return value


def tagged(value: Any) -> Any:
    """A value in a form where True != 1 and NaN equals itself; 1 == 1.0, since an int in a float column is a float."""
    if isinstance(value, float) and math.isnan(value):
        return ("nan",)
    if type(value) is int or type(value) is float:
        return ("number", value)
    if isinstance(value, list):
        return ("list", [tagged(v) for v in value])
    if isinstance(value, dict):
        return ("dict", sorted((k, tagged(v)) for k, v in value.items()))
    return (type(value).__name__, value)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), ids=_IDS)
def test_random_records_across_chunks_and_runs_always_write_and_read_back(
    tmp_path_factory: pytest.TempPathFactory, data: st.DataObject, ids: list[Any]
) -> None:
    """Random mixes of types per column, chunk and run: the file is always written, reads back, resumes."""
    out = tmp_path_factory.mktemp("h") / "out.parquet"
    chunk = data.draw(st.integers(1, 4), label="chunk")
    cut = sorted(data.draw(st.lists(st.integers(0, len(ids)), max_size=2), label="cuts"))
    runs = [ids[a:b] for a, b in zip([0, *cut], [*cut, len(ids)], strict=True)]
    written: dict[Any, dict[str, Any]] = {}
    for run_ids in runs:
        if not run_ids:
            continue
        palette = {c: data.draw(st.sampled_from([*_SCALARS, "any"]), label=c) for c in _COLUMNS}
        records = []
        for i in run_ids:
            record = {"id": i}
            for c in data.draw(st.lists(st.sampled_from(_COLUMNS), unique=True), label="columns"):
                kind = palette[c] if data.draw(st.booleans(), label="usual") else "any"
                record[c] = data.draw(_SCALARS.get(kind, _ANY), label=c)
            records.append(record)
        # A record from an earlier run again: a crash after the rename leaves the journal behind.
        again = bool(written) and data.draw(st.booleans(), label="repeat")
        repeat = [next(iter(written.values()))] if again else []
        journal = leave_journal(out, repeat + records, raw=data.draw(st.booleans(), label="raw"))
        merge(out, journal, chunk=chunk)
        assert not journal.exists()
        for record in records:
            written[record["id"]] = json.loads(json.dumps(record))  # as the journal gives it back
    types = types_of(out)
    back = list(read_records(out))
    assert [r["id"] for r in back] == list(written)
    for got, want in zip(back, written.values(), strict=True):
        for c in _COLUMNS:
            if c in types:
                assert tagged(got[c]) == tagged(expected_value(want.get(c))), c
    assert_resumes_exactly(out, list(written))
    for c in ("k0", "k1", "k2"):
        values = [w[c] for w in written.values() if w.get(c) is not None]
        if values and all(type(v) is int and abs(v) <= 2**53 for v in values):
            assert types[c] == "int64"


@pytest.mark.usefixtures("fast_time")
async def test_a_run_with_mixed_ids_and_kept_columns_writes_parquet_and_resumes(sim: SimServer, tmp_path: Path) -> None:
    """End to end: int and string ids (1 and "1"), a kept column of mixed types; the rerun sends nothing."""
    rows = [{"id": i, "prompt": f"p{i}", "meta": i} for i in range(30)]
    rows += [{"id": str(i), "prompt": f"s{i}", "meta": [f"m{i}"] if i % 2 else None} for i in range(30)]
    rows += [{"id": 2**63 + 1, "prompt": "big", "meta": {"x": 1}}]
    inp = tmp_path / "in.jsonl"
    inp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = JobSpec(
        input=inp,
        output=tmp_path / "out.parquet",
        model=MODEL,
        api_base=sim.api_base,
        hub_url=sim.hub_url,
        keep_columns=("meta",),
        max_tokens=16,
    )
    first = await run_job(spec)
    assert first.exit_code is ExitCode.OK
    back = {(type(r["id"]), r["id"]): r for r in read_records(spec.output)}
    assert len(back) == len(rows)
    assert back[(int, 3)]["meta"] == 3 and back[(str, "3")]["meta"] == ["m3"] and back[(int, 2**63 + 1)]["meta"]
    assert types_of(spec.output)["prompt_tokens"] == "int64"
    again = await run_job(spec)
    assert again.exit_code is ExitCode.OK
    assert again.stats["rows"]["skipped_already_done"] == len(rows) and again.stats["rows"]["done"] == 0
