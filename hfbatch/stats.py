"""Per-provider and overall statistics of a run, in constant memory."""

from __future__ import annotations

import math
import textwrap
from collections import Counter
from typing import Any

from hfbatch.errors import ATTEMPT_KINDS

__all__ = ["TABLE_WIDTH", "LatencyHistogram", "ModelStats", "ProviderStats", "RunStats", "format_table"]

_BUCKET_GROWTH = 1.02  # each bucket 2% wider than the last: percentiles within 2%
_MIN_LATENCY = 1e-4
_LOG_GROWTH = math.log(_BUCKET_GROWTH)


class LatencyHistogram:
    """Latencies in log-spaced buckets, so a million requests cost a few kilobytes."""

    __slots__ = ("buckets", "count", "total")

    def __init__(self) -> None:
        self.buckets: Counter[int] = Counter()
        self.count = 0
        self.total = 0.0

    def add(self, seconds: float) -> None:
        """Record one latency."""
        self.count += 1
        self.total += seconds
        self.buckets[int(math.log(max(seconds, _MIN_LATENCY) / _MIN_LATENCY) / _LOG_GROWTH)] += 1

    def merge(self, other: LatencyHistogram) -> None:
        """Add another histogram's counts to this one."""
        self.buckets.update(other.buckets)
        self.count += other.count
        self.total += other.total

    def to_dict(self) -> dict[str, Any]:
        """The buckets, so percentiles can be recomputed (and histograms merged) from the stats file."""
        return {
            "growth": _BUCKET_GROWTH,
            "min": _MIN_LATENCY,
            "buckets": {str(k): v for k, v in sorted(self.buckets.items())},
        }

    def percentile(self, q: float) -> float | None:
        """The q-th percentile (0-100) in seconds, or None when empty."""
        if not self.count:
            return None
        rank = q / 100.0 * self.count
        buckets = self.buckets
        found = None
        if q >= 50:
            # The lowest bucket whose count with all below reaches the rank, found from the top:
            # the p99 the adaptive timeout asks for often walks a handful of buckets, not hundreds.
            below = self.count
            for index in sorted(buckets, reverse=True):
                if below < rank:
                    break
                found = index
                below -= buckets[index]
        else:
            seen = 0
            for index in sorted(buckets):
                seen += buckets[index]
                if seen >= rank:
                    found = index
                    break
        # The bucket's geometric middle.
        return None if found is None else float(_MIN_LATENCY * _BUCKET_GROWTH ** (found + 0.5))

    def summary(self) -> dict[str, float | None]:
        """p50, p95, p99 and mean, in seconds rounded to the millisecond's tenth."""

        def r(v: float | None) -> float | None:
            return None if v is None else round(v, 4)

        mean = self.total / self.count if self.count else None
        return {
            "p50": r(self.percentile(50)),
            "p95": r(self.percentile(95)),
            "p99": r(self.percentile(99)),
            "mean": r(mean),
        }


class ProviderStats:
    """What one provider did during a run."""

    __slots__ = (
        "billed_replies",
        "breaker_trips",
        "cancelled",
        "completion_tokens",
        "cost_usd",
        "failovers_out",
        "failures",
        "hedges",
        "hedges_won",
        "latency",
        "priced",
        "prompt_tokens",
        "replies_without_usage",
        "requests",
        "retries",
        "successes",
        "unpriced_replies",
    )

    def __init__(self) -> None:
        self.requests = 0
        self.successes = 0
        self.failures: Counter[str] = Counter()
        self.retries = 0
        self.failovers_out = 0
        self.breaker_trips = 0
        self.hedges = 0  # second tries of slow requests in the run's tail (see hedging.py)
        self.hedges_won = 0  # of them, those that answered first and gave the row its result
        self.cancelled = 0  # requests abandoned when the other of a hedged pair answered first
        self.prompt_tokens = 0  # of billed replies (whole 2xx replies, failed ones too)
        self.completion_tokens = 0
        self.latency = LatencyHistogram()
        # Money (pricing.count_billed keeps these): whole 2xx replies are billed, failed ones too.
        self.billed_replies = 0
        self.replies_without_usage = 0  # billed for tokens nobody reported: cost is a lower bound
        self.unpriced_replies = 0  # billed at a price nobody knows: cost is unknown
        self.cost_usd = 0.0
        self.priced = False  # whether this provider's price is known

    def merge(self, other: ProviderStats) -> None:
        """Add another provider's counts (for the overall column)."""
        self.requests += other.requests
        self.successes += other.successes
        self.failures.update(other.failures)
        self.retries += other.retries
        self.failovers_out += other.failovers_out
        self.breaker_trips += other.breaker_trips
        self.hedges += other.hedges
        self.hedges_won += other.hedges_won
        self.cancelled += other.cancelled
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.latency.merge(other.latency)
        self.billed_replies += other.billed_replies
        self.replies_without_usage += other.replies_without_usage
        self.unpriced_replies += other.unpriced_replies
        self.cost_usd += other.cost_usd

    @property
    def cost(self) -> float | None:
        """USD billed, or None when a billed reply's price (or this provider's) is unknown."""
        if not self.priced or self.unpriced_replies:
            return None
        return self.cost_usd

    def to_dict(self) -> dict[str, Any]:
        """The JSON form of these counts."""
        return {
            "requests": self.requests,
            "successes": self.successes,
            "failures": {k.value: self.failures.get(k, 0) for k in ATTEMPT_KINDS},
            "retries": self.retries,
            "failovers_out": self.failovers_out,
            "breaker_trips": self.breaker_trips,
            "hedges": self.hedges,
            "hedges_won": self.hedges_won,
            "cancelled": self.cancelled,
            "latency_s": self.latency.summary(),
            "latency_histogram": self.latency.to_dict(),
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "billed_replies": self.billed_replies,
            "replies_without_usage": self.replies_without_usage,
            "cost_usd": self.cost,
            # False when the cost is unknown, or a lower bound (replies billed without usage).
            "cost_exact": self.cost is not None and not self.replies_without_usage,
        }


