"""The report's charts as inline SVG: stacked series over time, limit panels, latency histograms, bars.

Each chart is one `<svg class="chart" id=...>`; each series in it carries `data-series="<name>"`,
and a `<title>` on marks and hover columns gives exact numbers as a tooltip, without JavaScript.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from hfbatch.report.svg import (
    CHAR_WIDTH,
    FAILURE_COLORS,
    Frame,
    LinearScale,
    LogScale,
    legend,
    log_ticks,
    nice_ticks,
    open_svg,
    polygon,
    polyline,
    x_axis,
    y_axis,
)
from hfbatch.report.text import esc, fmt_num

__all__ = [
    "Bar",
    "Marker",
    "Panel",
    "Series",
    "bar_chart",
    "fmt_clock",
    "histogram_chart",
    "panels_chart",
    "time_chart",
]

WIDTH = 960
_TIME_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)


@dataclass(frozen=True, slots=True)
class Series:
    """A named series of values, one per time bin (or per histogram bin)."""

    name: str
    color: str
    values: Sequence[float | None]
    tip: str  # the legend's tooltip: totals for this series


@dataclass(frozen=True, slots=True)
class Marker:
    """A vertical line on a time chart where a run (re)started."""

    x: float
    label: str
    tip: str


@dataclass(frozen=True, slots=True)
class Panel:
    """One provider's row in the limits chart."""

    name: str
    color: str
    limit: Sequence[float | None]
    in_flight: Sequence[float | None]
    rate_limited: Sequence[float]
    caption: str


@dataclass(frozen=True, slots=True)
class Bar:
    """One bar of a bar chart; value None is drawn as "unknown"."""

    name: str
    value: float | None
    color: str
    text: str
    tip: str


def fmt_clock(seconds: float) -> str:
    """Elapsed time as m:ss or h:mm:ss."""
    s = round(seconds)
    if s >= 3600:
        return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"
    return f"{s // 60}:{s % 60:02d}"


def _fmt_seconds(seconds: float) -> str:
    return f"{seconds:.3g} s"


