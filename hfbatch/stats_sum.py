"""Adding stats files up: the runs into one output (history.py), or the shards of one job (merge.py).

Counts are summed; what is derived is recomputed from the sums: percentiles from the merged
latency histograms (each provider's `latency_histogram`), the mean from the summed latencies,
the overall column from the providers, costs as unknown when any part's is. Reading never
fails on a part written by another hfbatch version: a missing or odd value counts as 0.

The time a set of runs took is the union of their [started_at, ended_at] intervals
(`active_time`): shards that ran side by side count once, nightly runs add up, and the idle
hours between them do not count.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from hfbatch.stats import LatencyHistogram, ModelStats, ProviderStats

__all__ = ["active_time", "add_up", "number", "provider_from_dict"]

_COUNTS = (
    "requests",
    "successes",
    "retries",
    "failovers_out",
    "breaker_trips",
    "hedges",
    "hedges_won",
    "cancelled",
    "prompt_tokens",
    "completion_tokens",
    "billed_replies",
    "replies_without_usage",
)


def number(value: Any) -> float:
    """A count or amount read from a stats file: 0 for anything that is not a finite number."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return 0
    return value


def _real(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _count(value: Any) -> int:
    return int(number(value))


def _histogram(data: Any, mean: Any) -> LatencyHistogram:
    """A histogram rebuilt from its `to_dict` form; buckets of another bucket layout are re-filed by their middle."""
    hist = LatencyHistogram()
    if not isinstance(data, dict) or not isinstance(data.get("buckets"), dict):
        return hist
    growth, low = number(data.get("growth")), number(data.get("min"))
    same = LatencyHistogram().to_dict()
    for key, count in data["buckets"].items():
        n = _count(count)
        if n <= 0 or not str(key).lstrip("-").isdigit():
            continue
        if growth == same["growth"] and low == same["min"]:
            hist.buckets[int(key)] += n
            hist.count += n
        elif growth > 1 and low > 0:
            probe = LatencyHistogram()
            probe.add(low * growth ** (int(key) + 0.5))  # the old bucket's middle, filed in today's layout
            hist.buckets[next(iter(probe.buckets))] += n
            hist.count += n
    hist.total = number(mean) * hist.count
    return hist


def provider_from_dict(data: Any) -> ProviderStats:
    """A provider's (or the overall) counts read back from the stats file."""
    s = ProviderStats()
    if not isinstance(data, dict):
        return s
    for name in _COUNTS:
        setattr(s, name, _count(data.get(name)))
    failures = data.get("failures")
    if isinstance(failures, dict):
        s.failures = Counter({str(k): _count(v) for k, v in failures.items() if _count(v)})
    latency = data.get("latency_s")
    s.latency = _histogram(data.get("latency_histogram"), latency.get("mean") if isinstance(latency, dict) else None)
    cost = data.get("cost_usd")
    if isinstance(cost, int | float) and not isinstance(cost, bool):
        s.priced = True
        s.cost_usd = float(cost)
    elif s.billed_replies:
        s.unpriced_replies = s.billed_replies  # its cost was unknown, so any sum with it is too
    return s


def _add(into: ProviderStats, other: ProviderStats) -> None:
    into.merge(other)
    into.priced = into.priced or other.priced


def _models(parts: Iterable[dict[str, Any]]) -> dict[str, dict[str, int]]:
    out: dict[str, ModelStats] = {}
    for part in parts:
        models = part.get("models")
        for name, m in models.items() if isinstance(models, dict) else ():
            if not isinstance(m, dict):
                continue
            total = out.setdefault(str(name), ModelStats())
            for key in ("requests", "rows_done", "rows_failed", "prompt_tokens", "completion_tokens"):
                setattr(total, key, getattr(total, key) + _count(m.get(key)))
    return {name: m.to_dict() for name, m in out.items()}


def add_up(parts: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The providers, overall, models, finish reasons and capacity wait of `parts`, summed.

    A provider's current limits (`limits`) are not summed: the caller keeps the ones that apply.
    """
    providers: dict[str, ProviderStats] = {}
    reasons: Counter[str] = Counter()
    wait = 0.0
    for part in parts:
        given = part.get("providers")
        for name, data in given.items() if isinstance(given, dict) else ():
            _add(providers.setdefault(str(name), ProviderStats()), provider_from_dict(data))
        finish = part.get("finish_reasons")
        for reason, count in finish.items() if isinstance(finish, dict) else ():
            reasons[str(reason)] += _count(count)
        wait += number(part.get("capacity_wait_s"))
    overall = ProviderStats()
    overall.priced = True
    for s in providers.values():
        overall.merge(s)
    return {
        "capacity_wait_s": round(wait, 3),
        "finish_reasons": dict(reasons.most_common()),
        "overall": overall.to_dict(),
        "providers": {name: s.to_dict() for name, s in providers.items()},
        "models": _models(parts),
    }


def active_time(spans: Iterable[tuple[Any, Any]]) -> float:
    """Seconds covered by the union of (start, end) Unix-time spans; spans with an unknown end are skipped."""
    known = sorted((float(a), float(b)) for a, b in spans if _real(a) and _real(b) and b >= a)
    total = 0.0
    cur_start: float | None = None
    cur_end = 0.0
    for start, end in known:
        if cur_start is None or start > cur_end:
            if cur_start is not None:
                total += cur_end - cur_start
            cur_start, cur_end = start, end
        else:
            cur_end = max(cur_end, end)
    if cur_start is not None:
        total += cur_end - cur_start
    return total
