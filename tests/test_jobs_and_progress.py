"""The shipped job files, and progress output with and without a terminal."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from hfbatch.jobfile import build_spec, load_job_file
from hfbatch.progress import Progress
from hfbatch.stats import RunStats

JOBS = sorted((Path(__file__).resolve().parent.parent / "jobs").glob("*.toml"))


@pytest.mark.parametrize("job", JOBS, ids=[j.stem for j in JOBS])
def test_every_shipped_job_file_is_valid_and_its_input_exists(job: Path) -> None:
    """Each jobs/*.toml loads, validates, and names an input that is in the repository."""
    spec = build_spec(load_job_file(job), {})
    assert spec.input.exists(), spec.input
    assert spec.output.parent == job.parent / "out"


def test_job_files_cover_the_use_cases() -> None:
    """The quickstart runs on the simulator; the others point at the real Hugging Face endpoints."""
    specs = {j.stem: build_spec(load_job_file(j), {}) for j in JOBS}
    assert specs["quickstart"].sim is not None
    for name in ("generate-dataset", "evaluate", "nightly"):
        assert specs[name].sim is None and specs[name].api_base.startswith("https://router.huggingface.co")
    assert specs["evaluate"].temperature == 0.0 and "reference" in specs["evaluate"].keep_columns


def test_without_a_terminal_progress_is_plain_lines_never_a_bar() -> None:
    """Off a terminal (cron), progress is whole lines with counts, no carriage returns."""
    stream = io.StringIO()
    progress = Progress(stream, interval=0.0)
    stats = RunStats()
    stats.rows_done, stats.rows_failed = 7, 2
    progress(stats)
    progress.close(stats)
    text = stream.getvalue()
    assert "\r" not in text
    assert text.count("\n") == 2 and "7 done, 2 failed" in text


def test_plain_progress_lines_are_spaced_by_the_interval() -> None:
    """Calls within the interval print nothing more."""
    stream = io.StringIO()
    progress = Progress(stream, interval=3600.0)
    for _ in range(100):
        progress(RunStats())
    assert stream.getvalue() == ""


def test_plain_progress_gives_time_left_when_the_input_size_is_known() -> None:
    """With the input's row count known, the plain line says about how long is left."""
    stream = io.StringIO()
    progress = Progress(stream, interval=0.0)
    stats = RunStats()
    stats.rows_total, stats.rows_done = 100, 10
    progress(stats)
    assert "s left" in stream.getvalue()


def test_count_rows_of_each_input_format(tmp_path: Path) -> None:
    """Small inputs are counted exactly (Parquet metadata, JSONL lines); a gzipped input is not judged."""
    import gzip
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    from hfbatch.inputs import InputSpec, open_input

    lines = "".join(json.dumps({"prompt": f"p{i}"}) + "\n" for i in range(37))
    (tmp_path / "a.jsonl").write_text(lines.rstrip("\n"))  # no newline after the last line
    (tmp_path / "b.jsonl.gz").write_bytes(gzip.compress(lines.encode()))
    pq.write_table(pa.table({"prompt": [f"p{i}" for i in range(41)]}), tmp_path / "c.parquet", row_group_size=10)
    counts = {}
    for name in ("a.jsonl", "b.jsonl.gz", "c.parquet"):
        with open_input(InputSpec(path=tmp_path / name)) as reader:
            counts[name] = reader.estimate_rows()
    assert counts == {"a.jsonl": 37, "b.jsonl.gz": None, "c.parquet": 41}


def test_estimate_of_a_large_jsonl_is_close(tmp_path: Path) -> None:
    """A JSONL past the sampled head is estimated within a few percent of its line count."""
    import json

    from hfbatch.inputs import InputSpec, open_input

    path = tmp_path / "big.jsonl"
    with open(path, "w") as f:
        for i in range(150_000):
            f.write(json.dumps({"id": i, "prompt": "x" * (i % 50)}) + "\n")
    with open_input(InputSpec(path=path)) as reader:
        estimate = reader.estimate_rows()
    assert estimate is not None and abs(estimate - 150_000) < 150_000 * 0.05