def _time_axis(total: float) -> tuple[list[float], Callable[[float], str], str]:
    """Ticks, their format and the axis label for a time axis `total` seconds long."""
    if total < 10:
        ticks = [t for t in nice_ticks(0, total, 6) if t <= total + 1e-9]
        return ticks, _fmt_seconds, "time running (seconds)"
    step = next((st for st in _TIME_STEPS if total / st <= 8), _TIME_STEPS[-1] * math.ceil(total / 8 / 86400))
    label = "time running (h:mm:ss)" if total >= 3600 else "time running (m:ss)"
    return [i * step for i in range(int(total // step) + 1)], fmt_clock, label


def _time_fmt(total: float) -> Callable[[float], str]:
    return _fmt_seconds if total < 10 else fmt_clock


def _bin_label(edges: Sequence[float], i: int) -> str:
    fmt = _time_fmt(edges[-1])
    return f"{fmt(edges[i])}–{fmt(edges[i + 1])}"


def _layout(items: list[tuple[str, str, str]], height: float) -> tuple[str, Frame]:
    leg, leg_h = legend(items, 64, 16, WIDTH - 84)
    return leg, Frame(WIDTH, height + leg_h, top=16 + leg_h + 8)


def _markers(frame: Frame, xs: LinearScale, markers: Sequence[Marker]) -> str:
    out = []
    for m in markers:
        x = xs(m.x)
        out.append(
            f'<g class="marker"><title>{esc(m.tip)}</title><line x1="{x:.1f}" x2="{x:.1f}" y1="{frame.y1:.1f}" '
            f'y2="{frame.y0:.1f}"/><text x="{x + 4:.1f}" y="{frame.y1 + 11:.1f}">{esc(m.label)}</text></g>'
        )
    return "".join(out)


def _hover(frame: Frame, xs: LinearScale, edges: Sequence[float], tips: Sequence[str]) -> str:
    out = ['<g class="hover">']
    for i, tip in enumerate(tips):
        x0, x1 = xs(edges[i]), xs(edges[i + 1])
        out.append(
            f'<rect x="{x0:.1f}" y="{frame.y1:.1f}" width="{max(x1 - x0, 0.5):.1f}" '
            f'height="{frame.y0 - frame.y1:.1f}"><title>{esc(tip, 2000)}</title></rect>'
        )
    out.append("</g>")
    return "".join(out)


def time_chart(
    chart_id: str,
    title: str,
    desc: str,
    edges: Sequence[float],
    series: Sequence[Series],
    *,
    y_label: str,
    value_fmt: Callable[[float], str],
    bars: bool = False,
    markers: Sequence[Marker] = (),
) -> str:
    """Series stacked over time bins, as areas (rates) or bars (sparse events)."""
    leg, frame = _layout([(s.name, s.color, s.tip) for s in series], 280)
    n = len(edges) - 1
    tops = [0.0] * n
    stacks = []
    for s in series:
        lows = list(tops)
        tops = [lo + (v or 0.0) for lo, v in zip(lows, s.values, strict=True)]
        stacks.append((s, lows, tops))
    ymax = max(tops, default=0.0) or 1.0
    yticks = nice_ticks(0, ymax, 4)
    ys = LinearScale(0, yticks[-1], frame.y0, frame.y1)
    xs = LinearScale(edges[0], edges[-1], frame.x0, frame.x1)
    out = [open_svg(chart_id, title, desc, frame, "time-chart"), leg, y_axis(frame, ys, yticks, value_fmt, y_label)]
    mids = [(edges[i] + edges[i + 1]) / 2 for i in range(n)]
    for s, lows, highs in stacks:
        out.append(f'<g class="series" data-series="{esc(s.name)}" fill="{s.color}"><title>{esc(s.tip)}</title>')
        if bars:
            for i in range(n):
                if highs[i] > lows[i]:
                    x0, x1 = xs(edges[i]), xs(edges[i + 1])
                    out.append(
                        f'<rect x="{x0 + 0.5:.1f}" y="{ys(highs[i]):.1f}" width="{max(x1 - x0 - 1, 1):.1f}" '
                        f'height="{ys(lows[i]) - ys(highs[i]):.1f}"/>'
                    )
        else:
            xs_pts = [edges[0], *mids, edges[-1]]
            top = [highs[0], *highs, highs[-1]]
            low = [lows[0], *lows, lows[-1]]
            pts = [(xs(x), ys(v)) for x, v in zip(xs_pts, top, strict=True)]
            pts += [(xs(x), ys(v)) for x, v in reversed(list(zip(xs_pts, low, strict=True)))]
            out.append(f'<path class="area" d="{polygon(pts)}"/>')
            edge = polyline([(xs(x), ys(v)) for x, v in zip(xs_pts, top, strict=True)])
            out.append(f'<path class="edge" stroke="{s.color}" d="{edge}"/>')
        out.append("</g>")
    out.append(_markers(frame, xs, markers))
    ticks, fmt, label = _time_axis(edges[-1])
    if markers:
        label += "; idle time between runs cut out"
    out.append(x_axis(frame, xs, ticks, fmt, label))
    tips = [
        _bin_label(edges, i) + "".join(f"\n{s.name}: {value_fmt(s.values[i] or 0.0)}" for s in series) for i in range(n)
    ]
    out.append(_hover(frame, xs, edges, tips))
    out.append("</svg>")
    return "".join(out)


def panels_chart(chart_id: str, title: str, desc: str, edges: Sequence[float], panels: Sequence[Panel]) -> str:
    """One row per provider: its concurrency limit (line), requests in flight (area) and 429s (bars below)."""
    items = [
        ("limit", "#333333", "concurrency limit: a line in the provider's colour"),
        ("in flight", "#aaaaaa", "requests in flight: an area in the provider's colour"),
        ("429 responses", FAILURE_COLORS["429"], "429 (rate limited) responses per time bin (bars)"),
    ]
    leg, leg_h = legend(items, 64, 16, WIDTH - 84)
    title_h, strip_gap, strip_h, gap = 24.0, 8.0, 30.0, 22.0
    row_h = 100.0 if len(panels) <= 4 else 64.0  # many providers: flatter rows keep the chart a screen or two
    block = title_h + row_h + strip_gap + strip_h + gap
    top = 16 + leg_h + 6
    frame = Frame(WIDTH, top + len(panels) * block + 40, top=top)
    xs = LinearScale(edges[0], edges[-1], frame.x0, frame.x1)
    n = len(edges) - 1
    mids = [(edges[i] + edges[i + 1]) / 2 for i in range(n)]
    width = (edges[-1] - edges[0]) / max(n, 1) or 1.0
    out = [open_svg(chart_id, title, desc, frame, "panels-chart"), leg]
    y = top
    for p in panels:
        out.append(
            f'<g class="panel" data-series="{esc(p.name)}"><title>{esc(p.name)}: {esc(p.caption)}</title>'
            f'<text class="panel-title" x="{frame.x0:.1f}" y="{y + 14:.1f}">{esc(p.name, 60)}'
            f'<tspan class="caption" dx="10">{esc(p.caption)}</tspan></text>'
        )
        pf = Frame(WIDTH, y + title_h + row_h, top=y + title_h, bottom=0)
        levels = [v for v in (*p.limit, *p.in_flight) if v is not None]
        yt = nice_ticks(0, max(max(levels, default=1.0), 1.0), 3)
        ys = LinearScale(0, yt[-1], pf.y0, pf.y1)
        out.append(y_axis(pf, ys, yt, fmt_num, "requests"))
        for metric, values in (("in_flight", p.in_flight), ("limit", p.limit)):
            pts = [(xs(mids[i]), ys(v)) for i, v in enumerate(values) if v is not None]
            if not pts:
                continue
            if metric == "in_flight":
                area = [(pts[0][0], ys(0)), *pts, (pts[-1][0], ys(0))]
                out.append(f'<path class="inflight" data-metric="in_flight" fill="{p.color}" d="{polygon(area)}"/>')
            else:
                out.append(f'<path class="limit" data-metric="limit" stroke="{p.color}" d="{polyline(_steps(pts))}"/>')
        s0 = pf.y0 + strip_gap
        s1 = s0 + strip_h
        rmax = max(max(p.rate_limited, default=0.0), 1e-9)
        out.append(
            f'<g class="strip" data-metric="429" fill="{FAILURE_COLORS["429"]}">'
            f'<line class="baseline" x1="{frame.x0:.1f}" x2="{frame.x1:.1f}" y1="{s1:.1f}" y2="{s1:.1f}"/>'
            f'<text x="{frame.x0 - 6:.1f}" y="{s1 - 4:.1f}" text-anchor="end">429s</text>'
        )
        for i, v in enumerate(p.rate_limited):
            if v > 0:
                h = max(v / rmax * strip_h, 1.5)
                x0, x1 = xs(edges[i]), xs(edges[i + 1])
                tip = f"{_bin_label(edges, i)}: {fmt_num(v / width)} × 429 per second"
                out.append(
                    f'<rect x="{x0 + 0.5:.1f}" y="{s1 - h:.1f}" width="{max(x1 - x0 - 1, 1):.1f}" '
                    f'height="{h:.1f}"><title>{esc(tip)}</title></rect>'
                )
        out.append("</g></g>")
        y = s1 + gap
    base = Frame(WIDTH, frame.height, top=top)
    ticks, fmt, label = _time_axis(edges[-1])
    out.append(x_axis(base, xs, ticks, fmt, label, y=y - gap))
    out.append("</svg>")
    return "".join(out)


def _steps(pts: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """A step line through points: a level holds until the next point."""
    out: list[tuple[float, float]] = []
    for i, (x, y) in enumerate(pts):
        if i:
            out.append((x, pts[i - 1][1]))
        out.append((x, y))
    return out


def histogram_chart(
    chart_id: str, title: str, desc: str, edges: Sequence[float], series: Sequence[Series], *, x_label: str
) -> str:
    """Distributions over shared log-spaced bins (values are shares, 0-1), one outline per series."""
    leg, frame = _layout([(s.name, s.color, s.tip) for s in series], 260)
    lo, hi = edges[0], edges[-1]
    xs = LogScale(lo, hi, frame.x0, frame.x1)
    ymax = max((v or 0.0 for s in series for v in s.values), default=0.0)
    yt = nice_ticks(0, max(ymax, 0.01), 4)
    ys = LinearScale(0, yt[-1], frame.y0, frame.y1)
    out = [open_svg(chart_id, title, desc, frame, "histogram-chart")]
    out.append(leg + y_axis(frame, ys, yt, lambda v: f"{v * 100:.0f}%", "share of requests"))
    for s in series:
        pts: list[tuple[float, float]] = [(xs(lo), ys(0))]
        for i, v in enumerate(s.values):
            pts += [(xs(edges[i]), ys(v or 0.0)), (xs(edges[i + 1]), ys(v or 0.0))]
        pts.append((xs(hi), ys(0)))
        out.append(
            f'<g class="series" data-series="{esc(s.name)}"><title>{esc(s.tip)}</title>'
            f'<path class="hist-fill" fill="{s.color}" d="{polygon(pts)}"/>'
            f'<path class="hist-line" stroke="{s.color}" d="{polyline(pts)}"/></g>'
        )
    out.append(x_axis(frame, xs, log_ticks(lo, hi), _fmt_latency, x_label))
    tips = [
        f"{_fmt_latency(edges[i])}–{_fmt_latency(edges[i + 1])}"
        + "".join(f"\n{s.name}: {(s.values[i] or 0.0) * 100:.1f}%" for s in series)
        for i in range(len(edges) - 1)
    ]
    hover = ['<g class="hover">']
    for i, tip in enumerate(tips):
        x0, x1 = xs(edges[i]), xs(edges[i + 1])
        hover.append(
            f'<rect x="{x0:.1f}" y="{frame.y1:.1f}" width="{max(x1 - x0, 0.5):.1f}" height="{frame.y0 - frame.y1:.1f}">'
            f"<title>{esc(tip, 2000)}</title></rect>"
        )
    out.append("".join(hover) + "</g></svg>")
    return "".join(out)


def _fmt_latency(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:g} s"
    ms = seconds * 1000
    return f"{ms:.2g} ms" if ms < 1 else f"{ms:.3g} ms"


def bar_chart(chart_id: str, title: str, desc: str, bars: Sequence[Bar], *, width: float = WIDTH / 2 - 12) -> str:
    """Horizontal bars with the name on the left and the value at the bar's end."""
    label_w = min(max((len(b.name) for b in bars), default=4), 24) * CHAR_WIDTH + 12
    row = 26.0
    frame = Frame(width, 12 + row * len(bars) + 8, left=label_w, right=80, top=12, bottom=8)
    vmax = max((b.value for b in bars if b.value is not None), default=0.0)
    xs = LinearScale(0, vmax or 1.0, frame.x0, frame.x1)
    out = [open_svg(chart_id, title, desc, frame, "bar-chart")]
    for i, b in enumerate(bars):
        y = frame.top + i * row
        out.append(f'<g class="series bar" data-series="{esc(b.name)}"><title>{esc(b.tip)}</title>')
        out.append(f'<text class="bar-label" x="{frame.x0 - 8:.1f}" y="{y + 16:.1f}" text-anchor="end">')
        out.append(f"{esc(b.name, 24)}</text>")
        if b.value is None:
            out.append(f'<text class="unknown" x="{frame.x0 + 4:.1f}" y="{y + 16:.1f}">{esc(b.text)}</text></g>')
            continue
        w = max(xs(b.value) - frame.x0, 1.0 if b.value > 0 else 0.0)
        out.append(f'<rect x="{frame.x0:.1f}" y="{y + 4:.1f}" width="{w:.1f}" height="{row - 8:.1f}" rx="2" ')
        out.append(f'fill="{b.color}"/><text x="{frame.x0 + w + 6:.1f}" y="{y + 16:.1f}">{esc(b.text)}</text></g>')
    out.append(f'<line class="baseline" x1="{frame.x0:.1f}" x2="{frame.x0:.1f}" y1="{frame.top - 4:.1f}" ')
    out.append(f'y2="{frame.y0 + 4:.1f}"/></svg>')
    return "".join(out)
