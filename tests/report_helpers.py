"""Helpers for the report tests: synthetic run data, and a parser for what a report shows.

`make_run_data` simulates runs into one output (each after the first a resume, counters from
zero) and returns the timeline and the stats, which are the sums of the timeline's final
counters, so a report drawn from both must agree with the stats' numbers.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Iterator, Sequence
from html.parser import HTMLParser
from typing import Any

START = 1_767_225_600.0  # 2026-01-01 00:00 UTC
GROWTH, MIN_LATENCY = 1.02, 1e-4
PRICE_PER_TOKEN = {0: 0.4e-6, 1: 0.9e-6}  # by provider position; others have no known price


def _histogram(latencies: Sequence[float]) -> dict[str, Any]:
    buckets: Counter[int] = Counter(
        int(math.log(max(s, MIN_LATENCY) / MIN_LATENCY) / math.log(GROWTH)) for s in latencies
    )
    return {"growth": GROWTH, "min": MIN_LATENCY, "buckets": {str(k): v for k, v in sorted(buckets.items())}}


def _percentile(latencies: Sequence[float], q: float) -> float | None:
    ordered = sorted(latencies)
    return round(ordered[min(int(q / 100 * len(ordered)), len(ordered) - 1)], 4) if ordered else None


def make_run_data(
    providers: Sequence[str] = ("alpha", "beta"),
    *,
    runs: Sequence[float] = (60.0, 45.0),
    step: float = 2.0,
    seed: int = 7,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Stats and timeline snapshots of len(runs) runs into one output, each `runs[i]` seconds long."""
    rng = random.Random(seed)
    timeline: list[dict[str, Any]] = []
    totals = {p: Counter[str]() for p in providers}
    cost = dict.fromkeys(providers, 0.0)
    latencies: dict[str, list[float]] = {p: [] for p in providers}
    history = []
    t0 = START
    rows_total = Counter[str]()
    for run_index, length in enumerate(runs):
        cum = {p: Counter[str]() for p in providers}
        run_cost = dict.fromkeys(providers, 0.0)
        limit = dict.fromkeys(providers, 16.0)
        rows = Counter[str]()
        elapsed = 0.0
        while elapsed < length - 1e-9:
            elapsed = round(elapsed + step, 6)
            snap: dict[str, Any] = {}
            for i, p in enumerate(providers):
                c = cum[p]
                ok = rng.randint(8, 14) * (2 if i == 0 else 1) if elapsed > 4 else rng.randint(0, 3)
                r429 = rng.randint(1, 3) if i == 1 and 20 < elapsed < 36 else 0
                r5xx = 1 if rng.random() < 0.25 else 0
                r_to = 1 if i == 1 and rng.random() < 0.1 else 0
                c["requests"] += ok + r429 + r5xx + r_to
                c["successes"] += ok
                c["429"] += r429
                c["5xx"] += r5xx
                c["timeout"] += r_to
                c["prompt_tokens"] += ok * 20
                c["completion_tokens"] += ok * 12
                latencies[p] += [rng.lognormvariate(math.log(0.3 + 0.5 * i), 0.35) for _ in range(ok)]
                limit[p] = max(limit[p] / 2, 1) if r429 else min(limit[p] + 1, 16)
                price = PRICE_PER_TOKEN.get(i)
                if price is not None:
                    run_cost[p] += ok * 32 * price
                rows["done"] += ok
                snap[p] = {
                    "requests": c["requests"],
                    "successes": c["successes"],
                    "failures": {k: c[k] for k in ("429", "5xx", "timeout")},
                    "rate_limited": c["429"],
                    "in_flight": min(limit[p], rng.randint(4, 16)),
                    "limit": limit[p],
                    "rate_limit_rps": 8.0 if i == 1 else None,
                    "prompt_tokens": c["prompt_tokens"],
                    "completion_tokens": c["completion_tokens"],
                    "cost_usd": round(run_cost[p], 9) if price is not None else None,
                }
            rows["failed"] += 1 if rng.random() < 0.1 else 0
            timeline.append(
                {
                    "t": t0 + elapsed,
                    "elapsed_s": elapsed,
                    "providers": snap,
                    "rows_done": rows["done"],
                    "rows_failed": rows["failed"],
                }
            )
        for p in providers:
            totals[p].update(cum[p])
            cost[p] += run_cost[p]
        rows_total.update(rows)
        history.append(
            {
                "started_at": t0,
                "ended_at": t0 + length,
                "hfbatch_version": "0.1.0",
                "exit_code": 130 if run_index < len(runs) - 1 else 0,
                "rows_done": rows["done"],
                "rows_failed": rows["failed"],
                "requests": sum(cum[p]["requests"] for p in providers),
                "prompt_tokens": sum(cum[p]["prompt_tokens"] for p in providers),
                "completion_tokens": sum(cum[p]["completion_tokens"] for p in providers),
                "cost_usd": round(sum(run_cost.values()), 9),
                "settings": {"model": "org/model", "max_cost": 5.0 * (run_index + 1), "concurrency": 32},
            }
        )
        t0 += length + 3600  # an hour between runs: the report cuts the gap out
    stats = _stats(providers, totals, cost, latencies, rows_total, history)
    return stats, timeline


