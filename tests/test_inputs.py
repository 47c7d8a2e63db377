"""Tests for hfbatch.inputs: streaming JSONL and Parquet readers and their row rules."""

from __future__ import annotations

import gzip
import itertools
import json
import os
import shutil
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hfbatch.inputs.base as input_base
import hfbatch.inputs.parquet as parquet_input
from hfbatch.errors import InputError
from hfbatch.inputs import BadRow, DoneRow, InputReader, InputSpec, Row, open_input

# --------------------------------------------------------------------------- helpers


def write_jsonl(path: Path, lines: list[Any]) -> Path:
    """Write dicts as JSON lines; str and bytes items are written verbatim."""
    out = bytearray()
    for line in lines:
        if isinstance(line, bytes):
            out += line
        elif isinstance(line, str):
            out += line.encode()
        else:
            out += json.dumps(line).encode()
        out += b"\n"
    if path.name.endswith(".gz"):
        path.write_bytes(gzip.compress(bytes(out)))
    else:
        path.write_bytes(bytes(out))
    return path


def to_table(records: list[dict[str, Any]]) -> pa.Table:
    """A table whose columns are every key of any record (from_pylist looks at the first only)."""
    names = list(dict.fromkeys(k for r in records for k in r))
    return pa.table({n: [r.get(n) for r in records] for n in names})


def write_parquet(path: Path, records: list[dict[str, Any]], row_group_size: int = 2) -> Path:
    pq.write_table(to_table(records), path, row_group_size=row_group_size)
    return path


def read(path: Path, **kw: Any) -> list[Row | BadRow | DoneRow]:
    with open_input(InputSpec(path, **kw)) as reader:
        return list(reader)


def only(items: list[Row | BadRow | DoneRow]) -> Row | BadRow:
    """The one row read, which no earlier run finished."""
    assert len(items) == 1, items
    assert not isinstance(items[0], DoneRow)
    return items[0]


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def bad_one(tmp_path: Path, record: dict[str, Any], good: dict[str, Any] | None = None, **kw: Any) -> BadRow:
    """Read a JSONL file of one good line then `record`; return the second item, a BadRow."""
    items = read(write_jsonl(tmp_path / "in.jsonl", [good or {"prompt": "ok"}, record]), **kw)
    assert isinstance(items[0], Row)
    item = items[1]
    assert isinstance(item, BadRow), item
    assert item.where == "line 2"
    return item


# Heterogeneous records every format can hold: absent fields become nulls in Parquet.
RECORDS: list[dict[str, Any]] = [
    {"id": "a", "prompt": "hello", "lang": "en"},
    {"id": "b", "prompt": "bonjour", "system": "Be brief.", "max_tokens": 50, "lang": "fr"},
    {"id": "c", "messages": [{"role": "user", "content": "hi"}], "temperature": 0.5},
    {"id": "d", "prompt": "look", "images": ["https://x/1.png", "data:image/png;base64,AA=="]},
    {"id": "e", "prompt": "more", "seed": 7, "top_p": 0.9, "stop": ["\n\n"]},
]

EXPECTED = [
    Row(0, "a", user("hello"), {}, [], {"lang": "en"}),
    Row(
        1,
        "b",
        [{"role": "system", "content": "Be brief."}, *user("bonjour")],
        {"max_tokens": 50},
        [],
        {"lang": "fr"},
    ),
    Row(2, "c", user("hi"), {"temperature": 0.5}, [], {"lang": None}),
    Row(3, "d", user("look"), {}, ["https://x/1.png", "data:image/png;base64,AA=="], {"lang": None}),
    Row(4, "e", user("more"), {"seed": 7, "top_p": 0.9, "stop": ["\n\n"]}, [], {"lang": None}),
]


def make_input(kind: str, tmp_path: Path, records: list[dict[str, Any]]) -> Path:
    if kind == "jsonl":
        return write_jsonl(tmp_path / "in.jsonl", records)
    if kind == "jsonl.gz":
        return write_jsonl(tmp_path / "in.jsonl.gz", records)
    if kind == "parquet":
        return write_parquet(tmp_path / "in.parquet", records)
    folder = tmp_path / "parts"
    folder.mkdir()
    table = to_table(records)
    for n, start in enumerate(range(0, len(records), 2)):
        pq.write_table(table.slice(start, 2), folder / f"part-{n:05d}.parquet", row_group_size=1)
    return folder


# --------------------------------------------------------------------------- formats


@pytest.mark.parametrize("kind", ["jsonl", "jsonl.gz", "parquet", "folder"])
def test_every_format_yields_the_same_rows(tmp_path: Path, kind: str) -> None:
    """JSONL, gzipped JSONL, a Parquet file and a Parquet folder give identical Rows."""
    path = make_input(kind, tmp_path, RECORDS)
    assert read(path, keep_columns=("lang",)) == EXPECTED