class RunStats:
    """Rows and per-provider counts for one run; the runner updates it, the CLI prints it."""

    def __init__(self, providers: list[str] | None = None) -> None:
        self.providers: dict[str, ProviderStats] = {p: ProviderStats() for p in providers or ()}
        self.rows_done = 0
        self.rows_failed = 0
        self.rows_skipped = 0  # already in the output from an earlier run
        self.rows_bad = 0  # bad input rows, sent to the errors file
        self.rows_seen = 0
        self.rows_other_shards = 0  # with --shard: rows read that another shard takes
        self.rows_total: int | None = None  # the input's size when known up front, for ETA
        #: Seconds rows spent waiting for a provider with room (summed over rows).
        self.capacity_wait = 0.0
        #: How the rows' results ended (`stop`, `length`, ...), counted per finish reason.
        self.finish_reasons: Counter[str] = Counter()
        #: What the router publishes and which prices apply (preflight.RunPlan.pricing), for the stats file.
        self.pricing: dict[str, Any] | None = None
        self.models: dict[str, ModelStats] = {}

    def model(self, name: str) -> ModelStats:
        """The row counts of model `name`, created on first use."""
        stats = self.models.get(name)
        if stats is None:
            stats = self.models[name] = ModelStats()
        return stats

    def provider(self, name: str) -> ProviderStats:
        """The stats of `name`, created on first use."""
        stats = self.providers.get(name)
        if stats is None:
            stats = self.providers[name] = ProviderStats()
        return stats

    def overall(self) -> ProviderStats:
        """The sum over providers (its cost is unknown when any billed reply's price is)."""
        total = ProviderStats()
        total.priced = True
        for stats in self.providers.values():
            total.merge(stats)
        return total

    def to_dict(
        self,
        *,
        wall_time: float,
        extra: dict[str, Any] | None = None,
        limits: dict[str, dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """The stats file's content; `limits` adds each provider's current (learned) limits."""
        processed = self.rows_done + self.rows_failed
        providers = {name: s.to_dict() for name, s in self.providers.items()}
        for name, lim in (limits or {}).items():
            providers.setdefault(name, ProviderStats().to_dict())["limits"] = lim
        return {
            **(extra or {}),
            "wall_time_s": round(wall_time, 3),
            "rows": {
                "seen": self.rows_seen,
                "done": self.rows_done,
                "failed": self.rows_failed,
                "bad_input": self.rows_bad,
                "skipped_already_done": self.rows_skipped,
                "input_estimate": self.rows_total,
                "other_shards": self.rows_other_shards,
            },
            "rows_per_second": round(processed / wall_time, 2) if wall_time > 0 else None,
            "capacity_wait_s": round(self.capacity_wait, 3),
            "finish_reasons": dict(self.finish_reasons.most_common()),
            "overall": self.overall().to_dict(),
            "providers": providers,
            **({"pricing": self.pricing} if self.pricing is not None else {}),
            "models": {name: s.to_dict() for name, s in self.models.items()},
        }


class ModelStats:
    """What the rows of one model came to (a job whose rows name their own models has several)."""

    __slots__ = ("completion_tokens", "prompt_tokens", "requests", "rows_done", "rows_failed")

    def __init__(self) -> None:
        self.rows_done = 0
        self.rows_failed = 0
        self.requests = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0

    def add_done(self, attempts: int, prompt_tokens: int | None, completion_tokens: int | None) -> None:
        """Count a finished row: its attempts and the tokens of its result."""
        self.rows_done += 1
        self.requests += attempts
        self.prompt_tokens += prompt_tokens or 0
        self.completion_tokens += completion_tokens or 0

    def add_failed(self, attempts: int) -> None:
        """Count a failed row and its attempts."""
        self.rows_failed += 1
        self.requests += attempts

    def to_dict(self) -> dict[str, int]:
        """The JSON form of these counts."""
        return {
            "requests": self.requests,
            "rows_done": self.rows_done,
            "rows_failed": self.rows_failed,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
        }


#: The end-of-run table fits this many columns.
TABLE_WIDTH = 100
#: Failure classes with a column of their own; the rarer ones add up in "other".
TABLE_FAILURES = ("402", "429", "5xx", "timeout")
_PROVIDER_WIDTH = 14  # longer provider names are cut
TABLE_LEGEND = "402 to other: failed attempts (other: 401, 4xx, connection, malformed, empty, invalid output)"


def _count(n: int) -> str:
    """A count in at most 5 characters: exact below 100,000, then 123k, 1.2M, 12M (the stats file is exact)."""
    if n < 100_000:
        return str(n)
    for size, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= size:
            v = n / size
            return f"{v:.1f}{unit}" if round(v, 1) < 10 else f"{v:.0f}{unit}"
    return str(n)


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v * 1000:.0f}"


def _usd(s: dict[str, Any]) -> str:
    """A cost cell: '?' when unknown, '+' after a lower bound."""
    cost = s.get("cost_usd")
    if cost is None:
        return "?"
    text = f"{cost:.6f}" if cost < 1 else f"{cost:.2f}"
    return text + ("" if s.get("cost_exact", True) else "+")


def _cells(s: dict[str, Any]) -> list[str]:
    """One provider's cells, in the order of `_HEADERS` after the name."""
    f = s["failures"]
    other = sum(v for k, v in f.items() if k not in TABLE_FAILURES)
    lat = s["latency_s"]
    counts = [s["requests"], s["successes"], *(f.get(k, 0) for k in TABLE_FAILURES), other, s["failovers_out"]]
    return [*map(_count, counts), _ms(lat["p50"]), _ms(lat["p95"]), _usd(s)]


_HEADERS = ("provider", "requests", "ok", *TABLE_FAILURES, "other", "failovers", "p50 ms", "p95 ms", "cost $")


def format_table(data: dict[str, Any]) -> str:
    """The end-of-run summary of a stats dict: one line per provider and one overall, a legend, rows and cost.

    At most `TABLE_WIDTH` columns wide; the rarer failure classes add up in "other", and retries,
    circuit-breaker trips and hedges, when there were some, get a line each.
    """
    rows = [(name[:_PROVIDER_WIDTH], s) for name, s in data["providers"].items()]
    rows.append(("(all)", data["overall"]))
    grid = [list(_HEADERS), *([name, *_cells(s)] for name, s in rows)]
    widths = [max(len(row[i]) for row in grid) for i in range(len(_HEADERS))]
    gap = "  " if sum(widths) + 2 * (len(widths) - 1) <= TABLE_WIDTH else " "
    lines = [
        gap.join(
            cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in grid
    ]
    lines.append(TABLE_LEGEND)
    rare = (
        ("retries", "retries on the same provider"),
        ("breaker_trips", "circuit-breaker trips"),
        ("hedges", "hedged (second tries of slow requests)"),
    )
    for key, label in rare:
        counts = [f"{name} {s[key]}" for name, s in data["providers"].items() if s.get(key)]
        if counts:
            lines += textwrap.wrap(f"{label}: " + ", ".join(counts), TABLE_WIDTH, subsequent_indent="  ")
    r = data["rows"]
    lines.append(
        f"rows: {r['done']} done, {r['failed']} failed, {r['bad_input']} bad input, "
        f"{r['skipped_already_done']} already done; {data['wall_time_s']:.1f}s, "
        f"{data['rows_per_second'] or 0:.1f} rows/s"
    )
    if reasons := data.get("finish_reasons"):
        # A `length` count is the one to watch: those rows hit max_tokens and are cut short.
        finish = "finish: " + ", ".join(f"{reason} {count}" for reason, count in reasons.items())
        lines += textwrap.wrap(finish, TABLE_WIDTH, subsequent_indent="  ")
    lines.append(_cost_line(data["overall"]))
    return "\n".join(lines)


def _cost_line(overall: dict[str, Any]) -> str:
    """What the run cost, and why the figure is unknown or a lower bound when it is."""
    cost = overall.get("cost_usd")
    if cost is None:
        return "cost: unknown (no price for a provider that billed replies; set price_in and price_out)"
    line = f"cost: ${cost:.6f} for {overall.get('billed_replies', 0)} billed replies"
    if without := overall.get("replies_without_usage"):
        line += f" (at least: {without} replies came without usage)"
    return line
