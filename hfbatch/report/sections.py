"""The report's chart sections: each returns its chart, or a note saying why there is none."""

from __future__ import annotations

from typing import Any

from hfbatch.report.charts import Bar, Marker, Panel, Series, bar_chart, histogram_chart, panels_chart, time_chart
from hfbatch.report.context import Context, dig
from hfbatch.report.histogram import latency_bins
from hfbatch.report.svg import FAILURE_COLORS, color_for
from hfbatch.report.text import esc, fmt_cost, fmt_duration, fmt_int, fmt_ms, fmt_num, fmt_time, num

__all__ = [
    "cost_section",
    "failures_section",
    "finish_section",
    "latency_section",
    "limits_section",
    "throughput_section",
]

MAX_BARS = 20


def _percent(share: float) -> str:
    """A share as a whole percentage, never rounding a few to 0% or nearly all to 100%."""
    if 0 < share < 0.01:
        return "<1%"
    if 0.99 < share < 1:
        return ">99%"
    return f"{share:.0%}"


def _note(chart_id: str, text: str) -> str:
    return f'<p class="note no-chart" data-chart="{chart_id}">{esc(text)}</p>'


def _markers(ctx: Context) -> list[Marker]:
    """A marker where each run after the first of its stream (shard) began."""
    seen: set[str] = set()
    out = []
    for seg in sorted(ctx.timeline.segments, key=lambda s: s.start):
        if seg.stream in seen:
            out.append(Marker(ctx.timeline.active(seg.start), "resumed", f"a run resumed at {fmt_time(seg.start)}"))
        seen.add(seg.stream)
    return out


def _no_timeline(chart_id: str, ctx: Context) -> str:
    if ctx.timeline.skipped and not ctx.timeline.segments:
        return _note(chart_id, f"The timeline has {ctx.timeline.skipped:,} records but none is a snapshot.")
    return _note(chart_id, "No timeline yet: this chart needs snapshots from a run (<output>.timeline.jsonl).")


def throughput_section(ctx: Context) -> str:
    """Successful requests per second over time, stacked by provider."""
    b = ctx.binned
    if b is None:
        return _no_timeline("chart-throughput", ctx)
    series = []
    for name in ctx.providers:
        ok = dig(b.counts, name, "successes") or [0.0] * (len(b.edges) - 1)
        total = sum(ok)
        series.append(Series(name, ctx.color(name), [v / b.width for v in ok], f"{name}: {fmt_int(total)} successes"))
    done = sum(b.rows_done)
    desc = (
        f"Successful requests per second, stacked by provider, over {fmt_duration(ctx.timeline.active_seconds)} "
        f"of running time in {len(ctx.timeline.segments)} run segment(s); {fmt_int(done)} rows done."
    )
    chart = time_chart(
        "chart-throughput",
        "Throughput by provider",
        desc,
        b.edges,
        series,
        y_label="successful requests / s",
        value_fmt=lambda v: fmt_num(v) + "/s",
        markers=_markers(ctx),
    )
    return f'<p class="lede">{esc(desc)}</p>{chart}'


def failures_section(ctx: Context) -> str:
    """Failed attempts per time bin, stacked by failure class (summed over providers)."""
    b = ctx.binned
    if b is None:
        return _no_timeline("chart-failures", ctx)
    n = len(b.edges) - 1
    per_kind: dict[str, list[float]] = {}
    for values in b.counts.values():
        for key, bins in values.items():
            if key.startswith("failures:"):
                target = per_kind.setdefault(key.removeprefix("failures:"), [0.0] * n)
                for i, v in enumerate(bins):
                    target[i] += v
    per_kind = {k: v for k, v in per_kind.items() if sum(v) > 0}
    if not per_kind:
        return _note("chart-failures", "No failed attempts in the timeline.")
    # Snapshots are seconds apart and bins do not line up with them, so counts become rates.
    per, unit = (60.0, "min") if ctx.timeline.active_seconds >= 600 else (1.0, "s")
    ordered = sorted(per_kind.items(), key=lambda kv: -sum(kv[1]))
    series = [
        Series(
            kind,
            FAILURE_COLORS.get(kind, color_for(i + 3)),
            [v / b.width * per for v in bins],
            f"{kind}: {fmt_int(sum(bins))} failures",
        )
        for i, (kind, bins) in enumerate(ordered)
    ]
    desc = "Failed attempts per " + ("minute" if unit == "min" else "second") + " by class; in all: "
    desc += ", ".join(f"{kind} {fmt_int(sum(bins))}" for kind, bins in ordered)
    return time_chart(
        "chart-failures",
        "Failures by class",
        desc,
        b.edges,
        series,
        y_label=f"failed attempts / {unit}",
        value_fmt=lambda v: f"{fmt_num(v)}/{unit}",
        bars=True,
        markers=_markers(ctx),
    )