@pytest.mark.parametrize(("kind", "fmt"), [("jsonl", "jsonl"), ("jsonl.gz", "jsonl"), ("parquet", "parquet")])
def test_reader_reports_path_and_format(tmp_path: Path, kind: str, fmt: str) -> None:
    """The reader exposes the path it reads and its format name."""
    path = make_input(kind, tmp_path, RECORDS)
    with open_input(InputSpec(path)) as reader:
        assert isinstance(reader, InputReader)
        assert reader.path == path
        assert reader.format == fmt


def test_folder_parts_read_in_sorted_name_order_skipping_bookkeeping(tmp_path: Path) -> None:
    """Part files are read by sorted name; _SUCCESS, hidden and non-Parquet files are ignored."""
    folder = tmp_path / "parts"
    folder.mkdir()
    for name, ident in [("b.parquet", "2"), ("a.parquet", "1"), ("c.parquet", "3")]:
        write_parquet(folder / name, [{"id": ident, "prompt": "p"}])
    (folder / "_SUCCESS").write_bytes(b"")
    (folder / "notes.txt").write_text("not data")
    shutil.copy(folder / "a.parquet", folder / ".a.parquet")
    shutil.copy(folder / "a.parquet", folder / "_common.parquet")
    assert [r.id for r in read(folder)] == ["1", "2", "3"]


def test_parquet_bad_row_where_names_the_row(tmp_path: Path) -> None:
    """A Parquet BadRow says 'row N' (0-based) for a file and names the part for a folder."""
    records = [{"id": str(i), "prompt": "p" if i != 3 else None} for i in range(5)]
    items = read(write_parquet(tmp_path / "in.parquet", records))
    bad = items[3]
    assert isinstance(bad, BadRow)
    assert (bad.index, bad.where, bad.id) == (3, "row 3", "3")
    folder = make_input("folder", tmp_path, records)
    bad = read(folder)[3]
    assert isinstance(bad, BadRow)
    assert (bad.index, bad.where) == (3, "part-00001.parquet row 1")


def test_parquet_message_structs_lose_null_fields(tmp_path: Path) -> None:
    """Unset struct fields (None in Parquet) are dropped from messages before sending."""
    records: list[dict[str, Any]] = [
        {"messages": [{"role": "user", "content": "hi", "name": None}]},
        {"messages": [{"role": "user", "content": "yo", "name": "ann"}]},
    ]
    rows = read(write_parquet(tmp_path / "in.parquet", records))
    assert [r.messages for r in rows if isinstance(r, Row)] == [
        [{"role": "user", "content": "hi"}],
        [{"role": "user", "content": "yo", "name": "ann"}],
    ]


def test_jsonl_blank_lines_bom_and_crlf(tmp_path: Path) -> None:
    """Blank lines are skipped, a UTF-8 BOM and CRLF endings are accepted, indexes stay dense."""
    path = tmp_path / "in.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"prompt": "a"}\r\n\r\n   \n\t\n{"prompt": "b"}\r\n\n')
    rows = read(path)
    assert [(r.index, r.id, r.messages) for r in rows if isinstance(r, Row)] == [
        (0, 0, user("a")),
        (1, 1, user("b")),
    ]
    assert len(rows) == 2


def test_last_line_without_newline_is_read(tmp_path: Path) -> None:
    """The final line needs no trailing newline."""
    path = tmp_path / "in.jsonl"
    path.write_bytes(b'{"prompt": "a"}\n{"prompt": "b"}')
    assert [r.messages for r in read(path) if isinstance(r, Row)] == [user("a"), user("b")]


def test_prompt_wins_over_messages_and_null_prompt_falls_back(tmp_path: Path) -> None:
    """A row with a prompt uses it; a null prompt falls back to messages."""
    lines = [
        {"prompt": "p", "messages": [{"role": "user", "content": "m"}]},
        {"prompt": None, "messages": [{"role": "user", "content": "m"}]},
    ]
    rows = read(write_jsonl(tmp_path / "in.jsonl", lines))
    assert [r.messages for r in rows if isinstance(r, Row)] == [user("p"), user("m")]


def test_prompt_column_option(tmp_path: Path) -> None:
    """--prompt-column names the field that holds the prompt."""
    path = write_jsonl(tmp_path / "in.jsonl", [{"question": "why?"}])
    row = only(read(path, prompt_column="question"))
    assert isinstance(row, Row)
    assert row.messages == user("why?")


def test_messages_content_parts_pass_through(tmp_path: Path) -> None:
    """List content (text and image parts) is kept as given."""
    content = [{"type": "text", "text": "what?"}, {"type": "image_url", "image_url": {"url": "u"}}]
    row = only(read(write_jsonl(tmp_path / "in.jsonl", [{"messages": [{"role": "user", "content": content}]}])))
    assert isinstance(row, Row)
    assert row.messages == [{"role": "user", "content": content}]


# --------------------------------------------------------------------------- template


