"""A run's report: one self-contained HTML page (inline CSS and SVG, no scripts, no network).

`render_report(stats, timeline, errors, *, title, now=None) -> str` is pure: data in, HTML out;
`now` (Unix time) only stamps the page and tells a silent run from a live one.
`build_report(output, *, stats_path=None, timeline_path=None, errors_path=None, now=None) -> Path`
reads `<output>.stats.json`, `<output>.timeline.jsonl` and `<output>.errors.jsonl` (or the paths
given), streaming the JSONL files line by line, and writes `<output>.report.html` atomically.
Every input may be missing or partial: a missing part becomes a note, never a crash.
Text from data is HTML-escaped and anything shaped like a token (`hf_` + 8 word characters) is
masked; settings whose name says secret (token, api_key, password, ...) are hidden.

Inputs (all keys optional):

stats (`<output>.stats.json`, `hfbatch.stats.RunStats.to_dict` plus what the runner adds)::

    {"model": str, "provider_order": [str], "input": str, "output": str,
     "exit_code": int, "stopped_because": str | null, "hfbatch_version": str, "event_loop": str,
     "json": str,                           # "orjson" or "json": which library read replies and wrote bodies
     "settings": {name: value},             # secrets are hidden by name, tokens masked by shape
     "wall_time_s": float, "rows_per_second": float,
     "rows": {"seen", "done", "failed", "bad_input", "skipped_already_done": int},
     "overall": PROVIDER, "providers": {name: PROVIDER},
     "cost_usd": float | null,              # read when overall has no cost_usd
     "finish_reasons": {reason: int},
     "runs": [{"started_at": unix | ISO str, "ended_at": unix | ISO str | null, "hfbatch_version",
               "exit_code", "rows_done", "rows_failed", "requests", "prompt_tokens",
               "completion_tokens", "cost_usd", "settings": {...}, "shard": "K/N" (merged shards)}]}
    PROVIDER = {"requests", "successes", "retries", "failovers_out", "breaker_trips",
                "prompt_tokens", "completion_tokens": int, "cost_usd": float | null (unknown),
                "failures": {kind: int},   # "401" "402" "429" "4xx" "5xx" "timeout" "connection"
                                           # "malformed" "empty" "invalid_output", or any other
                "latency_s": {"p50", "p95", "p99", "mean": float | null},
                "latency_histogram": {"growth": 1.02, "min": 1e-4, "buckets": {"<index>": int}}}

    Bucket i of a latency histogram holds latencies in [min * growth**i, min * growth**(i+1)).
    While the first run into an output is going there is no stats file: pass None ("running").
    When a stats file exists but the newest timeline segment started after the last run's
    `ended_at`, a new run is going ("running" too).

timeline (`<output>.timeline.jsonl`, one snapshot per line, every few seconds)::

    {"t": unix, "elapsed_s": float, "rows_done": int, "rows_failed": int,
     "run": any (optional: a change starts a new segment), "shard": "K/N" (optional),
     "providers": {name: {"requests", "successes", "rate_limited", "prompt_tokens",
                          "completion_tokens": int, "cost_usd": float | null,
                          "failures": {kind: int},            # cumulative, like the others
                          "in_flight": int, "limit": int, "rate_limit_rps": float | null}}}

    Counters are cumulative within a run. A counter that decreases, `elapsed_s` that goes back or
    a new `run` value starts a new segment (a resumed run), differenced from zero. Records with
    different `shard` values are separate streams, so a merged timeline may interleave shards.
    Idle time between runs is cut from the time axis; a dashed line marks where a run resumed.

errors (`<output>.errors.jsonl`, the runner's error records)::

    {"id", "index", "where", "error", "kind", "status", "provider", "message", "attempts"}

    Grouped by (kind, message); the most frequent groups are shown with counts. Counting keeps at
    most a few thousand groups, so an errors file of any size is read in bounded memory.

Charts: every chart is an `<svg class="chart" id=...>` with role="img" and an aria-label; ids are
chart-throughput, chart-latency, chart-failures, chart-limits, chart-cost, chart-finish-reasons.
Each series is an element with `data-series="<provider, failure class or finish reason>"`. A
chart without data is replaced by `<p class="note no-chart" data-chart="<id>">` saying why.
"""

from __future__ import annotations

from hfbatch.report.files import build_report, iter_jsonl, report_path
from hfbatch.report.page import render_report

__all__ = ["build_report", "iter_jsonl", "render_report", "report_path"]
