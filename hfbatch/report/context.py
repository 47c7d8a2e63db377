"""What every section of the report reads: the inputs, parsed once, and the run's status."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from hfbatch.report.svg import color_for
from hfbatch.report.text import fmt_duration, num, unix_time
from hfbatch.report.timeline import Binned, Timeline, bin_timeline, read_timeline
from hfbatch.report.topn import TopMessages

__all__ = ["EXIT_CODES", "Context", "Status", "build_context", "dig"]

#: What `hfbatch run`'s exit codes mean (README, "Exit codes").
EXIT_CODES = {
    0: "every row is in the output",
    1: "finished; some rows failed (see the errors file); rerun to retry them",
    2: "bad usage, job file or input; nothing was sent",
    3: "the token is missing or was refused (401)",
    4: "another hfbatch run held the output's lock",
    5: "the budget (--max-cost) was reached; rerun with a larger one to resume",
    130: "interrupted (Ctrl-C or SIGTERM); rerun the same command to resume",
}
#: A running run with no snapshot for this long (and at least 20 snapshot intervals) is probably dead.
STALE_AFTER_S = 300.0
_START_SLACK_S = 1.0  # clocks of the stats writer and the timeline writer are the same machine's


@dataclass(frozen=True, slots=True)
class Status:
    """Where the run stands: "finished", "running", "stale" (running but silent) or "unknown"."""

    state: str
    label: str
    detail: str
    exit_code: int | None


@dataclass(slots=True)
class Context:
    """The report's inputs, parsed: stats (None while the first run is going), timeline, top errors."""

    stats: dict[str, Any] | None
    timeline: Timeline
    binned: Binned | None
    errors: TopMessages
    providers: list[str]
    colors: dict[str, str]
    status: Status
    now: float | None

    def color(self, provider: str) -> str:
        """The colour of `provider`, the same in every chart."""
        return self.colors.get(provider, "#666666")


def dig(data: Any, *path: str) -> Any:
    """data[path[0]][path[1]]..., or None where a step is missing or not a dict."""
    for key in path:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def _provider_order(stats: dict[str, Any] | None, timeline: Timeline) -> list[str]:
    names: list[str] = []
    order = dig(stats, "provider_order")
    for source in (order if isinstance(order, list) else [], dig(stats, "providers") or {}, timeline.providers):
        for name in source:
            if str(name) not in names:
                names.append(str(name))
    return names


def _status(stats: dict[str, Any] | None, timeline: Timeline, now: float | None) -> Status:
    last_t = timeline.last_t
    running = stats is None and last_t is not None
    if stats is not None and timeline.segments:
        runs = dig(stats, "runs")
        ends = [unix_time(r.get("ended_at")) for r in runs if isinstance(r, dict)] if isinstance(runs, list) else []
        newest = max((e for e in ends if e is not None), default=None)
        latest_start = max(s.start for s in timeline.segments)
        running = newest is not None and latest_start > newest + _START_SLACK_S
    if running and last_t is not None:
        lengths = [iv.end - iv.start for s in timeline.segments for iv in s.intervals[-3:]]
        typical = max(lengths, default=0.0)
        if now is not None and now - last_t > max(STALE_AFTER_S, 20 * typical):
            return Status(
                "stale",
                "running? (no news)",
                f"the last timeline snapshot is {fmt_duration(now - last_t)} old: the run may have been killed; "
                "rerun the same command to resume",
                None,
            )
        seen = f", last snapshot {fmt_duration(now - last_t)} ago" if now is not None else ""
        if stats is None:
            detail = "no final stats yet: numbers come from the timeline so far"
        else:
            detail = "a new run is going: the stats below are from the runs before it"
        return Status("running", "running", detail + seen, None)
    if stats is None:
        return Status("unknown", "no data", "no stats file and no timeline beside this output", None)
    code_v = num(stats.get("exit_code"))
    code = None if code_v is None else int(code_v)
    if code is None:
        return Status("unknown", "unknown", "the stats file has no exit code", None)
    meaning = EXIT_CODES.get(code, "see the README's exit codes")
    state = "finished" if code == 0 else "finished-with-problems"
    label = "finished" if code == 0 else ("finished, some rows failed" if code == 1 else "stopped")
    stopped = stats.get("stopped_because")
    detail = f"exit code {code}: {meaning}" + (f" ({stopped})" if isinstance(stopped, str) and stopped else "")
    return Status(state, label, detail, code)


def build_context(
    stats: dict[str, Any] | None, timeline: Iterable[Any], errors: Iterable[Any], now: float | None
) -> Context:
    """Parse the inputs once; the timeline and errors are read one record at a time."""
    stats = stats if isinstance(stats, dict) else None
    tl = read_timeline(timeline)
    top = TopMessages().add_all(errors)
    providers = _provider_order(stats, tl)
    colors = {name: color_for(i) for i, name in enumerate(providers)}
    return Context(stats, tl, bin_timeline(tl), top, providers, colors, _status(stats, tl, now), now)
