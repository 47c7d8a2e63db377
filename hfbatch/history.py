"""Run history: `<output>.stats.json` holds totals over every run into the output, and a `runs` list.

At the end of a run the previous stats file is read and this run is added to it (`cumulative`):

| key | in the file |
| --- | --- |
| `overall`, `providers`, `models`, `finish_reasons`, `capacity_wait_s` | summed over the runs (`stats_sum.add_up`) |
| `providers.NAME.latency_s` | percentiles of the merged histograms |
| `providers.NAME.limits` | this run's (what it learned last) |
| `rows.done` | results in the output now: this run's, plus those it found done (`skipped_already_done`) |
| `rows.failed`, `rows.bad_input` | this run's: the rows in the errors file, which each run rewrites |
| `rows.skipped_already_done`, `seen`, `input_estimate`, `other_shards` | this run's |
| `wall_time_s`, `rows_per_second` | over the runs' active time (the union of their spans) |
| `runs` | one entry per run, oldest first (`run_entry`) |
| anything else (`model`, `exit_code`, `settings`, `pricing`, ...) | this run's |

A run killed with kill -9 writes no stats; the next run finds its last timeline snapshot (taken every
few seconds) and adds it as a run with `exit_code` null and `killed` true, so its requests, tokens
and cost are counted up to that snapshot (a lower bound). A rerun that finds nothing to do adds an
entry with zeros and keeps every total.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hfbatch.stats_sum import active_time, add_up, number

__all__ = ["cumulative", "read_stats", "record", "run_entry", "runs_of"]


def read_stats(path: Path) -> dict[str, Any] | None:
    """The stats file at `path`, or None when there is none or it is unreadable (it is then started afresh)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def run_entry(
    stats: dict[str, Any], *, started_at: float, ended_at: float, run: str | None, settings: dict[str, Any]
) -> dict[str, Any]:
    """One run's line of the history, from the stats dict of that run alone."""
    overall = stats.get("overall") or {}
    rows = stats.get("rows") or {}
    return {
        "started_at": round(started_at, 3),
        "ended_at": round(ended_at, 3),
        "hfbatch_version": stats.get("hfbatch_version"),
        "exit_code": stats.get("exit_code"),
        "rows_done": rows.get("done", 0),
        "rows_failed": rows.get("failed", 0),
        "rows_bad": rows.get("bad_input", 0),
        "requests": overall.get("requests", 0),
        "prompt_tokens": overall.get("prompt_tokens", 0),
        "completion_tokens": overall.get("completion_tokens", 0),
        "cost_usd": overall.get("cost_usd"),
        "settings": settings,
        "shard": (stats.get("settings") or {}).get("shard"),
        "run": run,
    }


def runs_of(stats: dict[str, Any], *, mtime: float | None = None) -> list[dict[str, Any]]:
    """The history of a stats file; one written before histories existed is one run ending at `mtime`."""
    runs = stats.get("runs")
    if isinstance(runs, list):
        return [r for r in runs if isinstance(r, dict)]
    end = mtime or 0.0
    start = end - number(stats.get("wall_time_s")) if end else None
    entry = run_entry(stats, started_at=start or 0.0, ended_at=end, run=None, settings=stats.get("settings") or {})
    if not end:
        entry["started_at"] = entry["ended_at"] = None
    return [entry]


def _timeline_runs(path: Path) -> Iterator[dict[str, Any]]:
    """The last snapshot of each run in a timeline, with `started` (Unix time) added; torn lines skipped."""
    last: dict[str, dict[str, Any]] = {}
    with contextlib.suppress(OSError), open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            try:
                snap = json.loads(line)
            except ValueError:
                continue
            if isinstance(snap, dict) and isinstance(snap.get("run"), str):
                last[snap["run"]] = snap
    for snap in last.values():
        t, elapsed = number(snap.get("t")), number(snap.get("elapsed_s"))
        if t:
            yield {**snap, "started": t - elapsed}


def _killed(timeline: Path, after: float, known: set[Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Runs in the timeline that started after `after` and left no stats: (history entry, stats-like counts)."""
    found = []
    for snap in _timeline_runs(timeline):
        if snap["run"] in known or snap["started"] <= after:
            continue
        providers: dict[str, Any] = {}
        for name, p in (snap.get("providers") or {}).items():
            if isinstance(p, dict):
                keys = ("requests", "successes", "failures", "prompt_tokens", "completion_tokens", "cost_usd")
                providers[str(name)] = {k: p.get(k) for k in keys}
        counts = {"providers": providers}
        totals = add_up([counts])["overall"]
        entry = {
            "started_at": round(snap["started"], 3),
            "ended_at": snap.get("t"),
            "hfbatch_version": None,
            "exit_code": None,
            "killed": True,
            "rows_done": snap.get("rows_done", 0),
            "rows_failed": snap.get("rows_failed", 0),
            "requests": totals["requests"],
            "prompt_tokens": totals["prompt_tokens"],
            "completion_tokens": totals["completion_tokens"],
            "cost_usd": totals["cost_usd"],
            "settings": {},
            "shard": snap.get("shard"),
            "run": snap["run"],
        }
        found.append((entry, counts))
    return sorted(found, key=lambda pair: pair[0]["started_at"])


def cumulative(
    current: dict[str, Any],
    *,
    previous: dict[str, Any] | None,
    previous_mtime: float | None,
    timeline: Path,
    started_at: float,
    ended_at: float,
    run: str | None,
    settings: dict[str, Any],
) -> dict[str, Any]:
    """The stats file after this run: `current` (this run's stats) added to `previous` (the file before it)."""
    runs = runs_of(previous, mtime=previous_mtime) if previous is not None else []
    ends = [number(r.get("ended_at")) for r in runs]
    after = max(ends, default=0.0) or (previous_mtime or 0.0)
    killed = _killed(timeline, after, {r.get("run") for r in runs} | {run})
    entry = run_entry(current, started_at=started_at, ended_at=ended_at, run=run, settings=settings)
    runs = [*runs, *(e for e, _ in killed), entry]
    totals = add_up([*([previous] if previous is not None else []), *(c for _, c in killed), current])
    for name, data in (current.get("providers") or {}).items():
        if isinstance(data, dict) and "limits" in data:
            totals["providers"].setdefault(name, {})["limits"] = data["limits"]
    rows = dict(current.get("rows") or {})
    rows["done"] = _int(rows.get("done")) + _int(rows.get("skipped_already_done"))
    active = active_time((r.get("started_at"), r.get("ended_at")) for r in runs)
    processed = sum(_int(r.get("rows_done")) + _int(r.get("rows_failed")) for r in runs)
    return {
        **current,
        **totals,
        "rows": rows,
        "wall_time_s": round(active, 3),
        "rows_per_second": round(processed / active, 2) if active > 0 else None,
        "runs": runs,
    }


def _int(value: Any) -> int:
    return int(number(value))


def record(
    path: Path, timeline: Path, stats: dict[str, Any], *, run: str | None, settings: dict[str, Any]
) -> dict[str, Any]:
    """What the stats file at `path` holds once this run (`stats`, ending now) is added to it."""
    previous = read_stats(path)
    mtime = None
    with contextlib.suppress(OSError):
        mtime = path.stat().st_mtime
    ended = time.time()
    return cumulative(
        stats,
        previous=previous,
        previous_mtime=mtime,
        timeline=timeline,
        started_at=ended - number(stats.get("wall_time_s")),
        ended_at=ended,
        run=run,
        settings=settings,
    )