def limits_section(ctx: Context) -> str:
    """Per provider: its concurrency limit, requests in flight, and 429 responses over time."""
    b = ctx.binned
    if b is None:
        return _no_timeline("chart-limits", ctx)
    n = len(b.edges) - 1
    panels = []
    for name in ctx.providers:
        gauges = b.gauges.get(name, {})
        counts = b.counts.get(name, {})
        r429 = counts.get("rate_limited") or counts.get("failures:429") or [0.0] * n
        limit = gauges.get("limit") or [None] * n
        inflight = gauges.get("in_flight") or [None] * n
        if not any(v is not None for v in (*limit, *inflight)) and not sum(r429):
            continue
        last_limit = next((v for v in reversed(limit) if v is not None), None)
        pace = next((v for v in reversed(gauges.get("rate_limit_rps") or []) if v is not None), None)
        caption = f"{fmt_int(sum(r429))} × 429"
        caption += f" · limit at the end {fmt_num(last_limit, 2)}" if last_limit is not None else ""
        caption += f" · paced at {fmt_num(pace, 2)} req/s" if pace is not None else ""
        panels.append(Panel(name, ctx.color(name), limit, inflight, r429, caption))
    if not panels:
        return _note("chart-limits", "The timeline has no limits, requests in flight or 429s to show.")
    desc = "Per provider: concurrency limit (line), requests in flight (area) and 429 responses (bars). " + "; ".join(
        f"{p.name}: {p.caption}" for p in panels
    )
    return panels_chart("chart-limits", "429s and limits per provider", desc, b.edges, panels)


def latency_section(ctx: Context) -> str:
    """The latency distribution of each provider, from the stats' histograms."""
    providers = dig(ctx.stats, "providers")
    if not isinstance(providers, dict):
        return _note("chart-latency", "No latency histograms yet: they come with the stats at the end of a run.")
    hists = {str(n): dig(s, "latency_histogram") for n, s in providers.items()}
    bins = latency_bins(hists)
    if bins is None:
        return _note("chart-latency", "The stats hold no latency histogram (only the percentiles in the table).")
    series = []
    for name in ctx.providers:
        if name in bins.shares:
            lat = dig(providers, name, "latency_s") or {}
            tip = f"{name}: {bins.counts[name]:,} requests; p50 {fmt_ms(lat.get('p50'))} ms"
            tip += f", p95 {fmt_ms(lat.get('p95'))} ms, p99 {fmt_ms(lat.get('p99'))} ms"
            series.append(Series(name, ctx.color(name), bins.shares[name], tip))
    desc = "Share of each provider's requests by latency (log scale). " + "; ".join(s.tip for s in series)
    return histogram_chart(
        "chart-latency", "Latency distribution per provider", desc, bins.edges, series, x_label="latency (log scale)"
    )


def cost_section(ctx: Context) -> str:
    """Cost per provider, with "unknown" where no price was known."""
    providers = dig(ctx.stats, "providers")
    per: dict[str, Any] = {}
    if isinstance(providers, dict):
        per = {str(n): dig(s, "cost_usd") for n, s in providers.items()}
    elif ctx.timeline.segments:
        per = {n: v.get("cost_usd") for n, v in ctx.timeline.totals()["providers"].items()}
    if not per or all(num(v) is None for v in per.values()):
        return _note("chart-cost", "Cost unknown: no prices were known for these providers.")
    bars = [
        Bar(name, num(per[name]), ctx.color(name), fmt_cost(per[name]), f"{name}: {fmt_cost(per[name])}")
        for name in ctx.providers
        if name in per
    ][:MAX_BARS]
    total = sum(v for b in bars if (v := b.value) is not None)
    return bar_chart("chart-cost", "Cost per provider", f"Total {fmt_cost(total)} (USD) over known prices.", bars)


def finish_section(ctx: Context) -> str:
    """How replies ended (finish_reason), most frequent first."""
    reasons = dig(ctx.stats, "finish_reasons")
    counts = {str(k): v for k, v in reasons.items() if num(v) is not None} if isinstance(reasons, dict) else {}
    if not counts:
        return _note("chart-finish-reasons", "No finish_reason counts in the stats.")
    ordered = sorted(counts.items(), key=lambda kv: -(num(kv[1]) or 0.0))[:MAX_BARS]
    total = sum(num(v) or 0.0 for _, v in ordered)
    bars = []
    for i, (reason, v) in enumerate(ordered):
        share = f" ({_percent((num(v) or 0.0) / total)})" if total else ""
        bars.append(Bar(reason, num(v), color_for(i), fmt_int(v) + share, f"{reason}: {fmt_int(v)} replies{share}"))
    desc = "Replies by finish_reason: " + ", ".join(f"{r} {fmt_int(v)}" for r, v in ordered)
    return bar_chart("chart-finish-reasons", "How replies ended", desc, bars)
