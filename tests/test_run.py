"""End-to-end tests of `run_job` against the simulated server over loopback HTTP."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hfbatch.errors import AuthenticationError, ExitCode, UsageError
from hfbatch.jobspec import JobSpec
from hfbatch.runner import RunControl, run_job
from hfbatch.sim import Fault, SimProvider, SimServer, reply_for
from tests.helpers import MODEL, one_model

pytestmark = pytest.mark.usefixtures("fast_time")


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    """Write rows as JSON lines."""
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def prompts(n: int) -> list[dict[str, Any]]:
    """N rows with distinct ids and prompts."""
    return [{"id": f"r{i}", "prompt": f"prompt number {i} about things"} for i in range(n)]


def spec_for(sim: SimServer, tmp_path: Path, inp: Path, out: str = "out.jsonl", **kw: Any) -> JobSpec:
    """A JobSpec pointed at the simulator."""
    kw.setdefault("concurrency", 16)
    kw.setdefault("max_tokens", 64)
    kw.setdefault("model", MODEL)
    return JobSpec(input=inp, output=tmp_path / out, api_base=sim.api_base, hub_url=sim.hub_url, **kw)


def read_output(path: Path) -> list[dict[str, Any]]:
    """The output records, JSONL or Parquet."""
    if path.suffix == ".parquet":
        records: list[dict[str, Any]] = pq.read_table(path).to_pylist()
        return records
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def expected_text(prompt: str, max_tokens: int = 64) -> str:
    """What the simulator answers to a one-message prompt."""
    return reply_for([{"role": "user", "content": prompt}], max_tokens).text


def assert_matches_server(stats: dict[str, Any], sim: SimServer) -> None:
    """The stats file's per-provider request counts equal what the server counted."""
    counts = sim.counts()
    for name, s in stats["providers"].items():
        assert s["requests"] == counts.get(name, {}).get("requests", 0), name


async def test_jsonl_in_jsonl_out_every_id_once_with_its_own_reply(sim: SimServer, tmp_path: Path) -> None:
    """Each input row gets exactly one output record, carrying the reply to its own prompt."""
    rows = prompts(300)
    spec = spec_for(sim, tmp_path, write_jsonl(tmp_path / "in.jsonl", rows))
    report = await run_job(spec)
    assert report.exit_code is ExitCode.OK
    out = read_output(spec.output)
    assert sorted(r["id"] for r in out) == sorted(r["id"] for r in rows)
    by_id = {r["id"]: r["prompt"] for r in rows}
    for rec in out:
        assert rec["output"] == expected_text(by_id[rec["id"]])
        assert rec["provider"] in ("p1", "p2") and rec["finish_reason"] == "stop" and rec["attempts"] == 1
    assert json.loads(spec.stats_path.read_text())["rows"]["done"] == 300
    assert not spec.errors_path.exists()


@pytest.mark.parametrize(
    "sim_config",
    [
        one_model(
            SimProvider("broke", faults=(Fault("402"),)),
            SimProvider("flaky", faults=(Fault("429", rate=0.05), Fault("500", rate=0.05))),
            seed=3,
        )
    ],
    indirect=True,
)
async def test_failover_2000_rows_exactly_once_and_stats_match_server(sim: SimServer, tmp_path: Path) -> None:
    """First provider out of credits, second failing 10%: every id once, stats counts equal the server's."""
    rows = prompts(2000)
    spec = spec_for(sim, tmp_path, write_jsonl(tmp_path / "in.jsonl", rows), concurrency=64, max_retries=5)
    report = await run_job(spec)
    out = read_output(spec.output)
    failed = [json.loads(x) for x in spec.errors_path.read_text().splitlines()] if spec.errors_path.exists() else []
    ids = Counter([r["id"] for r in out] + [e["id"] for e in failed])
    assert set(ids) == {r["id"] for r in rows} and set(ids.values()) == {1}
    assert len(out) >= 1990
    assert report.exit_code in (ExitCode.OK, ExitCode.FAILED_ROWS)
    stats = json.loads(spec.stats_path.read_text())
    assert_matches_server(stats, sim)
    assert stats["providers"]["broke"]["failures"]["402"] >= 1
    assert stats["providers"]["broke"]["failovers_out"] >= 1
    flaky = stats["providers"]["flaky"]
    assert flaky["failures"]["429"] + flaky["failures"]["5xx"] > 0 and flaky["retries"] > 0
    assert {r["provider"] for r in out} == {"flaky"}


async def test_parquet_in_parquet_out_with_template_and_kept_columns(sim: SimServer, tmp_path: Path) -> None:
    """A Parquet input with a template gives a Parquet output that keeps the asked-for columns."""
    table = pa.table({"id": list(range(120)), "topic": [f"topic {i}" for i in range(120)], "level": ["x"] * 120})
    pq.write_table(table, tmp_path / "in.parquet", row_group_size=50)
    spec = spec_for(
        sim,
        tmp_path,
        tmp_path / "in.parquet",
        "out.parquet",
        template="Explain {topic} at level {level}",
        keep_columns=("topic",),
    )
    report = await run_job(spec)
    assert report.exit_code is ExitCode.OK
    out = read_output(spec.output)
    assert sorted(r["id"] for r in out) == list(range(120))
    for rec in out:
        assert rec["output"] == expected_text(f"Explain {rec['topic']} at level x")
    assert not (tmp_path / "out.parquet.journal.jsonl").exists()


