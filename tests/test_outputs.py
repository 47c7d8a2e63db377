"""Reading back what earlier runs wrote: the journal scan, the id set, and skipping done rows unparsed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hfbatch.idset import IdSet
from hfbatch.inputs import DoneRow, InputSpec, Row, open_input
from hfbatch.outputs.journal import _SCAN_BLOCK, IdScanner, scan_journal


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


def test_scan_stops_at_a_torn_tail_and_at_a_garbage_line(tmp_path: Path) -> None:
    """A last line without its newline, or a line that is not a record, ends the good part."""
    path = tmp_path / "out.jsonl"
    good = "".join(record(f"r{i}") for i in range(5))
    path.write_text(good + '{"id": "r5", "outp')
    found = IdSet()
    assert scan_journal(path, found, IdScanner()) == len(good.encode())
    assert "r4" in found and "r5" not in found
    path.write_text(good + "not json at all\n" + record("r9"))
    found = IdSet()
    assert scan_journal(path, found, IdScanner()) == len(good.encode())
    assert "r9" not in found


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
