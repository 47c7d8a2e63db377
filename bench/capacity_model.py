"""How close the capacity learners get to each provider's real capacity, in the discrete-event model.

    python bench/capacity_model.py [--seeds 5] [--only cap16 ...] [--timeline NAME] [--json]

Each scenario of `hfbatch.capacity.model.SCENARIOS` runs `--seeds` times in virtual time
(64 workers routing rows through `acquire_any`, providers with hidden in-flight caps or
request windows); the table shows the worst seed. Goodput share is rows served over what
the providers could serve; 429 share is refusals over all replies. The issue's targets:
goodput >= 0.9 of capacity with <= 5% 429s for caps and <= 10% for rate limits. Runs in
about a minute on one core (5 seeds); nothing sleeps for real. Exit status 1 if a scenario misses its bar.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from typing import Any

from hfbatch.capacity.model import ModelResult
from hfbatch.capacity.scenarios import SCENARIOS, Scenario, run_scenario


def measure(name: str, scenario: Scenario, seeds: int) -> dict[str, Any]:
    """The worst and median share and 429 share of one scenario over `seeds` runs."""
    runs: list[ModelResult] = [run_scenario(scenario, seed=seed) for seed in range(seeds)]
    shares = [r.share for r in runs]
    refused = [r.refused_share for r in runs]
    learned = runs[0].providers
    return {
        "scenario": name,
        "what": scenario.what,
        "target": scenario.target,
        "duration_s": scenario.duration,
        "capacity_rows_s": runs[0].capacity,
        "goodput_rows_s": statistics.median(r.goodput for r in runs),
        "share_min": min(shares),
        "share_median": statistics.median(shares),
        "refused_max": max(refused),
        "refused_median": statistics.median(refused),
        "max_refusals_per_row": max(r.max_refusals_per_row for r in runs),
        "learned": [
            {"concurrency": p.learned.concurrency, "rate": p.learned.rate} if p.learned else None for p in learned
        ],
        "bar": {"min_share": scenario.min_share, "max_refused": scenario.max_refused},
        "ok": min(shares) >= scenario.min_share and max(refused) <= scenario.max_refused,
    }


def _learned(entry: dict[str, Any]) -> str:
    parts = []
    for lim in entry["learned"]:
        if lim is None:
            continue
        bits = []
        if lim["concurrency"] is not None:
            bits.append(f"{lim['concurrency']} in flight")
        if lim["rate"] is not None:
            bits.append(f"{lim['rate']:.1f}/s")
        parts.append(" + ".join(bits) or "-")
    return ", ".join(parts)


def format_table(results: list[dict[str, Any]], seeds: int) -> str:
    """A Markdown table of `measure` results."""
    lines = [
        f"Capacity learners in the model (worst of {seeds} seeds; * = the issue's targets)",
        "",
        "| scenario | capacity rows/s | goodput share | 429 share | most 429s for one row | learned (seed 0) | bar |",
        "| --- | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for r in results:
        star = "*" if r["target"] else ""
        bar = f">= {r['bar']['min_share']:.2f}, <= {r['bar']['max_refused']:.0%}: {'ok' if r['ok'] else 'MISSED'}"
        lines.append(
            f"| {r['scenario']}{star}: {r['what']} | {r['capacity_rows_s']:.0f} | {r['share_min']:.3f} "
            f"| {r['refused_max']:.2%} | {r['max_refusals_per_row']} | {_learned(r)} | {bar} |"
        )
    return "\n".join(lines)


def timeline(name: str) -> str:
    """The in-flight limit and request pace of each provider, once a second, for one scenario."""
    result = run_scenario(SCENARIOS[name])
    lines = [f"{name}: time s, then per provider: in-flight limit / request pace"]
    for i, row in enumerate(zip(*(p.limits for p in result.providers), strict=False)):
        cells = [f"{limit:>4} / {'-' if pace is None else f'{pace:.1f}':>6}" for _, limit, pace in row]
        lines.append(f"{i:>5}  " + "   ".join(cells))
    return "\n".join(lines)


def main() -> None:
    """Run the scenarios and print a table (or JSON with --json)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--only", action="append", choices=sorted(SCENARIOS), help="run only these scenarios")
    parser.add_argument("--timeline", choices=sorted(SCENARIOS), help="print one scenario's limits over time")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.timeline:
        print(timeline(args.timeline))
        return
    names = args.only or list(SCENARIOS)
    results = [measure(name, SCENARIOS[name], args.seeds) for name in names]
    print(json.dumps(results, indent=2) if args.json else format_table(results, args.seeds))
    if not all(r["ok"] for r in results):
        sys.exit(1)


if __name__ == "__main__":
    main()
