"""Run history: the stats file adds up every run into an output and lists them; finish reasons in the table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hfbatch.errors import ExitCode
from hfbatch.history import cumulative
from hfbatch.runner import RunControl, run_job
from hfbatch.sim import SimServer
from hfbatch.stats import LatencyHistogram, RunStats, format_table
from hfbatch.stats_sum import active_time, add_up
from tests.test_growth import append
from tests.test_run import prompts, spec_for, write_jsonl

pytestmark = pytest.mark.usefixtures("fast_time")


def stats_of(out: Path) -> dict[str, object]:
    """The stats file beside an output."""
    data: dict[str, object] = json.loads(out.with_name(out.name + ".stats.json").read_text())
    return data


async def test_stats_add_up_over_runs_and_a_no_op_rerun_keeps_them(sim: SimServer, tmp_path: Path) -> None:
    """Stopped early, resumed over a grown input, rerun with nothing to do: totals add up, runs list all three."""
    rows = prompts(200)
    inp = write_jsonl(tmp_path / "in.jsonl", rows[:150])
    spec = spec_for(sim, tmp_path, inp, concurrency=4)
    control = RunControl()

    def stop_early(stats: RunStats) -> None:
        if stats.rows_done >= 50:
            control.request_stop()

    first = await run_job(spec, control=control, progress=stop_early)
    assert first.exit_code is ExitCode.INTERRUPTED
    append(inp, rows[150:])
    runs_stats = [first.stats, (await run_job(spec)).stats, (await run_job(spec)).stats]
    stats = stats_of(spec.output)
    runs = stats["runs"]
    assert isinstance(runs, list) and [r["exit_code"] for r in runs] == [130, 0, 0]
    assert sum(r["rows_done"] for r in runs) == 200 and runs[2]["rows_done"] == runs[2]["requests"] == 0
    overall = stats["overall"]
    assert isinstance(overall, dict)
    for key in ("requests", "successes", "prompt_tokens", "completion_tokens", "billed_replies"):
        assert overall[key] == sum(s["overall"][key] for s in runs_stats), key
    assert stats["rows"] == {**stats["rows"], "done": 200, "skipped_already_done": 200}  # type: ignore[dict-item]
    assert all(r["started_at"] < r["ended_at"] for r in runs)
    assert stats["finish_reasons"] == {"stop": 200}
    assert runs[0]["settings"]["concurrency"] == 4 and "model" not in runs[0]["settings"]


def _run_stats(requests: int, latencies: list[float], *, done: int, cost: float | None) -> dict[str, object]:
    stats = RunStats(["p"])
    p = stats.provider("p")
    p.requests = p.successes = p.billed_replies = requests
    p.prompt_tokens, p.completion_tokens = 10 * requests, 5 * requests
    p.priced, p.cost_usd = cost is not None, cost or 0.0
    for s in latencies:
        p.latency.add(s)
    stats.rows_done = done
    stats.finish_reasons.update({"stop": done - 1, "length": 1})
    return stats.to_dict(wall_time=10.0, extra={"exit_code": 0})


def test_percentiles_of_summed_stats_come_from_the_merged_histograms() -> None:
    """Adding two runs gives the p50 and p99 of all their latencies together, not an average of theirs."""
    fast = [0.1] * 90
    slow = [2.0] * 10
    total = add_up([_run_stats(90, fast, done=90, cost=0.5), _run_stats(10, slow, done=10, cost=0.25)])
    both = LatencyHistogram()
    for s in fast + slow:
        both.add(s)
    assert total["providers"]["p"]["latency_s"] == both.summary()
    assert total["overall"]["requests"] == 100 and total["overall"]["cost_usd"] == pytest.approx(0.75)
    assert total["finish_reasons"] == {"stop": 98, "length": 2}


def test_an_unknown_cost_stays_unknown_when_added() -> None:
    """A run whose cost nobody knew makes the total cost unknown, never a smaller number."""
    total = add_up([_run_stats(5, [0.1], done=5, cost=0.5), _run_stats(5, [0.1], done=5, cost=None)])
    assert total["overall"]["cost_usd"] is None


def test_a_killed_run_is_recovered_from_its_timeline(tmp_path: Path) -> None:
    """A run killed before writing stats shows in the history from its last snapshot, and its spend counts."""
    timeline = tmp_path / "out.jsonl.timeline.jsonl"
    snap = {"t": 1000.0, "elapsed_s": 40.0, "run": "killed1", "rows_done": 30, "rows_failed": 0}
    snap["providers"] = {"p": {"requests": 33, "successes": 30, "prompt_tokens": 300, "completion_tokens": 90}}
    current = {"run": "now1", "t": 1100.0, "elapsed_s": 1.0, "rows_done": 0, "providers": {}}
    timeline.write_text(json.dumps(snap) + "\n" + json.dumps(current) + "\n" + '{"torn')
    this_run = _run_stats(20, [0.2] * 20, done=20, cost=None)
    data = cumulative(
        this_run,
        previous=None,
        previous_mtime=None,
        timeline=timeline,
        started_at=1099.0,
        ended_at=1110.0,
        run="now1",
        settings={},
    )
    runs = data["runs"]
    assert [r.get("killed", False) for r in runs] == [True, False]
    assert runs[0]["rows_done"] == 30 and runs[0]["requests"] == 33 and runs[0]["started_at"] == 960.0
    assert data["overall"]["requests"] == 53 and data["overall"]["prompt_tokens"] == 500
    assert data["wall_time_s"] == 51.0  # 40 s killed + 11 s now; the idle time between is not counted
    again = cumulative(
        this_run,
        previous=data,
        previous_mtime=1110.0,
        timeline=timeline,
        started_at=1200.0,
        ended_at=1201.0,
        run="later",
        settings={},
    )
    assert [r.get("killed", False) for r in again["runs"]] == [True, False, False]  # not recovered twice


def test_active_time_counts_overlapping_runs_once() -> None:
    """Shards side by side take the span they cover; runs on different nights add up."""
    assert active_time([(0, 10), (5, 12), (100, 101), (None, 5)]) == 13


def test_the_end_of_run_table_counts_finish_reasons() -> None:
    """How many rows stopped on `length` (cut by max_tokens) is a line of the table printed at the end."""
    table = format_table(_run_stats(10, [0.1], done=10, cost=0.1))
    assert "finish: stop 9, length 1" in table
