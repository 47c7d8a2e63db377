"""`hfbatch merge`: shard outputs of any format into one, exactly once per id, with stats, errors and timelines."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from hfbatch.cli import cli
from hfbatch.errors import ExitCode, UsageError
from hfbatch.merge import merge_outputs
from hfbatch.runner import run_job
from hfbatch.sim import Fault, SimConfig, SimProvider, SimServer
from hfbatch.stats import LatencyHistogram
from tests.helpers import one_model
from tests.test_run import expected_text, prompts, read_output, spec_for, write_jsonl

pytestmark = pytest.mark.usefixtures("fast_time")

ROWS = 240


@pytest.fixture
def sim_config() -> SimConfig:
    """Two providers, the first failing now and then (so there are retries and per-provider counts to add up)."""
    return one_model(
        SimProvider("p1", faults=(Fault("500", rate=0.1),), price_in=1.0, price_out=2.0),
        SimProvider("p2", price_in=0.5, price_out=0.5),
    )


async def run_parts(sim: SimServer, tmp_path: Path, formats: list[tuple[str, str | None]], **kw: Any) -> list[Path]:
    """Run shard k of len(formats) into a part of the k-th (suffix, output_format); return the parts."""
    inp = tmp_path / "in.jsonl"
    if not inp.exists():
        write_jsonl(inp, prompts(ROWS))
    parts = []
    for k, (suffix, fmt) in enumerate(formats):
        spec = spec_for(
            sim, tmp_path, inp, f"part-{{shard}}{suffix}", shard=f"{k}/{len(formats)}", output_format=fmt, **kw
        )
        report = await run_job(spec)
        assert report.exit_code in (ExitCode.OK, ExitCode.FAILED_ROWS)
        parts.append(Path(report.stats["output"]))  # {shard} filled in
    return parts


def stats_file(out: Path) -> dict[str, Any]:
    """The stats JSON beside an output."""
    data: dict[str, Any] = json.loads(out.with_name(out.name + ".stats.json").read_text())
    return data


MIXED = [(".jsonl", None), (".parquet", None), (".jsonl", "openai")]


@pytest.mark.parametrize("out_name", ["all.parquet", "all.jsonl"])
async def test_mixed_formats_merge_into_one_output_each_id_once(sim: SimServer, tmp_path: Path, out_name: str) -> None:
    """JSONL, Parquet and OpenAI batch parts make one Parquet or JSONL file: every id once, with its own reply."""
    parts = await run_parts(sim, tmp_path, MIXED)
    out = tmp_path / out_name
    report = merge_outputs(parts, out)
    records = read_output(out)
    assert sorted(r["id"] for r in records) == sorted(r["id"] for r in prompts(ROWS))
    by_id = {r["id"]: r["prompt"] for r in prompts(ROWS)}
    for r in records:
        assert r["output"] == expected_text(by_id[r["id"]]) and r["finish_reason"] == "stop"
    assert report.records == ROWS and report.duplicates_dropped == 0
    assert not list(tmp_path.glob(".all*"))  # nothing left under the temporary names


async def test_merged_stats_are_the_sum_of_the_parts(sim: SimServer, tmp_path: Path) -> None:
    """Counts, tokens and costs are summed per provider; percentiles come from the merged histograms."""
    parts = await run_parts(sim, tmp_path, [(".jsonl", None)] * 3)
    out = tmp_path / "all.jsonl"
    merge_outputs(parts, out)
    merged = stats_file(out)
    shards = [stats_file(p) for p in parts]
    for name in ("p1", "p2"):
        for key in ("requests", "successes", "retries", "prompt_tokens", "completion_tokens", "billed_replies"):
            assert merged["providers"][name][key] == sum(s["providers"][name][key] for s in shards), (name, key)
        hist = LatencyHistogram()
        for s in shards:
            for index, count in s["providers"][name]["latency_histogram"]["buckets"].items():
                hist.buckets[int(index)] += count
                hist.count += count
        assert merged["providers"][name]["latency_s"]["p99"] == hist.summary()["p99"]
    assert merged["overall"]["cost_usd"] == pytest.approx(sum(s["overall"]["cost_usd"] for s in shards))
    assert merged["overall"]["requests"] == sum(c["requests"] for c in sim.counts().values())
    assert merged["rows"]["done"] == ROWS and merged["exit_code"] == 0
    assert sorted(r["shard"] for r in merged["runs"]) == ["0/3", "1/3", "2/3"]
    assert merged["finish_reasons"] == {"stop": ROWS}
    timeline = [json.loads(line) for line in out.with_name("all.jsonl.timeline.jsonl").read_text().splitlines()]
    assert {t["shard"] for t in timeline} == {"0/3", "1/3", "2/3"}


async def test_an_id_in_two_parts_is_exit_2_naming_both_unless_dedupe(sim: SimServer, tmp_path: Path) -> None:
    """The same rows run twice (two unsharded outputs): the merge names both files; --dedupe keeps the first."""
    inp = write_jsonl(tmp_path / "in.jsonl", prompts(20))
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    for out in (a, b):
        await run_job(spec_for(sim, tmp_path, inp, out.name))
    with pytest.raises(UsageError, match=r"id 'r\d+' is in both .*a\.jsonl and .*b\.jsonl") as info:
        merge_outputs([a, b], tmp_path / "all.jsonl")
    assert info.value.exit_code is ExitCode.USAGE and not (tmp_path / "all.jsonl").exists()
    report = merge_outputs([a, b], tmp_path / "all.jsonl", dedupe=True)
    assert report.records == 20 and report.duplicates_dropped == 20


async def test_unfinished_parts_and_missing_shards_need_partial(sim: SimServer, tmp_path: Path) -> None:
    """A part with no stats (killed) or a shard not given is refused; --partial merges what there is."""
    parts = await run_parts(sim, tmp_path, [(".jsonl", None)] * 3)
    with pytest.raises(UsageError, match=r"shard 2/3 of 3 is missing"):
        merge_outputs(parts[:2], tmp_path / "all.jsonl")
    parts[1].with_name(parts[1].name + ".stats.json").unlink()
    with pytest.raises(UsageError, match=r"part-00001-of-00003.jsonl: not finished: it has no stats file"):
        merge_outputs(parts, tmp_path / "all.jsonl")
    report = merge_outputs(parts[:2], tmp_path / "all.jsonl", partial=True)
    assert any("missing shard 2/3" in n for n in report.notes)
    assert stats_file(tmp_path / "all.jsonl")["exit_code"] == 1


async def test_a_merge_missing_a_shard_is_completed_by_a_run_without_shard(sim: SimServer, tmp_path: Path) -> None:
    """The merged output's manifest lets a plain run into it resume: it sends only the missing shard's rows."""
    parts = await run_parts(sim, tmp_path, [(".parquet", None)] * 4)
    out = tmp_path / "all.parquet"
    merge_outputs(parts[:3], out, partial=True)
    sim.reset_counts()
    report = await run_job(spec_for(sim, tmp_path, tmp_path / "in.jsonl", "all.parquet"))
    assert report.exit_code is ExitCode.OK
    assert sim.billing()["total"]["replies"] == len(read_output(parts[3]))
    assert sorted(r["id"] for r in read_output(out)) == sorted(r["id"] for r in prompts(ROWS))


async def test_errors_files_are_merged(sim_in_thread: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each part's failed rows land in OUT.errors.jsonl, in OUT's format."""
    config = one_model(SimProvider("p1", faults=(Fault("400", rate=0.1),)))
    server = sim_in_thread(config)
    monkeypatch.setenv("HF_TOKEN", config.token)
    parts = await run_parts(server, tmp_path, [(".jsonl", None), (".jsonl", None)])
    failed = sum(stats_file(p)["rows"]["failed"] for p in parts)
    assert failed > 0
    out = tmp_path / "all.jsonl"
    merge_outputs(parts, out)
    errors = [json.loads(line) for line in out.with_name("all.jsonl.errors.jsonl").read_text().splitlines()]
    assert len(errors) == failed and all(e["kind"] == "4xx" for e in errors)
    assert len(read_output(out)) + failed == ROWS