@pytest.mark.parametrize("kind", ["jsonl", "parquet"])
def test_template_renders_row_fields(tmp_path: Path, kind: str) -> None:
    """The template is filled from the row's columns and replaces the prompt."""
    records = [{"text": "A long story.", "lang": "fr", "prompt": "ignored"}]
    path = make_input(kind, tmp_path, records)
    row = only(read(path, template="Summarise in {lang}: {text}"))
    assert isinstance(row, Row)
    assert row.messages == user("Summarise in fr: A long story.")


def test_template_field_missing_from_row_is_a_bad_row(tmp_path: Path) -> None:
    """A JSONL row without a template field is a BadRow naming the field."""
    item = bad_one(tmp_path, {"title": "x"}, {"prompt": "p", "title": "t"}, template="{prompt} / {title}")
    assert "'prompt'" in item.reason
    assert "template" in item.reason


def test_template_null_field_in_parquet_is_a_bad_row(tmp_path: Path) -> None:
    """A null value in a templated Parquet column is a BadRow, not the text 'None'."""
    path = write_parquet(tmp_path / "in.parquet", [{"text": "a"}, {"text": None}])
    items = read(path, template="T: {text}")
    assert isinstance(items[0], Row)
    assert isinstance(items[1], BadRow)
    assert "'text' is null" in items[1].reason


def test_template_nested_access_failure_is_a_bad_row(tmp_path: Path) -> None:
    """A template that indexes into a field that cannot be indexed is a BadRow."""
    item = bad_one(tmp_path, {"meta": 5}, {"meta": {"name": "n"}}, template="{meta[name]}")
    assert "template cannot be filled" in item.reason


@pytest.mark.parametrize("template", ["{}", "{0}", "no fields", "{unclosed", "bad }", "{text!x}"])
def test_unusable_template_is_an_input_error(tmp_path: Path, template: str) -> None:
    """Positional, fieldless or malformed templates are refused up front."""
    path = write_jsonl(tmp_path / "in.jsonl", [{"prompt": "p"}])
    with pytest.raises(InputError, match="template"):
        open_input(InputSpec(path, template=template))


# --------------------------------------------------------------------------- system, images, params


@pytest.mark.parametrize(
    ("record", "job_system", "expected"),
    [
        ({"prompt": "q"}, "Job.", [{"role": "system", "content": "Job."}, *user("q")]),
        ({"prompt": "q", "system": "Row."}, "Job.", [{"role": "system", "content": "Row."}, *user("q")]),
        ({"prompt": "q", "system": "Row."}, None, [{"role": "system", "content": "Row."}, *user("q")]),
        ({"prompt": "q"}, None, user("q")),
        (
            {"messages": [{"role": "system", "content": "Own."}, *user("q")], "system": "Row."},
            "Job.",
            [{"role": "system", "content": "Own."}, *user("q")],
        ),
    ],
)
def test_system_prompt_rules(
    tmp_path: Path, record: dict[str, Any], job_system: str | None, expected: list[Any]
) -> None:
    """A row's system beats the job's; neither is added over a leading system message."""
    row = only(read(write_jsonl(tmp_path / "in.jsonl", [record]), system=job_system))
    assert isinstance(row, Row)
    assert row.messages == expected


@pytest.mark.parametrize(
    ("images", "expected"),
    [("a.png", ["a.png"]), (["a.png", "https://x/b.jpg"], ["a.png", "https://x/b.jpg"]), (None, []), ([], [])],
)
def test_images_field(tmp_path: Path, images: Any, expected: list[str]) -> None:
    """images may be one string or a list of strings; null or absent means none."""
    row = only(read(write_jsonl(tmp_path / "in.jsonl", [{"prompt": "p", "images": images}])))
    assert isinstance(row, Row)
    assert row.images == expected


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_tokens", 1),
        ("max_tokens", 4096),
        ("temperature", 0),
        ("temperature", 1.5),
        ("top_p", 0.95),
        ("stop", "END"),
        ("stop", ["a", "b"]),
        ("seed", 0),
        ("seed", -3),
    ],
)
def test_valid_params_are_copied(tmp_path: Path, field: str, value: Any) -> None:
    """Per-row request overrides of the right type land in Row.params."""
    row = only(read(write_jsonl(tmp_path / "in.jsonl", [{"prompt": "p", field: value}])))
    assert isinstance(row, Row)
    assert row.params == {field: value}


def test_null_params_are_absent(tmp_path: Path) -> None:
    """A null override means 'not set'."""
    row = only(read(write_jsonl(tmp_path / "in.jsonl", [{"prompt": "p", "max_tokens": None, "seed": None}])))
    assert isinstance(row, Row)
    assert row.params == {}


