"""Latency histograms from the stats file (log-spaced buckets) put on one set of display bins."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from hfbatch.report.text import num

__all__ = ["LatencyBins", "latency_bins"]

DEFAULT_GROWTH = 1.02  # what hfbatch.stats.LatencyHistogram uses when a file does not say
DEFAULT_MIN = 1e-4
MAX_DISPLAY_BINS = 40
MIN_DISPLAY_BINS = 8


@dataclass(frozen=True, slots=True)
class LatencyBins:
    """Shared bin edges (seconds) and, per provider, the share of its requests in each bin."""

    edges: list[float]
    shares: dict[str, list[float]]
    counts: dict[str, int]


def _buckets(hist: Any) -> list[tuple[float, float, float]]:
    """(low, high, count) of each non-empty bucket; [] when the histogram is missing or malformed."""
    if not isinstance(hist, dict) or not isinstance(hist.get("buckets"), dict):
        return []
    growth = num(hist.get("growth")) or DEFAULT_GROWTH
    low = num(hist.get("min")) or DEFAULT_MIN
    if not 1 < growth < 10 or low <= 0:
        return []
    out = []
    for key, count in hist["buckets"].items():
        c = num(count)
        try:
            index = int(key)
        except (TypeError, ValueError):
            continue
        if c and c > 0 and -10_000 < index < 10_000:
            out.append((low * growth**index, low * growth ** (index + 1), c))
    return out


def latency_bins(histograms: dict[str, Any]) -> LatencyBins | None:
    """Display bins over all providers' histograms, or None when none has a count."""
    parsed = {name: b for name, h in histograms.items() if (b := _buckets(h))}
    if not parsed:
        return None
    lo = min(b[0] for bs in parsed.values() for b in bs)
    hi = max(b[1] for bs in parsed.values() for b in bs)
    if hi / lo < 1.5:  # one narrow peak: widen so the axis has room for ticks
        lo, hi = lo / 1.25, hi * 1.25
    # Enough bins to show a shape, few enough that a small sample does not look like spikes.
    most = max(sum(c for _, _, c in bs) for bs in parsed.values())
    n = min(MAX_DISPLAY_BINS, max(MIN_DISPLAY_BINS, math.ceil(2 * most ** (1 / 3))))
    step = math.log(hi / lo) / n
    edges = [lo * math.exp(step * i) for i in range(n + 1)]
    shares: dict[str, list[float]] = {}
    counts: dict[str, int] = {}
    for name, bs in parsed.items():
        total = sum(c for _, _, c in bs)
        bins = [0.0] * n
        for b_lo, b_hi, c in bs:
            middle = math.sqrt(b_lo * b_hi)
            bins[min(max(int(math.log(middle / lo) / step), 0), n - 1)] += c / total
        shares[name] = bins
        counts[name] = round(total)
    return LatencyBins(edges, shares, counts)
