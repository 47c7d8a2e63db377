"""The `hfbatch` command as a user runs it: exit codes, one-line errors, never the token."""

from __future__ import annotations

import gc
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from hfbatch.cli import cli
from hfbatch.outputs.manifest import hold_lock
from hfbatch.sim import Fault, SimConfig, SimProvider, SimServer
from tests.helpers import MODEL, one_model

REPO = Path(__file__).resolve().parent.parent
SECRET = "hf_cli_secret_token_123"
pytestmark = pytest.mark.usefixtures("fast_time")


@pytest.fixture
def sim_config() -> SimConfig:
    """The first provider is out of credits."""
    return one_model(SimProvider("broke", faults=(Fault("402"),)), SimProvider("ok"), token=SECRET)


@pytest.fixture
def sim(sim: SimServer, monkeypatch: pytest.MonkeyPatch) -> SimServer:
    """The shared simulator, without its token in the environment: each test gives the token it means."""
    monkeypatch.delenv("HF_TOKEN")
    return sim


def invoke(*args: str) -> Result:
    """Run the CLI in-process."""
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def where(sim: SimServer) -> list[str]:
    """The flags that point a command at the simulator."""
    return ["--api-base", sim.api_base, "--hub-url", sim.hub_url]


def assert_one_line_error(result: Result, code: int) -> None:
    """The command failed with `code` and a single error line, no traceback, no token."""
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert result.stderr.startswith("hfbatch: error: ")
    assert SECRET not in result.output


