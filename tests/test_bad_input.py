"""Bad input, end to end: whole-file problems stop before any request; bad rows go to the errors file."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner, Result

from hfbatch.cli import cli
from hfbatch.sim import SimConfig, SimProvider, SimServer
from tests.helpers import MODEL, one_model

pytestmark = pytest.mark.usefixtures("fast_time")


@pytest.fixture
def sim_config() -> SimConfig:
    """One healthy provider."""
    return one_model(SimProvider("p1"))


def run(sim: SimServer, inp: Path, out: Path, *extra: str) -> Result:
    """`hfbatch run` on `inp` against the simulator."""
    args = [
        "run",
        "--input",
        str(inp),
        "--output",
        str(out),
        "--model",
        MODEL,
        "--api-base",
        sim.api_base,
        "--hub-url",
        sim.hub_url,
        *extra,
    ]
    return CliRunner().invoke(cli, args, catch_exceptions=False)


def requests_sent(sim: SimServer) -> int:
    """Chat requests the simulator received."""
    return sum(c["requests"] for c in sim.counts().values())


def good(i: int) -> str:
    """A valid JSONL line."""
    return json.dumps({"id": f"r{i}", "prompt": f"prompt {i}"})


@pytest.mark.parametrize(
    ("bad_line", "reason"),
    [
        pytest.param('{"id": "x", "prompt": "unterminated', "not valid JSON", id="malformed-json"),
        pytest.param('{"id": "x"}', "no 'prompt'", id="no-prompt"),
        pytest.param('{"id": "x", "prompt": 42}', "prompt", id="prompt-not-string"),
        pytest.param('{"id": "r1", "prompt": "again"}', "duplicate id", id="duplicate-id"),
        pytest.param('["a", "list"]', "object", id="not-an-object"),
        pytest.param('{"id": 1.5, "prompt": "x"}', "id", id="float-id"),
    ],
)
def test_a_bad_row_goes_to_the_errors_file_with_its_line_and_the_run_goes_on(
    sim: SimServer, tmp_path: Path, bad_line: str, reason: str
) -> None:
    """Line 4 is bad: it is in the errors file as 'line 4' with the reason; the other rows are done; exit 1."""
    inp = tmp_path / "in.jsonl"
    lines = [good(0), good(1), good(2), bad_line, good(4), good(5)]
    inp.write_text("\n".join(lines) + "\n")
    result = run(sim, inp, tmp_path / "out.jsonl")
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    done = [json.loads(x)["id"] for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert sorted(done) == ["r0", "r1", "r2", "r4", "r5"]
    (error,) = [json.loads(x) for x in (tmp_path / "out.jsonl.errors.jsonl").read_text().splitlines()]
    assert error["kind"] == "input" and reason in error["message"]
    assert error["where"] in ("line 4", "row 3")


def test_a_line_that_is_not_utf8_is_a_bad_row(sim: SimServer, tmp_path: Path) -> None:
    """One line in Latin-1 among UTF-8 lines is reported by line number; the rest run."""
    inp = tmp_path / "in.jsonl"
    inp.write_bytes(
        (good(0) + "\n").encode() + '{"id": "x", "prompt": "café"}\n'.encode("latin-1") + (good(2) + "\n").encode()
    )
    result = run(sim, inp, tmp_path / "out.jsonl")
    assert result.exit_code == 1, result.output
    (error,) = [json.loads(x) for x in (tmp_path / "out.jsonl.errors.jsonl").read_text().splitlines()]
    assert error["where"] == "line 2" and "UTF-8" in error["message"]


def write_truncated_parquet(path: Path) -> None:
    """A Parquet file cut in half, as a crashed copy leaves it."""
    pq.write_table(pa.table({"prompt": [f"p{i}" for i in range(1000)]}), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize(
    ("name", "make", "message"),
    [
        pytest.param("in.jsonl", lambda p: p.write_text(""), "empty", id="empty-file"),
        pytest.param("in.jsonl", lambda p: p.write_text("\n\n  \n"), "empty", id="blank-lines-only"),
        pytest.param(
            "in.jsonl", lambda p: p.write_bytes('{"prompt": "é"}\n'.encode("utf-16") * 3), "", id="utf16-file"
        ),
        pytest.param(
            "in.jsonl", lambda p: p.write_bytes(gzip.compress(b'{"prompt": "x"}\n')), "gzip", id="gzip-named-jsonl"
        ),
        pytest.param("in.jsonl", lambda p: p.write_text("id,prompt\n1,hello\n2,world\n"), "JSONL", id="csv"),
        pytest.param("in.parquet", write_truncated_parquet, "", id="truncated-parquet"),
        pytest.param(
            "in.parquet",
            lambda p: pq.write_table(pa.table({"text": ["a"]}), p),
            "prompt",
            id="parquet-no-prompt-column",
        ),
        pytest.param("in.csv", lambda p: p.write_text("prompt\nhi\n"), ".jsonl", id="unknown-extension"),
        pytest.param("missing.jsonl", lambda p: None, "", id="missing-file"),
    ],
)
def test_an_unreadable_input_stops_before_any_request(
    sim: SimServer, tmp_path: Path, name: str, make: object, message: str
) -> None:
    """A file that cannot be read at all: exit 2, one line naming the file and the problem, nothing sent."""
    inp = tmp_path / name
    make(inp)  # type: ignore[operator]
    result = run(sim, inp, tmp_path / "out.jsonl")
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert result.stderr.startswith("hfbatch: error: ") and result.stderr.count("\n") == 1
    assert name in result.stderr and message in result.stderr
    assert requests_sent(sim) == 0
    assert not (tmp_path / "out.jsonl").exists()


def test_a_template_naming_a_missing_parquet_column_stops_before_any_request(sim: SimServer, tmp_path: Path) -> None:
    """A template over a column the Parquet file lacks is refused up front, naming the column."""
    inp = tmp_path / "in.parquet"
    pq.write_table(pa.table({"text": ["a", "b"]}), inp)
    result = run(sim, inp, tmp_path / "out.jsonl", "--template", "Summarise {body}")
    assert result.exit_code == 2 and "body" in result.stderr
    assert requests_sent(sim) == 0


def test_an_output_folder_that_is_a_file_is_refused(sim: SimServer, tmp_path: Path) -> None:
    """An output path under a regular file: exit 2 before any request."""
    inp = tmp_path / "in.jsonl"
    inp.write_text(good(0) + "\n")
    (tmp_path / "afile").write_text("x")
    result = run(sim, inp, tmp_path / "afile" / "out.jsonl")
    assert result.exit_code == 2 and "does not exist" in result.stderr
    assert requests_sent(sim) == 0


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write to a read-only folder")
def test_a_read_only_output_folder_is_refused(sim: SimServer, tmp_path: Path) -> None:
    """An output folder without write permission: exit 2 before any request."""
    inp = tmp_path / "in.jsonl"
    inp.write_text(good(0) + "\n")
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        result = run(sim, inp, folder / "out.jsonl")
    finally:
        folder.chmod(0o700)
    assert result.exit_code == 2 and "not writable" in result.stderr
    assert requests_sent(sim) == 0


def test_debug_env_shows_the_traceback(sim: SimServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With HFBATCH_DEBUG=1 an input error surfaces as the exception itself, for a bug report."""
    from hfbatch.errors import InputError

    monkeypatch.setenv("HFBATCH_DEBUG", "1")
    with pytest.raises(InputError, match=r"missing\.jsonl"):
        run(sim, tmp_path / "missing.jsonl", tmp_path / "out.jsonl")
