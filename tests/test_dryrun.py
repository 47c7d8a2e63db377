"""`--dry-run`: rows, estimated tokens, cost range and ETA, with no generation request and no file written."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from hfbatch.cli import cli
from hfbatch.dryrun import dry_run
from hfbatch.errors import UsageError
from hfbatch.jobspec import JobSpec
from hfbatch.messages import calculate_length
from hfbatch.runner import run_job
from hfbatch.sim import Fault, SimProvider, SimServer
from tests.helpers import MODEL, one_model

pytestmark = pytest.mark.usefixtures("fast_time")

PRICED = one_model(
    SimProvider("fast", price_in=0.2, price_out=0.8, throughput=100.0, first_token_latency_ms=500.0),
    SimProvider("plain"),
    SimProvider("down", status="error", price_in=0.1, price_out=0.1),
)


def write_prompts(path: Path, n: int) -> Path:
    """N rows with distinct ids; every third row asks for its own max_tokens."""
    rows = [{"id": i, "prompt": f"question number {i} " * (i % 5 + 1)} for i in range(n)]
    for row in rows[::3]:
        row["max_tokens"] = 8
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def spec_for(sim: SimServer, tmp_path: Path, rows: int = 50, **kw: Any) -> JobSpec:
    """A JobSpec over `rows` prompts against the simulator."""
    kw.setdefault("concurrency", 4)
    kw.setdefault("max_tokens", 32)
    inp = tmp_path / "in.jsonl"
    if not inp.exists():
        write_prompts(inp, rows)
    return JobSpec(
        input=inp, output=tmp_path / "out.jsonl", model=MODEL, api_base=sim.api_base, hub_url=sim.hub_url, **kw
    )


def sent(sim: SimServer) -> int:
    """Chat requests the simulator received."""
    return sum(c["requests"] for c in sim.counts().values())


def files_in(folder: Path) -> set[str]:
    """The names of the files in a folder."""
    return {p.name for p in folder.iterdir()}


@pytest.mark.parametrize("sim_config", [PRICED], indirect=True)
async def test_dry_run_sends_nothing_writes_nothing_and_estimates_from_published_figures(
    sim: SimServer, tmp_path: Path
) -> None:
    """Rows, tokens (characters / 4), a cost range and an ETA per provider; zero generation requests, no files."""
    spec = spec_for(sim, tmp_path, rows=50, providers=("fast", "plain"))
    before = files_in(tmp_path)
    report = await dry_run(spec)
    assert sent(sim) == 0 and files_in(tmp_path) == before
    rows = [json.loads(line) for line in spec.input.read_text().splitlines()]
    chars = sum(calculate_length([{"role": "user", "content": r["prompt"]}]) for r in rows)
    max_out = sum(r.get("max_tokens", 32) for r in rows)
    assert (report.rows_to_send, report.rows_already_done, report.rows_bad) == (50, 0, 0)
    assert report.prompt_chars == chars and report.prompt_tokens_estimate == math.ceil(chars / 4)
    assert report.max_output_tokens == max_out
    fast, plain = report.providers
    assert fast.cost_low_usd == pytest.approx(report.prompt_tokens_estimate * 0.2 / 1e6)
    assert fast.cost_high_usd == pytest.approx((report.prompt_tokens_estimate * 0.2 + max_out * 0.8) / 1e6)
    assert fast.eta_low_s == pytest.approx(50 * 0.5 / 4)
    assert fast.eta_high_s == pytest.approx((50 * 0.5 + max_out / 100) / 4)
    assert plain.price is None and plain.cost_low_usd is None and plain.eta_high_s is None
    assert [s.id for s in report.samples] == [0, 1, 2]
    assert report.samples[1].messages == [{"role": "user", "content": rows[1]["prompt"]}]
    assert any("no price for plain" in n for n in report.notes)
    json.dumps(report.to_dict())  # the --json form is JSON


@pytest.mark.parametrize("sim_config", [one_model(SimProvider("p1", faults=(Fault("400", rate=0.3),)))], indirect=True)
async def test_dry_run_counts_only_the_rows_a_resume_would_send(sim: SimServer, tmp_path: Path) -> None:
    """After a run with failed rows, the dry run counts just those; --restart counts all."""
    spec = spec_for(sim, tmp_path, rows=60)
    await run_job(spec)
    failed = len(spec.errors_path.read_text().splitlines())
    asked = sent(sim)
    before = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    report = await dry_run(spec)
    assert (report.rows_to_send, report.rows_already_done) == (failed, 60 - failed) and failed > 0
    assert (await dry_run(spec, restart=True)).rows_to_send == 60
    assert sent(sim) == asked
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()} == before  # not even touched


async def test_a_few_bad_rows_are_reported_and_many_alike_exit_2(sim: SimServer, tmp_path: Path) -> None:
    """Bad rows are counted with examples; when the first 20 are all bad alike, the dry run fails as a run would."""
    inp = tmp_path / "in.jsonl"
    lines = [json.dumps({"id": i, "prompt": f"q {i}"}) for i in range(30)]
    lines[4] = "{not json"
    lines[7] = json.dumps({"id": 3, "prompt": "duplicate id"})
    inp.write_text("\n".join(lines) + "\n")
    report = await dry_run(spec_for(sim, tmp_path))
    assert (report.rows_to_send, report.rows_bad) == (28, 2)
    assert report.bad_examples[0].startswith("line 5: ") and "duplicate id 3" in report.bad_examples[1]
    inp.write_text("".join(json.dumps({"id": i, "text": "x"}) + "\n" for i in range(40)))
    with pytest.raises(UsageError, match="the first 20 rows are all bad the same way"):
        await dry_run(spec_for(sim, tmp_path))
    assert sent(sim) == 0


def cli_dry_run(sim: SimServer, tmp_path: Path, *extra: str) -> Result:
    """`hfbatch run --dry-run` against the simulator, in-process."""
    inp = tmp_path / "in.jsonl"
    if not inp.exists():
        write_prompts(inp, 20)
    args = ["run", "--input", str(inp), "--output", str(tmp_path / "out.jsonl"), "--model", MODEL]
    return CliRunner().invoke(cli, [*args, "--api-base", sim.api_base, "--hub-url", sim.hub_url, *extra])


@pytest.mark.parametrize("sim_config", [PRICED], indirect=True)
def test_the_cli_prints_the_dry_run_as_text_or_json_and_exits_0(sim: SimServer, tmp_path: Path) -> None:
    """--dry-run prints rows, tokens and costs; with --json the same as JSON on stdout; exit 0, nothing sent."""
    text = cli_dry_run(sim, tmp_path, "--dry-run")
    assert text.exit_code == 0, text.output
    assert "rows: 20 to send" in text.stdout and "(characters / 4)" in text.stdout and "fast" in text.stdout
    as_json = cli_dry_run(sim, tmp_path, "--dry-run", "--json")
    assert as_json.exit_code == 0, as_json.output
    data = json.loads(as_json.stdout)
    assert data["rows"]["to_send"] == 20 and [p["provider"] for p in data["providers"]] == ["fast", "plain"]
    assert data["providers"][0]["cost_usd"]["low"] > 0 and data["tokens_estimated_as"] == "characters / 4"
    assert sent(sim) == 0 and files_in(tmp_path) == {"in.jsonl"}
    alone = cli_dry_run(sim, tmp_path, "--json")
    assert alone.exit_code == 2 and "--json goes with --dry-run" in alone.stderr


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--providers", "nobody"), "'nobody' is not one"),
        (("--model", "org/absent"), "not on the Hub"),
    ],
    ids=["unknown-provider", "unknown-model"],
)
def test_a_dry_run_with_a_wrong_model_or_provider_exits_2(
    sim: SimServer, tmp_path: Path, extra: tuple[str, ...], message: str
) -> None:
    """The dry run makes a run's checks: a wrong provider name or model is exit 2 with the reason."""
    result = cli_dry_run(sim, tmp_path, "--dry-run", *extra)
    assert result.exit_code == 2, result.output
    assert message in result.stderr and sent(sim) == 0


async def test_run_job_refuses_a_spec_marked_dry_run(sim: SimServer, tmp_path: Path) -> None:
    """A library caller passing a dry-run spec to run_job gets an error, not a real run."""
    with pytest.raises(UsageError, match="dry_run"):
        await run_job(spec_for(sim, tmp_path, dry_run=True))
    assert sent(sim) == 0 and files_in(tmp_path) == {"in.jsonl"}