def test_chat_streams_an_answer_served_by_the_second_provider(sim: SimServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """`hfbatch chat` prints the reply; the provider answering 402 is skipped for the next one."""
    monkeypatch.setenv("HF_TOKEN", SECRET)
    result = invoke("chat", MODEL, "hello there", *where(sim))
    assert result.exit_code == 0, result.output
    assert "hello there" in result.stdout and result.stdout.startswith("echo-")
    assert "[ok," in result.stderr
    counts = sim.counts()
    assert counts["broke"]["requests"] == 1 and counts["ok"]["requests"] == 1


def test_mapping_and_models_list_what_the_hub_says(sim: SimServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """`hfbatch mapping` shows providers in order; `hfbatch models` lists the model."""
    monkeypatch.setenv("HF_TOKEN", SECRET)
    result = invoke("mapping", MODEL, *where(sim))
    assert result.exit_code == 0, result.output
    assert [line.split("\t")[0] for line in result.stdout.splitlines()] == ["broke", "ok"]
    result = invoke("models", *where(sim))
    assert result.exit_code == 0 and MODEL in result.stdout.splitlines()


@pytest.mark.parametrize("token", [None, "hf_wrong"], ids=["no-token", "wrong-token"])
def test_chat_without_a_good_token_fails_in_one_line(
    sim: SimServer, monkeypatch: pytest.MonkeyPatch, token: str | None
) -> None:
    """No token, or a wrong one: exit 3 with one line naming the problem, no traceback."""
    if token:
        monkeypatch.setenv("HF_TOKEN", token)
    result = invoke("chat", MODEL, "hi", *where(sim))
    assert_one_line_error(result, 3)
    assert ("HF_TOKEN" in result.stderr) if token is None else ("401" in result.stderr)
    if token:
        assert token not in result.output


def test_mapping_with_a_wrong_token_fails_in_one_line(sim: SimServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """A token the Hub refuses gives exit 3 and one line, never the token."""
    monkeypatch.setenv("HF_TOKEN", "hf_not_it")
    result = invoke("mapping", MODEL, *where(sim))
    assert_one_line_error(result, 3)
    assert "hf_not_it" not in result.output


def test_quickstart_job_finishes_all_rows_with_failover(tmp_path: Path) -> None:
    """The README's first command: 200 rows done, fail-over in the stats, exit 0."""
    job = tmp_path / "jobs"
    shutil.copytree(REPO / "jobs", job, ignore=shutil.ignore_patterns("out"))
    (job / "out").mkdir()
    result = invoke("run", str(job / "quickstart.toml"))
    assert result.exit_code == 0, result.output
    out = job / "out" / "quickstart.jsonl"
    assert len(out.read_text().splitlines()) == 200
    stats = json.loads((job / "out" / "quickstart.jsonl.stats.json").read_text())
    assert stats["rows"]["done"] == 200
    assert stats["providers"]["alpha"]["failures"]["402"] >= 1
    assert stats["overall"]["failovers_out"] >= 1
    assert "(all)" in result.stderr  # the summary table


def write_input(tmp_path: Path, n: int = 20) -> Path:
    """A small JSONL input."""
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps({"id": i, "prompt": f"p {i}"}) + "\n" for i in range(n)))
    return path


def run_args(sim: SimServer, tmp_path: Path, *extra: str) -> list[str]:
    """`hfbatch run` flags for a small job against the simulator."""
    return [
        "run",
        "--input",
        str(write_input(tmp_path)),
        "--output",
        str(tmp_path / "out.jsonl"),
        "--model",
        MODEL,
        *where(sim),
        *extra,
    ]


def test_run_exit_0_then_rerun_sends_nothing(sim: SimServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A run that finishes exits 0; the same command again resumes with nothing left to send."""
    monkeypatch.setenv("HF_TOKEN", SECRET)
    assert invoke(*run_args(sim, tmp_path)).exit_code == 0
    sent = sim.counts()["ok"]["requests"]
    result = invoke(*run_args(sim, tmp_path))
    assert result.exit_code == 0
    assert sim.counts()["ok"]["requests"] == sent
    assert "20 already done" in result.stderr


def test_run_exit_1_when_some_rows_failed(sim: SimServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Rows that no provider could serve make exit code 1."""
    monkeypatch.setenv("HF_TOKEN", SECRET)
    result = invoke(*run_args(sim, tmp_path, "--providers", "broke"))
    assert result.exit_code == 1, result.output
    errors = [json.loads(x) for x in (tmp_path / "out.jsonl.errors.jsonl").read_text().splitlines()]
    # The rows sent before the first 402 came back failed with it; the rest wait for a rerun.
    assert errors and {e["kind"] for e in errors} == {"402"}
    assert "every provider is out" in result.output


@pytest.mark.parametrize(
    ("job", "message"),
    [
        pytest.param(
            'input = "in.jsonl"\noutput = "o.jsonl"\nmodel = "m"\nconcurency = 4\n',
            "unknown key 'concurency' (did you mean 'concurrency'?)",
            id="typo",
        ),
        pytest.param(
            'input = "in.jsonl"\noutput = "o.jsonl"\nmodel = "m"\ntoken = "hf_x"\n',
            "environment variable",
            id="token-in-file",
        ),
        pytest.param(
            'input = "in.jsonl"\noutput = "o.jsonl"\nmodel = "m"\nconcurrency = "lots"\n',
            "key 'concurrency': expected a whole number",
            id="wrong-type",
        ),
        pytest.param('input = "in.jsonl"\noutput = "o.jsonl"\n', "missing required setting 'model'", id="missing"),
        pytest.param(
            'input = "in.jsonl"\noutput = "o.jsonl"\nmodel = "m"\nconcurrency = 0\n', "must be at least 1", id="range"
        ),
        pytest.param("input = [\n", "not valid TOML", id="toml"),
    ],
)
def test_bad_job_file_exit_2_naming_file_and_key(tmp_path: Path, job: str, message: str) -> None:
    """A job file with a mistake: exit 2, one line naming the file and the problem."""
    (tmp_path / "in.jsonl").write_text('{"id": 1, "prompt": "hi"}\n')
    path = tmp_path / "job.toml"
    path.write_text(job)
    result = invoke("run", str(path))
    assert_one_line_error(result, 2)
    assert str(path) in result.stderr and message in result.stderr
    assert "hf_x" not in result.output


def test_flags_override_the_job_file(sim: SimServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A flag wins over the same key in the job file."""
    monkeypatch.setenv("HF_TOKEN", SECRET)
    write_input(tmp_path, 5)
    job = tmp_path / "job.toml"
    job.write_text(
        f'input = "in.jsonl"\noutput = "out.jsonl"\nmodel = "{MODEL}"\nmax_tokens = 64\n'
        f'api_base = "{sim.api_base}"\nhub_url = "{sim.hub_url}"\n'
    )
    result = invoke("run", str(job), "--max-tokens", "2")
    assert result.exit_code == 0, result.output
    records = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert {r["finish_reason"] for r in records} == {"length"}


def test_run_without_token_exit_3(sim: SimServer, tmp_path: Path) -> None:
    """No token for the HF router: exit 3 before anything is sent."""
    result = invoke(*run_args(sim, tmp_path))
    assert_one_line_error(result, 3)
    assert sum(c["requests"] for c in sim.counts().values()) == 0


def test_run_exit_4_when_another_run_holds_the_output(
    sim: SimServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A second run on the same output exits 4 at once, naming the holder's pid."""
    import os

    monkeypatch.setenv("HF_TOKEN", SECRET)
    with hold_lock(tmp_path / "out.jsonl"):
        result = invoke(*run_args(sim, tmp_path))
    assert_one_line_error(result, 4)
    assert f"pid {os.getpid()}" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(["--input", "missing.jsonl"], "missing.jsonl", id="missing-input"),
        pytest.param(["--output", "nowhere/out.jsonl"], "does not exist", id="no-output-folder"),
        pytest.param(["--output", "out.csv"], "must end in .jsonl or .parquet", id="output-ext"),
        pytest.param(["--template", "no fields"], "names no column", id="template"),
    ],
)
def test_run_bad_usage_exit_2(
    sim: SimServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, args: list[str], message: str
) -> None:
    """Bad paths and options: exit 2 with a line saying what to fix."""
    monkeypatch.setenv("HF_TOKEN", SECRET)
    monkeypatch.chdir(tmp_path)
    write_input(tmp_path)
    base: dict[str, Any] = {"--input": "in.jsonl", "--output": "out.jsonl", "--model": MODEL}
    base.update(dict(zip(args[::2], args[1::2], strict=True)))
    flat = [x for kv in base.items() for x in kv]
    result = invoke("run", *flat, *where(sim))
    assert_one_line_error(result, 2)
    assert message in result.stderr


def test_help_lists_every_job_key_as_a_flag() -> None:
    """Every job-file key has a flag in `hfbatch run --help`."""
    from hfbatch.jobspec import FIELDS

    result = invoke("run", "--help")
    for field in FIELDS:
        assert field.flag in result.output


def test_run_help_shows_every_default() -> None:
    """Each setting with a default shows it in `hfbatch run --help`, as the job file would hold it."""
    from hfbatch.jobspec import FIELDS

    text = " ".join(invoke("run", "--help").output.split())
    for field in FIELDS:
        if field.default in (None, ()):
            continue
        name = field.flag[2:]
        shown = (name if field.default else f"no-{name}") if field.kind == "bool" else str(field.default)
        assert f"[default: {shown}]" in text, field.key


def test_the_hfbatch_process_collects_young_objects_less_often(monkeypatch: pytest.MonkeyPatch) -> None:
    """The `hfbatch` console script raises the young-generation GC threshold; a disabled collector stays off."""
    from hfbatch import cli as cli_module

    monkeypatch.setattr("sys.argv", ["hfbatch", "--version"])
    before = gc.get_threshold()
    try:
        gc.set_threshold(700, before[1], before[2])
        with pytest.raises(SystemExit):
            cli_module.main()
        assert gc.get_threshold() == (cli_module.GC_YOUNG_THRESHOLD, before[1], before[2])
        gc.set_threshold(0, before[1], before[2])
        with pytest.raises(SystemExit):
            cli_module.main()
        assert gc.get_threshold()[0] == 0
    finally:
        gc.set_threshold(*before)
