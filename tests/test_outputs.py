"""Reading back what earlier runs wrote: the journal scan, the id set, and skipping done rows unparsed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from hfbatch.errors import UsageError
from hfbatch.idset import IdSet
from hfbatch.inputs import DoneRow, InputSpec, Row, open_input
from hfbatch.outputs import FORMATS, OutputFiles
from hfbatch.outputs.journal import _SCAN_BLOCK, IdScanner, scan_journal
from hfbatch.outputs.jsonl import JournalFormat


def record(row_id: object) -> str:
    """A result line as hfbatch writes it."""
    return json.dumps({"id": row_id, "output": "x y z", "finish_reason": "stop"}, ensure_ascii=False) + "\n"


@pytest.mark.parametrize(
    "ids",
    [
        pytest.param([f"r{i}" for i in range(50)], id="strings"),
        pytest.param(list(range(50)), id="ints"),
        pytest.param(["a", 1, 'quote"inside', "back\\slash", "ünï", -3, ""], id="mixed-and-escaped"),
    ],
)
def test_scan_finds_every_id_and_the_whole_length(tmp_path: Path, ids: list[object]) -> None:
    """Every id written is read back with its type, and the whole file counts as good."""
    path = tmp_path / "out.jsonl"
    path.write_text("".join(record(i) for i in ids), encoding="utf-8")
    found = IdSet()
    assert scan_journal(path, found, IdScanner()) == path.stat().st_size
    assert all(i in found for i in ids)
    assert "nope" not in found and 999 not in found


def test_scan_cuts_only_a_torn_last_line(tmp_path: Path) -> None:
    """A last line without its newline is a torn write: its length is not counted, its id not read."""
    path = tmp_path / "out.jsonl"
    good = "".join(record(f"r{i}") for i in range(5))
    path.write_text(good + '{"id": "r5", "outp')
    found = IdSet()
    assert scan_journal(path, found, IdScanner()) == len(good.encode())
    assert "r4" in found and "r5" not in found


def test_scan_skips_blank_lines_and_keeps_every_record_after_them(tmp_path: Path) -> None:
    """Blank lines in the middle of an output are skipped; the results after them still count as done."""
    path = tmp_path / "out.jsonl"
    text = record("a") + "\n" + "   \n" + record("b") + record("c")
    path.write_text(text)
    found = IdSet()
    assert scan_journal(path, found, IdScanner()) == len(text.encode())
    assert all(i in found for i in ("a", "b", "c"))


@pytest.mark.parametrize("garbage", ["not json at all", '{"no_id": 1}', "[1, 2]"])
def test_a_whole_line_that_is_not_a_record_stops_with_its_line_number(tmp_path: Path, garbage: str) -> None:
    """A damaged line before the end is a usage error naming the line: nothing after it is cut or re-paid."""
    path = tmp_path / "out.jsonl"
    path.write_text(record("a") + record("b") + garbage + "\n" + record("c"))
    before = path.read_bytes()
    with pytest.raises(UsageError, match="line 3 "):
        scan_journal(path, IdSet(), IdScanner())
    assert path.read_bytes() == before


def test_scan_across_block_boundaries(tmp_path: Path) -> None:
    """Records that straddle the scan's read blocks are all found."""
    path = tmp_path / "out.jsonl"
    n = _SCAN_BLOCK // 40 + 500
    path.write_text("".join(record(f"id-{i}") for i in range(n)))
    found = IdSet()
    assert scan_journal(path, found, IdScanner()) == path.stat().st_size
    assert all(f"id-{i}" in found for i in range(n))


def test_id_set_keeps_ints_and_strings_apart() -> None:
    """1 and "1" are different ids; add says whether the id was new."""
    ids = IdSet()
    assert ids.add(1) and ids.add("1") and not ids.add(1) and not ids.add("1")
    assert ids.add(10**12) and 10**12 in ids and ids.add(-1) and -1 in ids


def test_done_rows_are_not_parsed_again(tmp_path: Path) -> None:
    """A line whose leading id is done comes back as DoneRow even if the rest would not parse."""
    path = tmp_path / "in.jsonl"
    path.write_text(
        '{"id": "a", "prompt": "one"}\n'
        '{"id": "b", "prompt": BROKEN but done\n'
        '{"id": 7, "prompt": "seven"}\n'
        '{"prompt": "no id, row number 3"}\n'
        '{"id": "e", "prompt": "not done"}\n'
    )
    done = IdSet(["a", "b", 7, 3])
    with open_input(InputSpec(path=path)) as reader:
        items = list(reader.rows(done))
    assert [type(i) for i in items] == [DoneRow, DoneRow, DoneRow, DoneRow, Row]
    assert [i.id for i in items] == ["a", "b", 7, 3, "e"]
    with open_input(InputSpec(path=path)) as reader:
        plain = list(reader.rows())
    assert [type(i).__name__ for i in plain] == ["Row", "BadRow", "Row", "Row", "Row"]


def test_an_id_column_is_the_key_that_is_skipped(tmp_path: Path) -> None:
    """With --id-column, a line is skipped by that key, not by 'id'."""
    path = tmp_path / "in.jsonl"
    path.write_text('{"key": "k1", "id": "x", "prompt": "p"}\n{"id": "k1", "key": "k2", "prompt": "q"}\n')
    with open_input(InputSpec(path=path, id_column="key")) as reader:
        items = list(reader.rows(IdSet(["k1"])))
    assert [type(i) for i in items] == [DoneRow, Row]
    assert items[1].id == "k2"


class WrappedFormat(JournalFormat):
    """A test format whose lines do not start with the row id: {"id": "req_<n>", "custom_id": <row id>, ...}."""

    name = "wrapped"
    scanner = IdScanner(key="custom_id", lead=rb'\{"id": "req_[0-9]+", "custom_id": ')

    def encode(self, record: dict[str, Any]) -> str:
        """The record wrapped under its own request id."""
        return json.dumps({"id": f"req_{abs(hash(record['id'])) % 10**6}", "custom_id": record["id"], "data": record})


def test_a_format_added_through_the_registry_resumes_by_its_own_scanner(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One class and one registry entry make a format: its results are written and found again on resume."""
    monkeypatch.setitem(FORMATS, "wrapped", WrappedFormat)
    out = tmp_path / "out.jsonl"
    ids: list[Any] = ["a", "b", 7, 'q"uote']
    files = OutputFiles(out, format="wrapped")
    with files:
        files.prepare({}, {}, restart=False, force=False)
        files.load_done(IdSet())
        files.start({}, {})
        for row_id in ids:
            files.add_result({"id": row_id, "output": "x"})
        files.close()
    lines = out.read_text().splitlines()
    assert [json.loads(line)["custom_id"] for line in lines] == ids
    assert all(line.startswith('{"id": "req_') for line in lines)
    found = IdSet()
    with OutputFiles(out, format="wrapped") as again:
        again.load_done(found)
    assert all(i in found for i in ids) and "c" not in found
