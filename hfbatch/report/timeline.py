"""The run timeline: cumulative snapshots turned into intervals, segments (one per run) and time bins.

Snapshots hold counters that only grow during a run; a resumed run starts them again from 0. So a
counter that goes down, `elapsed_s` that goes back, or a new `run` value starts a new segment, and
each segment is differenced from zero. Segments that overlap in time (shards of one job) or follow
each other are laid on one "active time" axis: the idle gaps between runs are cut out.
"""

from __future__ import annotations

import bisect
import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from hfbatch.report.text import num

__all__ = ["COUNTERS", "GAUGES", "Binned", "Interval", "Segment", "Timeline", "bin_timeline", "read_timeline"]

#: Cumulative per-provider counters in a snapshot (failures are "failures:<kind>").
COUNTERS = ("requests", "successes", "rate_limited", "prompt_tokens", "completion_tokens", "cost_usd")
#: Per-provider values that are a level at the snapshot's time, not a running total.
GAUGES = ("in_flight", "limit", "rate_limit_rps")
MAX_PROVIDERS = 64  # beyond this many names (a broken file), the rest are lumped into "other"
MAX_KINDS = 32
MAX_STREAMS = 256
MAX_INTERVALS = 4096  # more snapshots than this (5.7 h at one per 5 s): neighbours are merged
MAX_BINS = 120
_OTHER = "other"

Counts = dict[str, dict[str, float]]


@dataclass(slots=True)
class Interval:
    """What happened between two snapshots: counter increases, and the levels at its end."""

    start: float
    end: float
    deltas: Counts
    gauges: Counts
    rows_done: float = 0.0
    rows_failed: float = 0.0


@dataclass(slots=True)
class Segment:
    """One run's stretch of the timeline (per shard when the file holds several)."""

    stream: str
    start: float
    end: float
    intervals: list[Interval] = field(default_factory=list)
    cumulative: Counts = field(default_factory=dict)
    rows_done: float = 0.0
    rows_failed: float = 0.0
    elapsed: float = 0.0


@dataclass(slots=True)
class Timeline:
    """All segments of a timeline, the names seen in it, and the active-time axis."""

    segments: list[Segment]
    providers: list[str]
    kinds: list[str]
    skipped: int
    spans: list[tuple[float, float, float]] = field(default_factory=list)  # (start, end, offset on axis)
    _starts: list[float] = field(default_factory=list)

    @property
    def active_seconds(self) -> float:
        """Length of the active-time axis."""
        if not self.spans:
            return 0.0
        start, end, offset = self.spans[-1]
        return offset + end - start

    @property
    def last_t(self) -> float | None:
        """Time of the newest snapshot."""
        return max((s.end for s in self.segments), default=None)

    def active(self, t: float) -> float:
        """Where Unix time `t` falls on the active-time axis."""
        if len(self._starts) != len(self.spans):
            self._starts = [s[0] for s in self.spans]
        i = max(bisect.bisect_right(self._starts, t) - 1, 0)
        start, end, offset = self.spans[i]
        return offset + min(max(t - start, 0.0), end - start)

    def totals(self) -> dict[str, Any]:
        """Sums over all segments of their final counters: what the timeline says was done so far."""
        per: dict[str, dict[str, Any]] = {}
        for seg in self.segments:
            for name, values in seg.cumulative.items():
                target = per.setdefault(name, {})
                for key, v in values.items():
                    target[key] = target.get(key, 0.0) + v
        overall: dict[str, Any] = {}
        for values in per.values():
            for key, v in values.items():
                overall[key] = overall.get(key, 0.0) + v
        return {
            "rows_done": sum(s.rows_done for s in self.segments),
            "rows_failed": sum(s.rows_failed for s in self.segments),
            "providers": per,
            "overall": overall,
        }


def _name(value: str, seen: list[str], cap: int) -> str:
    if value in seen:
        return value
    if len(seen) >= cap:
        return _OTHER
    seen.append(value)
    return value