def _provider(c: Counter[str], cost: float | None, latencies: Sequence[float]) -> dict[str, Any]:
    return {
        "requests": c["requests"],
        "successes": c["successes"],
        "failures": {k: c[k] for k in ("401", "402", "429", "4xx", "5xx", "timeout", "connection", "malformed")},
        "retries": c["5xx"] + c["timeout"],
        "failovers_out": c["429"],
        "breaker_trips": 0,
        "latency_s": {q: _percentile(latencies, n) for q, n in (("p50", 50), ("p95", 95), ("p99", 99))},
        "latency_histogram": _histogram(latencies),
        "prompt_tokens": c["prompt_tokens"],
        "completion_tokens": c["completion_tokens"],
        "cost_usd": None if cost is None else round(cost, 9),
    }


def _stats(
    providers: Sequence[str],
    totals: dict[str, Counter[str]],
    cost: dict[str, float],
    latencies: dict[str, list[float]],
    rows: Counter[str],
    history: list[dict[str, Any]],
) -> dict[str, Any]:
    per = {
        p: _provider(totals[p], cost[p] if i in PRICE_PER_TOKEN else None, latencies[p])
        for i, p in enumerate(providers)
    }
    overall_counts = sum(totals.values(), Counter[str]())
    every = [v for p in providers for v in latencies[p]]
    overall = _provider(overall_counts, round(sum(cost.values()), 9), every)
    wall = sum(r["ended_at"] - r["started_at"] for r in history)
    return {
        "model": "org/model",
        "provider_order": list(providers),
        "input": "data/prompts.jsonl",
        "output": "out/results.jsonl",
        "exit_code": 0,
        "stopped_because": None,
        "hfbatch_version": "0.1.0",
        "settings": {"model": "org/model", "max_cost": 10.0, "concurrency": 32, "api_key_env": "HF_TOKEN"},
        "wall_time_s": wall,
        "rows": {
            "seen": rows["done"] + rows["failed"],
            "done": rows["done"],
            "failed": rows["failed"],
            "bad_input": 3,
            "skipped_already_done": 0,
        },
        "rows_per_second": round(rows["done"] / wall, 2),
        "overall": overall,
        "providers": per,
        "finish_reasons": {"stop": rows["done"] - 17, "length": 17},
        "runs": history,
    }


def make_errors(
    count: int, *, distinct: int = 5, providers: Sequence[str] = ("alpha", "beta")
) -> Iterator[dict[str, Any]]:
    """`count` error records; message k (0 <= k < distinct) comes about twice as often as message k + 1."""
    for i in range(count):
        k = min((i & -i).bit_length() - 1 if i else 0, distinct - 1)
        yield {
            "id": f"row-{i}",
            "index": i,
            "where": "request",
            "error": "ServerError",
            "kind": "5xx" if k % 2 == 0 else "timeout",
            "status": 503 if k % 2 == 0 else None,
            "provider": providers[k % len(providers)],
            "message": f"message number {k}",
            "attempts": 3,
        }


class Page(HTMLParser):
    """What the tests look at in a report: charts and their series, summary values, tags, attributes, text."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.svgs: dict[str, dict[str, str]] = {}
        self.series: dict[str, list[str]] = {}
        self.stats: dict[str, dict[str, str]] = {}
        self.tags: set[str] = set()
        self.attrs: list[tuple[str, str]] = []
        self.notes: set[str] = set()
        self.text: list[str] = []
        self._svg: str | None = None
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        self.tags.add(tag)
        self.attrs += list(a.items())
        if tag == "svg":
            self._svg = a.get("id", "")
            self.svgs[self._svg] = a
            self.series.setdefault(self._svg, [])
        elif self._svg is not None and "data-series" in a:
            self.series[self._svg].append(a["data-series"])
        if "data-stat" in a:
            self.stats[a["data-stat"]] = a
        if "data-chart" in a:
            self.notes.add(a["data-chart"])

    def handle_endtag(self, tag: str) -> None:
        if tag == "svg":
            self._svg = None

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def value(self, stat: str) -> str | None:
        """The exact number behind a summary card."""
        return self.stats[stat].get("data-value")

    @property
    def all_text(self) -> str:
        """The page's text, as a reader sees it (entities decoded)."""
        return " ".join(self.text)