async def test_stopped_run_resumes_without_resending_done_rows(sim: SimServer, tmp_path: Path) -> None:
    """A run stopped halfway leaves its results; the rerun sends only the rest, and each id ends once."""
    rows = prompts(400)
    spec = spec_for(sim, tmp_path, write_jsonl(tmp_path / "in.jsonl", rows), concurrency=8)
    control = RunControl()

    def stop_early(stats: Any) -> None:
        if stats.rows_done >= 100:
            control.request_stop()

    first = await run_job(spec, control=control, progress=stop_early)
    assert first.exit_code is ExitCode.INTERRUPTED
    done_first = len(read_output(spec.output))
    assert 100 <= done_first < 400
    sent_first = sim.counts()["p1"]["requests"]
    second = await run_job(spec)
    assert second.exit_code is ExitCode.OK
    out = read_output(spec.output)
    assert Counter(r["id"] for r in out) == Counter(r["id"] for r in rows)
    sent_second = sim.counts()["p1"]["requests"] - sent_first
    assert sent_second == 400 - done_first
    assert json.loads(spec.stats_path.read_text())["rows"]["skipped_already_done"] == done_first


async def test_an_output_in_the_spaced_layout_of_earlier_versions_resumes(sim: SimServer, tmp_path: Path) -> None:
    """Records written `{"id": ...}` (json.dumps's spacing, as earlier versions did) count as done; new are compact."""
    rows = prompts(40)
    spec = spec_for(sim, tmp_path, write_jsonl(tmp_path / "in.jsonl", rows))
    await run_job(spec)
    lines = spec.output.read_text().splitlines()
    assert all(line.startswith('{"id":"') for line in lines)
    # The first 25 records as an earlier version wrote them; the rest lost (a stop).
    spec.output.write_text("".join(json.dumps(json.loads(line)) + "\n" for line in lines[:25]))
    sent = sum(c["requests"] for c in sim.counts().values())
    report = await run_job(spec)
    assert report.exit_code is ExitCode.OK
    assert sum(c["requests"] for c in sim.counts().values()) - sent == 15  # only the rows the old records lack
    out = read_output(spec.output)
    assert Counter(r["id"] for r in out) == Counter(r["id"] for r in rows)