def _flatten(record: dict[str, Any], providers: list[str], kinds: list[str]) -> tuple[Counts, Counts]:
    """Cumulative counters and gauges per provider from one snapshot; missing or bad values left out."""
    cums: Counts = {}
    gauges: Counts = {}
    raw = record.get("providers")
    for pname, p in raw.items() if isinstance(raw, dict) else ():
        if not isinstance(p, dict):
            continue
        name = _name(str(pname), providers, MAX_PROVIDERS)
        cum = cums.setdefault(name, {})
        for key in COUNTERS:
            v = num(p.get(key))
            if v is not None:
                cum[key] = cum.get(key, 0.0) + v
        failures = p.get("failures")
        for kind, count in failures.items() if isinstance(failures, dict) else ():
            v = num(count)
            if v is not None:
                fkey = "failures:" + _name(str(kind), kinds, MAX_KINDS)
                cum[fkey] = cum.get(fkey, 0.0) + v
        g = gauges.setdefault(name, {})
        for key in GAUGES:
            v = num(p.get(key))
            if v is not None:
                g[key] = g.get(key, 0.0) + v
    return cums, gauges


def _went_back(prev: Counts, cur: Counts) -> bool:
    return any(v < prev.get(name, {}).get(key, 0.0) for name, values in cur.items() for key, v in values.items())


def read_timeline(records: Iterable[Any]) -> Timeline:
    """Read snapshots in file order into segments; records that are not snapshots are counted and skipped."""
    providers: list[str] = []
    kinds: list[str] = []
    streams: list[str] = []
    open_: dict[str, tuple[Segment, Counts, float, float, Any]] = {}  # stream -> (segment, last cums, t, elapsed, run)
    segments: list[Segment] = []
    skipped = 0
    n_intervals, limit = 0, MAX_INTERVALS
    for record in records:
        t = num(record.get("t")) if isinstance(record, dict) else None
        if t is None or not isinstance(record, dict):
            skipped += 1
            continue
        elapsed = num(record.get("elapsed_s"))
        stream = _name(str(record.get("shard", "")), streams, MAX_STREAMS)
        run = record.get("run")
        cums, gauges = _flatten(record, providers, kinds)
        done, failed = num(record.get("rows_done")) or 0.0, num(record.get("rows_failed")) or 0.0
        state = open_.get(stream)
        if state is not None:
            seg, prev, prev_t, prev_elapsed, prev_run = state
        if (
            state is None
            or run != prev_run
            or (elapsed is not None and elapsed < prev_elapsed)
            or done < seg.rows_done
            or failed < seg.rows_failed
            or _went_back(prev, cums)
        ):
            start = t - elapsed if elapsed is not None and elapsed >= 0 else t
            seg = Segment(stream, start, start)
            segments.append(seg)
            prev, prev_t, prev_elapsed = {}, start, 0.0
        deltas: Counts = {}
        for name, values in cums.items():
            before = prev.get(name, {})
            deltas[name] = {k: v - before.get(k, 0.0) for k, v in values.items()}
            prev = {**prev, name: {**before, **values}}
        end = max(t, prev_t)
        seg.intervals.append(Interval(prev_t, end, deltas, gauges, done - seg.rows_done, failed - seg.rows_failed))
        n_intervals += 1
        seg.end, seg.rows_done, seg.rows_failed, seg.cumulative = end, done, failed, prev
        seg.elapsed = elapsed if elapsed is not None else end - seg.start
        open_[stream] = (seg, prev, end, elapsed if elapsed is not None else prev_elapsed, run)
        if n_intervals > limit:
            n_intervals = sum(_coarsen(s) for s in segments)
            if n_intervals > limit * 3 // 4:  # many one-snapshot segments: merging cannot keep up, so stop trying
                limit *= 2
    timeline = Timeline(segments, providers, kinds, skipped)
    timeline.spans = _spans(segments)
    return timeline