BAD_FIELDS = [
    ({"prompt": "p", "max_tokens": 0}, "'max_tokens' must be a positive integer"),
    ({"prompt": "p", "max_tokens": -5}, "'max_tokens' must be a positive integer"),
    ({"prompt": "p", "max_tokens": 10.0}, "'max_tokens' must be a positive integer"),
    ({"prompt": "p", "max_tokens": "10"}, "'max_tokens' must be a positive integer"),
    ({"prompt": "p", "max_tokens": True}, "'max_tokens' must be a positive integer"),
    ({"prompt": "p", "temperature": "hot"}, "'temperature' must be a number"),
    ({"prompt": "p", "temperature": True}, "'temperature' must be a number"),
    ({"prompt": "p", "temperature": float("nan")}, "'temperature' must be a number"),
    ({"prompt": "p", "top_p": [1]}, "'top_p' must be a number"),
    ({"prompt": "p", "stop": 3}, "'stop' must be a string or a list of strings"),
    ({"prompt": "p", "stop": ["a", 1]}, "'stop' must be a string or a list of strings"),
    ({"prompt": "p", "seed": 1.5}, "'seed' must be an integer"),
    ({"prompt": "p", "system": 5}, "'system' is an integer, not a string"),
    ({"prompt": "p", "images": 5}, "'images' must be a string or a list of strings"),
    ({"prompt": "p", "images": ["a", None]}, "'images' must be a string or a list of strings"),
    ({"text": "no prompt"}, "no 'prompt' or 'messages' field (use --prompt-column or --template)"),
    ({"prompt": None}, "'prompt' is null"),
    ({"prompt": 42}, "'prompt' is an integer, not a string"),
    ({"prompt": ["a"]}, "'prompt' is an array, not a string"),
    ({"messages": "hi"}, "'messages' is a string, not a list of messages"),
    ({"messages": []}, "'messages' is empty"),
    ({"messages": ["hi"]}, "'messages' item 0 is a string, not an object"),
    ({"messages": [{"content": "hi"}]}, "'messages' item 0 has no string 'role'"),
    ({"messages": [{"role": "user", "content": "a"}, {"role": "user"}]}, "'messages' item 1 'content' is null"),
    ({"messages": [{"role": "user", "content": 5}]}, "'messages' item 0 'content' is an integer"),
    ({"body": "x"}, "'body' is a string, not an object"),
    ({"body": {"model": "m"}}, "'body' has no 'messages'"),
    ({"url": "/v1/embeddings", "body": {"messages": user("x")}}, "hfbatch sends only /v1/chat/completions"),
    ({"method": "GET", "body": {"messages": user("x")}}, "must be POST"),
    ({"body": {"messages": user("x"), "max_tokens": "9"}}, "'max_tokens' must be a positive integer"),
]


@pytest.mark.parametrize(("record", "reason"), BAD_FIELDS)
def test_bad_fields_are_bad_rows(tmp_path: Path, record: dict[str, Any], reason: str) -> None:
    """Each malformed field gives a one-line BadRow reason saying what is wrong."""
    item = bad_one(tmp_path, {"id": "r1", **record})
    assert reason in item.reason
    assert "\n" not in item.reason
    assert item.id == "r1"
    assert item.index == 1


# --------------------------------------------------------------------------- OpenAI batch lines and ids


def test_openai_batch_line_is_accepted(tmp_path: Path) -> None:
    """custom_id becomes the id, body.messages the messages, known body keys the params, body.model the model."""
    line = {
        "custom_id": "req-1",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {
            "model": "meta-llama/Llama-3.1-8B-Instruct",
            "stream": True,
            "messages": [{"role": "system", "content": "S"}, *user("hello")],
            "max_tokens": 64,
            "temperature": 0.2,
            "response_format": {"type": "json_object"},
            "made_up_key": 1,
        },
    }
    row = only(read(write_jsonl(tmp_path / "in.jsonl", [line]), system="Job."))
    assert row == Row(
        0,
        "req-1",
        [{"role": "system", "content": "S"}, *user("hello")],
        {"max_tokens": 64, "temperature": 0.2, "response_format": {"type": "json_object"}},
        [],
        {},
        "meta-llama/Llama-3.1-8B-Instruct",
    )


@pytest.mark.parametrize(
    ("records", "id_column", "expected"),
    [
        ([{"id": "x", "custom_id": "y", "prompt": "p"}], None, ["x"]),
        ([{"id": 7, "prompt": "p"}], None, [7]),
        ([{"custom_id": "y", "prompt": "p"}], None, ["y"]),
        ([{"prompt": "p"}, {"prompt": "q"}, {"id": "z", "prompt": "r"}], None, [0, 1, "z"]),
        ([{"key": "k1", "id": "x", "prompt": "p"}], "key", ["k1"]),
        ([{"key": 0, "prompt": "p"}], "key", [0]),
    ],
)
def test_id_rules(tmp_path: Path, records: list[Any], id_column: str | None, expected: list[Any]) -> None:
    """id_column, then id, then custom_id, then the row number."""
    rows = read(write_jsonl(tmp_path / "in.jsonl", records), id_column=id_column)
    assert [r.id for r in rows] == expected
    assert all(isinstance(r, Row) for r in rows)