async def test_merge_command_globs_and_exit_codes(sim: SimServer, tmp_path: Path) -> None:
    """`hfbatch merge -o OUT part-*.jsonl` skips the side files the glob adds; a missing part is exit 2."""
    await run_parts(sim, tmp_path, [(".jsonl", None)] * 2)
    glob = sorted(str(p) for p in tmp_path.glob("part-*.jsonl"))
    assert len(glob) > 2  # the parts and their timelines
    result = CliRunner().invoke(cli, ["merge", "-o", str(tmp_path / "all.jsonl"), *glob])
    assert result.exit_code == 0, result.output
    assert f"merged 2 parts into {tmp_path / 'all.jsonl'}: {ROWS} results" in result.output
    again = CliRunner().invoke(cli, ["merge", "-o", str(tmp_path / "all.jsonl"), *glob])  # an earlier merge: replaced
    assert again.exit_code == 0, again.output
    missing = CliRunner().invoke(cli, ["merge", "-o", str(tmp_path / "x.jsonl"), str(tmp_path / "nope.jsonl")])
    assert missing.exit_code == 2 and "no such file" in missing.output
    not_ours = tmp_path / "mine.jsonl"
    not_ours.write_text("{}\n")
    refused = CliRunner().invoke(cli, ["merge", "-o", str(not_ours), *glob])
    assert refused.exit_code == 2 and "was not made by hfbatch merge" in refused.output


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the peak from /proc (Linux)")
def test_merge_memory_stays_bounded(tmp_path: Path) -> None:
    """Merging 200,000 records of two JSONL parts into Parquet keeps peak memory near a chunk, not the data."""
    for k in range(2):
        part = tmp_path / f"p{k}.jsonl"
        with open(part, "w") as f:
            for i in range(k, 200_000, 2):
                f.write(json.dumps({"id": f"row-{i}", "output": "x" * 200, "finish_reason": "stop"}) + "\n")
        (tmp_path / f"p{k}.jsonl.stats.json").write_text(json.dumps({"exit_code": 0}))
    code = (
        "import sys; from pathlib import Path; from hfbatch.merge import merge_outputs; "
        f"d = Path({str(tmp_path)!r}); merge_outputs([d / 'p0.jsonl', d / 'p1.jsonl'], d / 'all.parquet'); "
        # VmHWM, not ru_maxrss: Linux keeps ru_maxrss across exec, so it would be pytest's own peak.
        "print(next(int(x.split()[1]) for x in open('/proc/self/status') if x.startswith('VmHWM:')))"
    )
    env = {**os.environ}
    peak_kb = int(subprocess.run([sys.executable, "-c", code], capture_output=True, check=True, env=env).stdout)
    data_mb = sum(p.stat().st_size for p in tmp_path.glob("p*.jsonl")) / 2**20
    assert data_mb > 40 and peak_kb / 1024 < 250, (peak_kb, data_mb)