def _coarsen(seg: Segment) -> int:
    """Merge neighbouring intervals pairwise, halving the memory a long timeline takes."""
    merged: list[Interval] = []
    for a, b in zip(seg.intervals[::2], seg.intervals[1::2], strict=False):
        deltas = {n: dict(v) for n, v in a.deltas.items()}
        for name, values in b.deltas.items():
            target = deltas.setdefault(name, {})
            for k, v in values.items():
                target[k] = target.get(k, 0.0) + v
        merged.append(
            Interval(a.start, b.end, deltas, b.gauges, a.rows_done + b.rows_done, a.rows_failed + b.rows_failed)
        )
    if len(seg.intervals) % 2:
        merged.append(seg.intervals[-1])
    seg.intervals = merged
    return len(merged)


def _spans(segments: list[Segment]) -> list[tuple[float, float, float]]:
    """Stretches of time when some run was going, in order, each with its offset on the active axis."""
    spans: list[tuple[float, float, float]] = []
    for seg in sorted(segments, key=lambda s: s.start):
        if spans and seg.start <= spans[-1][1]:
            start, end, offset = spans[-1]
            spans[-1] = (start, max(end, seg.end), offset)
        else:
            offset = spans[-1][2] + spans[-1][1] - spans[-1][0] if spans else 0.0
            spans.append((seg.start, seg.end, offset))
    return spans


@dataclass(slots=True)
class Binned:
    """The timeline on equal time bins: counter increases summed, levels time-averaged (summed over shards)."""

    edges: list[float]
    width: float
    counts: dict[str, dict[str, list[float]]]
    gauges: dict[str, dict[str, list[float | None]]]
    rows_done: list[float]


def _spread(a: float, b: float, width: float, n: int) -> list[tuple[int, float]]:
    """The bins an interval [a, b] of the axis covers, with the share of it in each."""
    if b <= a:
        return [(min(int(a / width), n - 1), 1.0)]
    out = []
    for i in range(min(int(a / width), n - 1), min(int(b / width), n - 1) + 1):
        overlap = min(b, (i + 1) * width) - max(a, i * width)
        if i == n - 1:
            overlap = b - max(a, i * width)
        if overlap > 0:
            out.append((i, overlap / (b - a)))
    return out or [(min(int(a / width), n - 1), 1.0)]


def bin_timeline(timeline: Timeline) -> Binned | None:
    """The timeline on up to MAX_BINS bins about one snapshot interval wide; None when it has no intervals."""
    lengths = [iv.end - iv.start for seg in timeline.segments for iv in seg.intervals if iv.end > iv.start]
    if not lengths:
        return None
    total = timeline.active_seconds
    n = max(1, min(MAX_BINS, math.ceil(total / max(statistics.median(lengths), 1e-9) - 1e-9)))
    width = total / n
    counts: dict[str, dict[str, list[float]]] = {}
    gauges: dict[str, dict[str, list[float | None]]] = {}
    rows = [0.0] * n
    for seg in timeline.segments:
        wsum: dict[tuple[str, str], list[float]] = {}
        wlen: dict[tuple[str, str], list[float]] = {}
        for iv in seg.intervals:
            a, b = timeline.active(iv.start), timeline.active(iv.end)
            for i, share in _spread(a, b, width, n):
                rows[i] += iv.rows_done * share
                for name, values in iv.deltas.items():
                    bins = counts.setdefault(name, {})
                    for key, v in values.items():
                        bins.setdefault(key, [0.0] * n)[i] += v * share
                for name, values in iv.gauges.items():
                    for key, v in values.items():
                        wsum.setdefault((name, key), [0.0] * n)[i] += v * share * max(b - a, 1e-9)
                        wlen.setdefault((name, key), [0.0] * n)[i] += share * max(b - a, 1e-9)
        for (name, key), sums in wsum.items():
            levels = gauges.setdefault(name, {}).setdefault(key, [None] * n)
            for i, (s, w) in enumerate(zip(sums, wlen[(name, key)], strict=True)):
                if w > 0:
                    levels[i] = (levels[i] or 0.0) + s / w
    return Binned([i * width for i in range(n + 1)], width, counts, gauges, rows)