def test_parquet_row_number_ids(tmp_path: Path) -> None:
    """A Parquet file without an id column uses the row number as the id."""
    path = write_parquet(tmp_path / "in.parquet", [{"prompt": str(i)} for i in range(5)])
    assert [r.id for r in read(path)] == [0, 1, 2, 3, 4]


@pytest.mark.parametrize(
    ("record", "fragment"),
    [
        ({"id": True}, "'id' is a boolean"),
        ({"id": 1.5}, "'id' is a number (1.5)"),
        ({"id": None}, "'id' is null"),
        ({"id": ["a"]}, "'id' is an array"),
        ({"custom_id": {"a": 1}}, "'custom_id' is an object"),
    ],
)
def test_bad_ids_are_bad_rows_without_an_id(tmp_path: Path, record: dict[str, Any], fragment: str) -> None:
    """An id that is not a string or an integer is a BadRow with no id."""
    item = bad_one(tmp_path, {**record, "prompt": "p"})
    assert fragment in item.reason
    assert "must be a string or an integer" in item.reason
    assert item.id is None


def test_id_column_missing_from_a_row(tmp_path: Path) -> None:
    """With --id-column, a JSONL row lacking that field is a BadRow."""
    items = read(write_jsonl(tmp_path / "in.jsonl", [{"k": "1", "prompt": "p"}, {"prompt": "p"}]), id_column="k")
    assert isinstance(items[0], Row)
    assert isinstance(items[1], BadRow)
    assert "no 'k' field" in items[1].reason


def test_duplicate_ids_are_not_checked(tmp_path: Path) -> None:
    """Duplicate ids pass through; the runner decides what to do."""
    rows = read(write_jsonl(tmp_path / "in.jsonl", [{"id": 1, "prompt": "a"}, {"id": 1, "prompt": "b"}]))
    assert [type(r) for r in rows] == [Row, Row]


# --------------------------------------------------------------------------- keep columns


@pytest.mark.parametrize("kind", ["jsonl", "parquet"])
def test_keep_columns(tmp_path: Path, kind: str) -> None:
    """keep_columns are copied verbatim; a row that lacks one (or holds null) keeps None."""
    records: list[dict[str, Any]] = [
        {"prompt": "p", "meta": {"a": [1, 2]}, "n": 3},
        {"prompt": "q", "meta": None},
    ]
    rows = read(make_input(kind, tmp_path, records), keep_columns=("meta", "n"))
    assert [r.keep for r in rows if isinstance(r, Row)] == [
        {"meta": {"a": [1, 2]}, "n": 3},
        {"meta": None, "n": None},
    ]


@pytest.mark.parametrize("kind", ["jsonl", "parquet"])
def test_a_kept_column_no_row_has_is_refused_naming_it(tmp_path: Path, kind: str) -> None:
    """A typo in --keep-columns is an InputError before any request, naming the column and the columns there are."""
    records: list[dict[str, Any]] = [{"prompt": "p", "topic": "t"}, {"prompt": "q", "topic": "u"}]
    with pytest.raises(InputError, match="'topik'") as info:
        read(make_input(kind, tmp_path, records), keep_columns=("topic", "topik"))
    assert "--keep-columns" in str(info.value) and "prompt, topic" in str(info.value)


def test_a_kept_column_first_seen_late_in_the_sniff_is_accepted(tmp_path: Path) -> None:
    """A sparse JSONL column is fine as long as one of the first rows has it."""
    records: list[dict[str, Any]] = [{"prompt": f"p{i}"} for i in range(300)] + [{"prompt": "x", "rare": 1}]
    rows = read(make_input("jsonl", tmp_path, records), keep_columns=("rare",))
    assert [r.keep["rare"] for r in rows if isinstance(r, Row)][-2:] == [None, 1]


# --------------------------------------------------------------------------- bad lines


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (b'{"prompt": "x"', "not valid JSON: Expecting ',' delimiter at the end of the line"),
        (b"not json", "not valid JSON: Expecting value at column 1"),
        (b'{"prompt": "x"} trailing', "not valid JSON: Extra data at column 17"),
        (b'{"prompt": "x",}', "not valid JSON: Expecting property name enclosed in double quotes at column 16"),
        (b"[1, 2]", "line is an array, not a JSON object"),
        (b'"just a string"', "line is a string, not a JSON object"),
        (b"42", "line is an integer, not a JSON object"),
        (b"null", "line is null, not a JSON object"),
        (b'{"prompt": "caf\xe9"}', "line is not valid UTF-8"),
        (b"[" * 100_000 + b"]" * 100_000, "JSON cannot be read"),
        (b'{"id": ' + b"9" * 5000 + b"}", "JSON cannot be read"),
    ],
)
def test_bad_lines_are_bad_rows_at_the_right_line(tmp_path: Path, raw: bytes, fragment: str) -> None:
    """Unparseable lines become BadRows with the 1-based line number; reading goes on."""
    path = write_jsonl(tmp_path / "in.jsonl", [{"prompt": "a"}, "", raw, "   ", {"prompt": "b"}])
    items = read(path)
    assert [type(i) for i in items] == [Row, BadRow, Row]
    bad = items[1]
    assert isinstance(bad, BadRow)
    assert (bad.index, bad.where, bad.id) == (1, "line 3", None)
    assert fragment in bad.reason
    assert "\n" not in bad.reason
    assert items[2].index == 2