async def test_torn_last_line_is_cut_and_its_row_redone(sim: SimServer, tmp_path: Path) -> None:
    """A half-written last record (a crash mid-write) is removed and that row is sent again."""
    rows = prompts(20)
    spec = spec_for(sim, tmp_path, write_jsonl(tmp_path / "in.jsonl", rows))
    await run_job(spec)
    lines = spec.output.read_text().splitlines(keepends=True)
    spec.output.write_text("".join(lines[:10]) + lines[10][: len(lines[10]) // 2])
    report = await run_job(spec)
    assert report.exit_code is ExitCode.OK
    out = read_output(spec.output)
    assert Counter(r["id"] for r in out) == Counter(r["id"] for r in rows)


@pytest.mark.parametrize(
    ("change", "named"),
    [
        pytest.param({"model": "org/other"}, "model", id="model"),
        pytest.param({"template": "Say {prompt}"}, "template", id="template"),
        pytest.param({"temperature": 0.5}, "temperature", id="temperature"),
        pytest.param({"max_tokens": 7}, "max_tokens", id="max_tokens"),
    ],
)
async def test_changed_settings_refuse_to_resume(
    sim: SimServer, tmp_path: Path, change: dict[str, Any], named: str
) -> None:
    """Resuming with a setting that changes results is refused, naming the setting."""
    spec = spec_for(sim, tmp_path, write_jsonl(tmp_path / "in.jsonl", prompts(10)))
    await run_job(spec)
    changed = spec_for(sim, tmp_path, spec.input, **{"max_tokens": 64, **change})
    with pytest.raises(UsageError, match=named):
        await run_job(changed)


async def test_changed_input_refuses_restart_starts_over_force_adds(sim: SimServer, tmp_path: Path) -> None:
    """A changed input is refused; --restart replaces the output, --force adds to it."""
    inp = write_jsonl(tmp_path / "in.jsonl", prompts(10))
    spec = spec_for(sim, tmp_path, inp)
    await run_job(spec)
    write_jsonl(inp, prompts(15)[::-1])  # not only appended to (that would resume: tests/test_growth.py)
    with pytest.raises(UsageError, match="changed since this output was started"):
        await run_job(spec)
    forced = await run_job(spec, force=True)
    assert forced.stats["rows"]["skipped_already_done"] == 10 and forced.stats["rows"]["done"] == 5
    restarted = await run_job(spec, restart=True)
    assert restarted.stats["rows"]["done"] == 15 and len(read_output(spec.output)) == 15


async def test_output_not_made_by_hfbatch_is_not_appended_to(sim: SimServer, tmp_path: Path) -> None:
    """An existing output without a manifest is left alone unless --restart or --force."""
    spec = spec_for(sim, tmp_path, write_jsonl(tmp_path / "in.jsonl", prompts(3)))
    spec.output.write_text('{"something": "else"}\n')
    with pytest.raises(UsageError, match="not written by hfbatch"):
        await run_job(spec)
    assert spec.output.read_text() == '{"something": "else"}\n'


@pytest.mark.parametrize("sim_config", [one_model(SimProvider("p1", faults=(Fault("400", rate=0.3),)))], indirect=True)
async def test_failed_and_bad_rows_go_to_errors_file_and_rerun_retries_them(sim: SimServer, tmp_path: Path) -> None:
    """Rows that fail and bad input lines are in the errors file with where and why; the exit code says so."""
    inp = tmp_path / "in.jsonl"
    lines = [json.dumps(r) for r in prompts(50)]
    lines.insert(5, "{not json")
    lines.insert(9, json.dumps({"id": "r3", "prompt": "duplicate"}))
    inp.write_text("\n".join(lines) + "\n")
    spec = spec_for(sim, tmp_path, inp)
    report = await run_job(spec)
    assert report.exit_code is ExitCode.FAILED_ROWS
    errors = [json.loads(x) for x in spec.errors_path.read_text().splitlines()]
    bad_json = [e for e in errors if e["where"] == "line 6"]
    assert len(bad_json) == 1 and bad_json[0]["kind"] == "input"
    dup = [e for e in errors if "duplicate" in e["message"]]
    assert len(dup) == 1 and dup[0]["id"] == "r3"
    failed = [e for e in errors if e["kind"] == "4xx"]
    assert failed and all(e["status"] == 400 and e["provider"] == "p1" for e in failed)
    assert len(read_output(spec.output)) + len(failed) == 50
    # A rerun tries the failed rows again; the done ones are not sent.
    before = sim.counts()["p1"]["requests"]
    await run_job(spec)
    assert sim.counts()["p1"]["requests"] - before == len(failed)


async def test_per_row_max_tokens_and_system_reach_the_server(sim: SimServer, tmp_path: Path) -> None:
    """A row's own max_tokens cuts its reply (finish_reason 'length'); its system prompt is sent first."""
    rows = [{"id": "a", "prompt": "one two three four five six", "max_tokens": 3, "system": "Be brief."}]
    spec = spec_for(sim, tmp_path, write_jsonl(tmp_path / "in.jsonl", rows))
    await run_job(spec)
    (rec,) = read_output(spec.output)
    assert rec["finish_reason"] == "length" and rec["completion_tokens"] == 3
    (_, body), *_ = sim.requests
    assert body["messages"][0] == {"role": "system", "content": "Be brief."}
    assert body["max_tokens"] == 3


@pytest.mark.parametrize("sim_config", [one_model(SimProvider("p1"), token="hf_right")], indirect=True)
async def test_wrong_token_stops_the_run_with_the_auth_code(
    sim: SimServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 401 stops the run at once with the auth exit code; the token is in no file written."""
    monkeypatch.setenv("HF_TOKEN", "hf_wrong_secret_value")
    inp = write_jsonl(tmp_path / "in.jsonl", prompts(200))
    with pytest.raises(AuthenticationError, match="401") as info:
        await run_job(spec_for(sim, tmp_path, inp))  # refused by the Hub, before any row
    assert "hf_wrong_secret_value" not in str(info.value)
    # With the providers named, the Hub is still asked (to check the names): refused there too.
    spec = spec_for(sim, tmp_path, inp, concurrency=4, providers=("p1",))
    with pytest.raises(AuthenticationError, match="401") as info:
        await run_job(spec)
    assert "hf_wrong_secret_value" not in str(info.value)
    assert sim.counts()["p1"]["requests"] == 0
    for f in tmp_path.iterdir():
        assert "hf_wrong_secret_value" not in f.read_text(errors="replace"), f.name


async def test_streaming_mode_gives_the_same_results(sim: SimServer, tmp_path: Path) -> None:
    """With stream = true the outputs and usage are those of the non-streamed replies."""
    rows = prompts(30)
    spec = spec_for(sim, tmp_path, write_jsonl(tmp_path / "in.jsonl", rows), stream=True)
    report = await run_job(spec)
    assert report.exit_code is ExitCode.OK
    by_id = {r["id"]: r["prompt"] for r in rows}
    for rec in read_output(spec.output):
        assert rec["output"] == expected_text(by_id[rec["id"]])
        assert rec["completion_tokens"] == len(rec["output"].split())
