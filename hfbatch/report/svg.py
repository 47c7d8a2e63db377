"""SVG building blocks for the report's charts: colours, scales, ticks, axes, legends and paths, as strings.

Everything here takes numbers and already-chosen labels; labels from data are escaped with `esc`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from hfbatch.report.text import esc

__all__ = [
    "FAILURE_COLORS",
    "PALETTE",
    "Frame",
    "LinearScale",
    "LogScale",
    "color_for",
    "legend",
    "log_ticks",
    "nice_ticks",
    "open_svg",
    "polygon",
    "polyline",
    "x_axis",
    "y_axis",
]

#: Okabe-Ito colours, readable by people with the common colour-vision deficiencies, yellow last (weak on white);
#: then Paul Tol's "muted" ones that differ from them, for runs with many providers.
PALETTE = (
    *("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#666666", "#F0E442"),
    *("#332288", "#117733", "#882255", "#44AA99", "#999933", "#AA4499", "#DDCC77"),
)
#: Failure classes keep one colour in every report, so a reader learns them once.
FAILURE_COLORS = {
    "429": "#D55E00",  # the same vermillion as the 429 bars of the limits chart
    "5xx": "#CC79A7",
    "timeout": "#882255",
    "connection": "#56B4E9",
    "malformed": "#009E73",
    "402": "#F0E442",
    "401": "#000000",
    "4xx": "#0072B2",
    "empty": "#999999",
    "invalid_output": "#44AA99",
}
CHAR_WIDTH = 6.6  # average width of a 12px sans-serif character, for laying out labels without a font


def color_for(index: int) -> str:
    """The palette colour of the series at `index`."""
    return PALETTE[index % len(PALETTE)]


@dataclass(frozen=True, slots=True)
class Frame:
    """A chart's size and the margins around its plot area."""

    width: float
    height: float
    left: float = 64
    right: float = 20
    top: float = 16
    bottom: float = 40

    @property
    def x0(self) -> float:
        """Left edge of the plot area."""
        return self.left

    @property
    def x1(self) -> float:
        """Right edge of the plot area."""
        return self.width - self.right

    @property
    def y0(self) -> float:
        """Bottom edge of the plot area (SVG y grows downwards)."""
        return self.height - self.bottom

    @property
    def y1(self) -> float:
        """Top edge of the plot area."""
        return self.top


@dataclass(frozen=True, slots=True)
class LinearScale:
    """Maps [d0, d1] onto [r0, r1]."""

    d0: float
    d1: float
    r0: float
    r1: float

    def __call__(self, v: float) -> float:
        span = self.d1 - self.d0
        if span == 0:
            return self.r0
        return self.r0 + (v - self.d0) / span * (self.r1 - self.r0)