# --------------------------------------------------------------------------- whole-file errors


def _truncated_parquet(tmp_path: Path) -> Path:
    path = write_parquet(tmp_path / "in.parquet", [{"prompt": "p"}] * 10)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _folder_with_mismatched_parts(tmp_path: Path) -> Path:
    folder = tmp_path / "parts"
    folder.mkdir()
    write_parquet(folder / "part-0.parquet", [{"id": 1, "prompt": "p"}])
    write_parquet(folder / "part-1.parquet", [{"id": "1", "prompt": "p"}])
    return folder


def _folder_with_extra_column(tmp_path: Path) -> Path:
    folder = tmp_path / "parts"
    folder.mkdir()
    write_parquet(folder / "part-0.parquet", [{"prompt": "p"}])
    write_parquet(folder / "part-1.parquet", [{"prompt": "p", "extra": 1}])
    return folder


def _empty_parquet(tmp_path: Path) -> Path:
    path = tmp_path / "in.parquet"
    pq.write_table(pa.table({"prompt": pa.array([], pa.string())}), path)
    return path


def _bytes(name: str, data: bytes) -> Any:
    def make(tmp_path: Path) -> Path:
        path = tmp_path / name
        path.write_bytes(data)
        return path

    return make


def _lines(name: str, lines: list[Any]) -> Any:
    return lambda tmp_path: write_jsonl(tmp_path / name, lines)


def _dir(tmp_path: Path) -> Path:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "rows.jsonl").write_text('{"prompt": "p"}\n')
    return tmp_path / "d"


FILE_ERRORS: list[tuple[str, Any, dict[str, Any], str]] = [
    ("missing", lambda p: p / "nope.jsonl", {}, "no such file or folder"),
    ("folder without parquet", _dir, {}, "holds no \\*.parquet files"),
    ("unknown extension", _bytes("in.csv", b"prompt\nhi\n"), {}, "unsupported input type.*\\.jsonl, \\.jsonl\\.gz"),
    ("json extension", _bytes("in.json", b"{}"), {}, "rename it to \\.jsonl"),
    ("empty jsonl", _bytes("in.jsonl", b""), {}, "is empty"),
    ("blank jsonl", _bytes("in.jsonl", b"\n  \n\t\n"), {}, "is empty"),
    ("empty jsonl.gz", _bytes("in.jsonl.gz", gzip.compress(b"")), {}, "is empty"),
    ("gzip named jsonl", _bytes("in.jsonl", gzip.compress(b'{"prompt": "p"}\n')), {}, "rename it to \\.jsonl\\.gz"),
    ("binary jsonl", _bytes("in.jsonl", b'{"prompt": "p"}\n\x00\x01\x02'), {}, "NUL bytes"),
    ("utf-16 jsonl", _bytes("in.jsonl", '{"prompt": "p"}\n'.encode("utf-16")), {}, "NUL bytes"),
    ("not jsonl", _lines("in.jsonl", ["a,b", "1,2", "3,4"]), {}, "does not look like JSONL"),
    ("json array", _bytes("in.jsonl", b'[{"prompt": "p"},\n{"prompt": "q"}]\n'), {}, "looks like one JSON array"),
    ("five non-objects", _lines("in.jsonl", ["1", "2", "", "3", "4", "5", {"prompt": "p"}]), {}, "first 5 non-blank"),
    ("plain text jsonl.gz", _bytes("in.jsonl.gz", b'{"prompt": "p"}\n'), {}, "is not gzip data"),
    ("corrupt jsonl.gz", _bytes("in.jsonl.gz", b"\x1f\x8b\x08\x00garbage-garbage"), {}, "is not valid gzip"),
    ("truncated parquet", _truncated_parquet, {}, "not a readable Parquet file"),
    ("garbage parquet", _bytes("in.parquet", b"PAR1 not really"), {}, "not a readable Parquet file"),
    ("zero-byte parquet", _bytes("in.parquet", b""), {}, "is empty"),
    ("zero-row parquet", _empty_parquet, {}, "is empty \\(no rows\\)"),
    (
        "no prompt column",
        lambda p: write_parquet(p / "in.parquet", [{"text": "t", "id": 1}]),
        {},
        "no 'prompt', 'messages' or 'body' column \\(columns: text, id\\).*--prompt-column",
    ),
    (
        "prompt column named but absent",
        lambda p: write_parquet(p / "in.parquet", [{"prompt": "t"}]),
        {"prompt_column": "question"},
        "no 'question', 'messages' or 'body' column",
    ),
    (
        "template column absent",
        lambda p: write_parquet(p / "in.parquet", [{"text": "t"}]),
        {"template": "{text} {title}"},
        "template uses 'title', which is not a column",
    ),
    (
        "id column absent",
        lambda p: write_parquet(p / "in.parquet", [{"prompt": "t"}]),
        {"id_column": "key"},
        "no 'key' column for ids",
    ),
    ("parts with different types", _folder_with_mismatched_parts, {}, "different schemas.*part-1.parquet.*id"),
    ("parts with an extra column", _folder_with_extra_column, {}, "different schemas.*extra column"),
]


