"""Incremental input for cron: an input that only grew resumes without --force; any other change is refused."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hfbatch.errors import ExitCode, UsageError
from hfbatch.inputs.base import FINGERPRINT_CHUNK
from hfbatch.runner import run_job
from hfbatch.sim import SimServer
from tests.test_run import prompts, read_output, spec_for, write_jsonl

pytestmark = pytest.mark.usefixtures("fast_time")


def append(path: Path, rows: Sequence[Mapping[str, object]]) -> None:
    """Add rows at the end of a JSONL file, as a nightly export does."""
    with open(path, "a", encoding="utf-8") as f:
        f.write("".join(json.dumps(r) + "\n" for r in rows))


async def test_appended_rows_are_the_only_ones_sent_the_next_night(sim: SimServer, tmp_path: Path) -> None:
    """Night 1 does 100 rows; 50 are appended; night 2 sends exactly those 50, without --force."""
    rows = prompts(150)
    inp = write_jsonl(tmp_path / "in.jsonl", rows[:100])
    assert (await run_job(spec_for(sim, tmp_path, inp))).exit_code is ExitCode.OK
    append(inp, rows[100:])
    sim.reset_counts()
    report = await run_job(spec_for(sim, tmp_path, inp))
    assert report.exit_code is ExitCode.OK
    assert report.stats["rows"]["done"] == 50 and report.stats["rows"]["skipped_already_done"] == 100
    assert sim.billing()["total"]["replies"] == 50
    assert sorted(r["id"] for r in read_output(tmp_path / "out.jsonl")) == sorted(r["id"] for r in rows)
    append(inp, prompts(151)[150:])  # and again the night after: the manifest now holds night 2's size
    assert (await run_job(spec_for(sim, tmp_path, inp))).stats["rows"]["done"] == 1


async def test_a_big_file_that_grew_is_checked_by_its_prefix(sim: SimServer, tmp_path: Path) -> None:
    """A file past 2 MiB that grew is recognised from a hash of what the last run read, not a re-read."""
    padding = "x" * 2000
    rows = [{"id": f"r{i}", "prompt": f"p{i}", "pad": padding} for i in range(1600)]
    inp = write_jsonl(tmp_path / "in.jsonl", rows[:1500])
    assert inp.stat().st_size > 2 * FINGERPRINT_CHUNK
    spec = spec_for(sim, tmp_path, inp, concurrency=64)
    assert (await run_job(spec)).exit_code is ExitCode.OK
    append(inp, rows[1500:])
    assert (await run_job(spec)).stats["rows"]["done"] == 100


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        pytest.param(lambda p: p.write_text(p.read_text().replace("r0", "R0", 1)), "first .* bytes changed", id="edit"),
        pytest.param(lambda p: p.write_text(p.read_text()[:-40]), "shorter", id="truncated"),
        pytest.param(
            lambda p: p.write_text("".join(p.read_text().splitlines(keepends=True)[::-1])),
            "first .* bytes changed",
            id="reordered",
        ),
    ],
)
async def test_any_other_change_to_a_jsonl_input_is_refused_with_the_reason(
    sim: SimServer, tmp_path: Path, change: object, reason: str
) -> None:
    """An edited, cut or reordered input is not growth: the resume is refused, saying what changed."""
    inp = write_jsonl(tmp_path / "in.jsonl", prompts(30))
    await run_job(spec_for(sim, tmp_path, inp))
    change(inp)  # type: ignore[operator]
    with pytest.raises(UsageError, match=reason):
        await run_job(spec_for(sim, tmp_path, inp))


async def test_a_last_line_without_newline_may_have_changed(sim: SimServer, tmp_path: Path) -> None:
    """When the old file did not end in a newline, its last row may have been completed since: refused."""
    inp = tmp_path / "in.jsonl"
    inp.write_text("".join(json.dumps(r) + "\n" for r in prompts(10)) + json.dumps({"id": "last", "prompt": "a"}))
    await run_job(spec_for(sim, tmp_path, inp))
    inp.write_text(inp.read_text() + "\n" + json.dumps({"id": "more", "prompt": "b"}) + "\n")
    with pytest.raises(UsageError, match="no newline"):
        await run_job(spec_for(sim, tmp_path, inp))


def _part(folder: Path, name: str, start: int, n: int) -> None:
    ids = [f"r{i}" for i in range(start, start + n)]
    pq.write_table(pa.table({"id": ids, "prompt": [f"prompt {i}" for i in ids]}), folder / name)


async def test_a_parquet_folder_that_gained_parts_resumes(sim: SimServer, tmp_path: Path) -> None:
    """New part files sorting after the old ones are new rows; an old part changed or a part sorting first is not."""
    folder = tmp_path / "in"
    folder.mkdir()
    _part(folder, "part-001.parquet", 0, 20)
    await run_job(spec_for(sim, tmp_path, folder))
    _part(folder, "part-002.parquet", 20, 10)
    assert (await run_job(spec_for(sim, tmp_path, folder))).stats["rows"]["done"] == 10
    _part(folder, "part-000.parquet", 100, 5)
    with pytest.raises(UsageError, match=r"part-000\.parquet sorts before the old part part-002\.parquet"):
        await run_job(spec_for(sim, tmp_path, folder))
    (folder / "part-000.parquet").unlink()
    _part(folder, "part-001.parquet", 0, 21)
    with pytest.raises(UsageError, match=r"part part-001\.parquet changed"):
        await run_job(spec_for(sim, tmp_path, folder))