@dataclass(frozen=True, slots=True)
class LogScale:
    """Maps [d0, d1] (both > 0) onto [r0, r1] logarithmically."""

    d0: float
    d1: float
    r0: float
    r1: float

    def __call__(self, v: float) -> float:
        lo, hi = math.log(self.d0), math.log(self.d1)
        if hi == lo:
            return self.r0
        return self.r0 + (math.log(max(v, self.d0 * 1e-9)) - lo) / (hi - lo) * (self.r1 - self.r0)


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values (1, 2, 5 x 10^k steps), about `count` of them, from at most lo to at least hi."""
    if not math.isfinite(lo) or not math.isfinite(hi) or hi <= lo:
        return [lo, lo + 1]
    raw = (hi - lo) / max(count, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first, last = math.floor(lo / step + 1e-9), math.ceil(hi / step - 1e-9)
    return [round(i * step, 12) for i in range(first, last + 1)]


def log_ticks(lo: float, hi: float) -> list[float]:
    """Tick values on a log axis over [lo, hi]: decades, 1-2-5 steps, every digit, or linear steps when narrow."""
    for mantissas in ((1,), (1, 2, 5), (1, 2, 3, 4, 5, 6, 7, 8, 9)):
        ticks = [
            m * 10.0**e
            for e in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
            for m in mantissas
            if lo <= m * 10.0**e <= hi
        ]
        if len(ticks) >= 3:
            return ticks
    return [t for t in nice_ticks(lo, hi, 6) if lo <= t <= hi] or [lo]


def open_svg(chart_id: str, title: str, desc: str, frame: Frame, extra_class: str = "") -> str:
    """The opening `<svg>` tag of a chart, with its accessible name and description."""
    label = esc(f"{title}. {desc}", 600)
    cls = f"chart {extra_class}".strip()
    return (
        f'<svg id="{esc(chart_id)}" class="{esc(cls)}" viewBox="0 0 {frame.width:g} {frame.height:g}" '
        f'role="img" aria-label="{label}" xmlns="http://www.w3.org/2000/svg">'
        f"<title>{esc(title)}</title><desc>{esc(desc, 600)}</desc>"
    )


def y_axis(frame: Frame, scale: LinearScale, ticks: Sequence[float], fmt: Callable[[float], str], label: str) -> str:
    """Horizontal grid lines with tick labels on the left, and the axis label."""
    out = ['<g class="axis y-axis">']
    for t in ticks:
        y = scale(t)
        out.append(f'<line class="grid" x1="{frame.x0:.1f}" x2="{frame.x1:.1f}" y1="{y:.1f}" y2="{y:.1f}"/>')
        out.append(f'<text x="{frame.x0 - 6:.1f}" y="{y + 4:.1f}" text-anchor="end">{esc(fmt(t))}</text>')
    mid = (frame.y0 + frame.y1) / 2
    out.append(
        f'<text class="axis-label" transform="translate({frame.x0 - 50:.1f},{mid:.1f}) rotate(-90)" '
        f'text-anchor="middle">{esc(label)}</text></g>'
    )
    return "".join(out)


def x_axis(
    frame: Frame,
    scale: LinearScale | LogScale,
    ticks: Sequence[float],
    fmt: Callable[[float], str],
    label: str,
    y: float | None = None,
) -> str:
    """The baseline with tick marks and labels under it, and the axis label."""
    base = frame.y0 if y is None else y
    out = [f'<g class="axis x-axis"><line class="baseline" x1="{frame.x0:.1f}" x2="{frame.x1:.1f}" ']
    out.append(f'y1="{base:.1f}" y2="{base:.1f}"/>')
    for t in ticks:
        x = scale(t)
        out.append(f'<line class="tick" x1="{x:.1f}" x2="{x:.1f}" y1="{base:.1f}" y2="{base + 4:.1f}"/>')
        out.append(f'<text x="{x:.1f}" y="{base + 16:.1f}" text-anchor="middle">{esc(fmt(t))}</text>')
    if label:
        out.append(
            f'<text class="axis-label" x="{(frame.x0 + frame.x1) / 2:.1f}" y="{base + 32:.1f}" '
            f'text-anchor="middle">{esc(label)}</text>'
        )
    out.append("</g>")
    return "".join(out)


def legend(items: Sequence[tuple[str, str, str]], x: float, y: float, width: float) -> tuple[str, float]:
    """A wrapping legend of (name, colour, tooltip) swatches from (x, y); returns it and its height."""
    out = ['<g class="legend">']
    cx, cy = x, y
    for name, color, tip in items:
        shown = esc(name, 40)
        w = 18 + CHAR_WIDTH * min(len(name), 40) + 18
        if cx + w > x + width and cx > x:
            cx, cy = x, cy + 18
        out.append(
            f'<g class="legend-item" data-legend="{esc(name)}"><title>{esc(tip, 600)}</title>'
            f'<rect x="{cx:.1f}" y="{cy - 9:.1f}" width="12" height="12" rx="2" fill="{color}"/>'
            f'<text x="{cx + 17:.1f}" y="{cy + 1:.1f}">{shown}</text></g>'
        )
        cx += w
    out.append("</g>")
    return "".join(out), cy - y + 18


def polygon(points: Sequence[tuple[float, float]]) -> str:
    """An SVG path for a closed shape through `points`."""
    if not points:
        return ""
    return "M" + "L".join(f"{px:.1f},{py:.1f}" for px, py in points) + "Z"


def polyline(points: Sequence[tuple[float, float]]) -> str:
    """An SVG path for an open line through `points`."""
    if not points:
        return ""
    return "M" + "L".join(f"{px:.1f},{py:.1f}" for px, py in points)