@pytest.mark.parametrize(("name", "make", "kw", "match"), FILE_ERRORS, ids=[e[0] for e in FILE_ERRORS])
def test_whole_file_problems_raise_input_error(
    tmp_path: Path, name: str, make: Any, kw: dict[str, Any], match: str
) -> None:
    """open_input refuses an unusable input with an InputError naming the path."""
    path = make(tmp_path)
    with pytest.raises(InputError, match=match) as info:
        open_input(InputSpec(path, **kw))
    assert str(path) in str(info.value) or path.name in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("kind", ["jsonl", "parquet", "folder"])
def test_unreadable_file_is_an_input_error(tmp_path: Path, kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file that cannot be opened for reading is an InputError saying so."""
    path = make_input(kind, tmp_path, RECORDS)
    real_open = open

    def deny(file: Any, *args: Any, **kwargs: Any) -> Any:
        if Path(file).suffix in (".jsonl", ".parquet"):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    # Tests often run as root, which chmod cannot lock out, so the module's open is replaced.
    monkeypatch.setattr(input_base, "open", deny, raising=False)
    with pytest.raises(InputError, match="permission denied"):
        open_input(InputSpec(path))


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="needs a non-root POSIX user")
def test_unreadable_file_by_permissions(tmp_path: Path) -> None:
    """A file without read permission is an InputError."""
    path = make_input("jsonl", tmp_path, RECORDS)
    path.chmod(0)
    try:
        with pytest.raises(InputError, match="permission denied"):
            open_input(InputSpec(path))
    finally:
        path.chmod(0o600)


def test_corrupt_later_row_group_raises_input_error_with_row_range(tmp_path: Path) -> None:
    """A bad row group found while iterating raises InputError naming the file and rows."""
    path = tmp_path / "in.parquet"
    table = pa.table({"id": list(range(4000)), "prompt": [f"prompt number {i} " * 5 for i in range(4000)]})
    pq.write_table(table, path, row_group_size=1000)
    column = pq.ParquetFile(path).metadata.row_group(3).column(1)
    start = column.dictionary_page_offset or column.data_page_offset
    data = bytearray(path.read_bytes())
    for k in range(start, start + 64):
        data[k] ^= 0xFF
    path.write_bytes(bytes(data))

    reader = open_input(InputSpec(path))
    seen = 0
    with pytest.raises(InputError, match=r"in\.parquet: rows 3000-3999 \(row group 3\) cannot be read") as info:
        for _ in reader:
            seen += 1
    assert seen == 3000
    assert "\n" not in str(info.value)
    assert not isinstance(info.value.__cause__, InputError)


def test_truncated_gzip_mid_stream_raises_input_error(tmp_path: Path) -> None:
    """A .jsonl.gz cut short after its header raises InputError while iterating."""
    lines = [{"id": i, "prompt": os.urandom(40).hex()} for i in range(30_000)]
    path = write_jsonl(tmp_path / "in.jsonl.gz", lines)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 3 // 4])
    reader = open_input(InputSpec(path))
    seen = 0
    with pytest.raises(InputError, match=r"reading failed after line \d+.*truncated or corrupt"):
        for _ in reader:
            seen += 1
    assert 1000 < seen < 30_000


# --------------------------------------------------------------------------- reader lifecycle and laziness


def test_reader_can_be_iterated_twice_and_closed(tmp_path: Path) -> None:
    """Each iteration starts over; close() ends iterations in progress."""
    reader = open_input(InputSpec(write_jsonl(tmp_path / "in.jsonl", RECORDS)))
    assert list(reader) == list(reader)
    running = iter(reader)
    next(running)
    reader.close()
    assert list(running) == []
    with pytest.raises(ValueError, match="closed"):
        iter(reader)


def test_large_parquet_is_read_lazily(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Taking 10 rows of a 200,000-row file decodes one small batch, not the whole file."""
    n = 200_000
    path = tmp_path / "big.parquet"
    table = pa.table({"id": pa.array(range(n)), "prompt": pa.array([f"p{i}" for i in range(n)])})
    pq.write_table(table, path, row_group_size=50_000)
    decoded: list[int] = []
    real = pq.ParquetFile.iter_batches

    def counting(self: Any, *args: Any, **kwargs: Any) -> Generator[Any, None, None]:
        for batch in real(self, *args, **kwargs):
            decoded.append(batch.num_rows)
            yield batch

    monkeypatch.setattr(pq.ParquetFile, "iter_batches", counting)
    with open_input(InputSpec(path)) as reader:
        stream = iter(reader)
        assert isinstance(stream, Generator)
        first = list(itertools.islice(stream, 10))
        assert [r.id for r in first] == list(range(10))
        assert sum(decoded) <= parquet_input.PARQUET_BATCH_ROWS
        assert sum(1 for _ in stream) == n - 10
    assert max(decoded) <= parquet_input.PARQUET_BATCH_ROWS


# --------------------------------------------------------------------------- fingerprint


def input_fingerprint(path: Path) -> dict[str, Any]:
    """The fingerprint a run records for the input at `path`."""
    with open_input(InputSpec(path)) as reader:
        return reader.fingerprint()


def test_fingerprint_tracks_content_not_mtime(tmp_path: Path) -> None:
    """The fingerprint is JSON-able and stable, and changes with size, head or tail."""
    path = tmp_path / "in.jsonl"
    body = bytearray(b'{"prompt": "x"}\n' * 300_000)  # ~4.8 MB: head, middle and tail differ
    path.write_bytes(bytes(body))
    first = input_fingerprint(path)
    assert json.loads(json.dumps(first)) == first
    assert first["files"][0]["name"] == "in.jsonl"
    assert first["files"][0]["size"] == len(body)
    os.utime(path, (1, 1))
    assert input_fingerprint(path) == first

    for offset in (0, len(body) - 3):
        changed = bytearray(body)
        changed[offset : offset + 1] = b"Y"
        path.write_bytes(bytes(changed))
        assert input_fingerprint(path) != first
    path.write_bytes(bytes(body) + b"\n")
    assert input_fingerprint(path) != first
    path.write_bytes(bytes(body))
    assert input_fingerprint(path) == first


def test_fingerprint_of_small_file_and_folder(tmp_path: Path) -> None:
    """A small file is hashed whole; a folder lists every part file in name order."""
    small = write_jsonl(tmp_path / "s.jsonl", [{"prompt": "a"}])
    before = input_fingerprint(small)
    write_jsonl(small, [{"prompt": "b"}])
    assert input_fingerprint(small) != before

    folder = make_input("folder", tmp_path, RECORDS)
    fp = input_fingerprint(folder)
    assert [f["name"] for f in fp["files"]] == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    assert input_fingerprint(folder) == fp
    shutil.copy(folder / "part-00000.parquet", folder / "part-00003.parquet")
    assert input_fingerprint(folder) != fp


def test_fingerprint_of_missing_file_is_an_input_error(tmp_path: Path) -> None:
    """A fingerprint of a file that is gone is an InputError."""
    path = write_jsonl(tmp_path / "gone.jsonl", [{"prompt": "a"}])
    with open_input(InputSpec(path)) as reader:
        path.unlink()
        with pytest.raises(InputError, match="fingerprint"):
            reader.fingerprint()


# --------------------------------------------------------------------------- property


_valid_lines = st.builds(
    lambda prompt, ascii_only: json.dumps({"prompt": prompt}, ensure_ascii=ascii_only).encode(),
    st.text(max_size=20),
    st.booleans(),
)
_garbage_lines = st.one_of(
    st.text(max_size=30).map(str.encode),
    st.binary(max_size=30),
).filter(lambda b: b"\n" not in b and b"\x00" not in b)
_blank_lines = st.sampled_from([b"", b" ", b"\t", b"\r", b"  \t \r"])


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    lines=st.lists(
        st.one_of(
            _valid_lines.map(lambda b: ("valid", b)),
            _garbage_lines.map(lambda b: ("garbage", b)),
            _blank_lines.map(lambda b: ("blank", b)),
        ),
        max_size=40,
    ),
    trailing_newline=st.booleans(),
)
def test_garbage_never_stops_iteration(
    tmp_path_factory: pytest.TempPathFactory, lines: list[tuple[str, bytes]], trailing_newline: bool
) -> None:
    """Any mix of good, garbage and blank lines yields one item per non-blank line, in order."""
    # The first line is always good, so open_input's "does this look like JSONL" sniff passes.
    lines = [("valid", b'{"prompt": "first"}'), *lines]
    path = tmp_path_factory.mktemp("prop") / "in.jsonl"
    path.write_bytes(b"\n".join(raw for _, raw in lines) + (b"\n" if trailing_newline else b""))
    expected = [(n, kind, raw) for n, (kind, raw) in enumerate(lines, 1) if raw.strip()]

    items = read(path)

    assert len(items) == len(expected)
    for position, (item, (lineno, kind, raw)) in enumerate(zip(items, expected, strict=True)):
        assert item.index == position
        if kind == "valid":
            assert isinstance(item, Row)
            assert item.messages == user(json.loads(raw)["prompt"])
        if isinstance(item, BadRow):
            assert item.where == f"line {lineno}"
            assert item.reason and "\n" not in item.reason
