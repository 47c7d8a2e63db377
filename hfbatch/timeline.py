"""The run's timeline: a snapshot of every provider's counters every few seconds, appended beside the output.

`<output>.timeline.jsonl` is append-only and small (a line per provider set every
`defaults.TIMELINE_INTERVAL` seconds); a killed run leaves whole lines (a torn last line is
skipped by readers), and a resumed run appends a new segment marked by its own `run` id.
`hfbatch report` draws it; `hfbatch status` reads its last line. The shape is documented in
`hfbatch.report`'s package docstring.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hfbatch import defaults
from hfbatch.stats import RunStats

__all__ = ["Timeline"]

Limits = Callable[[], dict[str, dict[str, Any]]]


class Timeline:
    """Appends snapshots of a run's stats (and each provider's current limits) to a JSONL file."""

    def __init__(self, path: Path, stats: RunStats, limits: Limits, *, interval: float = defaults.TIMELINE_INTERVAL):
        self.path = path
        self.stats = stats
        self.limits = limits
        self.interval = interval
        self.run = uuid.uuid4().hex[:12]
        self._started = time.monotonic()

    def snapshot(self) -> dict[str, Any]:
        """The run's counters now."""
        limits = self.limits()
        providers: dict[str, Any] = {}
        for name, st in self.stats.providers.items():
            lim = limits.get(name, {})
            providers[name] = {
                "requests": st.requests,
                "successes": st.successes,
                "failures": {k: v for k, v in st.failures.items() if v},
                "rate_limited": st.failures.get("429", 0),
                "prompt_tokens": st.prompt_tokens,
                "completion_tokens": st.completion_tokens,
                "cost_usd": st.cost,
                "in_flight": lim.get("in_flight"),
                "limit": lim.get("limit"),
                "rate_limit_rps": lim.get("rate_rps"),
            }
        return {
            "t": round(time.time(), 3),
            "elapsed_s": round(time.monotonic() - self._started, 3),
            "run": self.run,
            "rows_done": self.stats.rows_done,
            "rows_failed": self.stats.rows_failed,
            "rows_bad": self.stats.rows_bad,
            "rows_skipped": self.stats.rows_skipped,
            "input_estimate": self.stats.rows_total,
            "providers": providers,
        }

    def write(self) -> None:
        """Append one snapshot; a timeline that cannot be written is skipped (it is never worth a run)."""
        line = json.dumps(self.snapshot(), separators=(",", ":")) + "\n"
        try:
            with open(self.path, "a", encoding="utf-8", errors="backslashreplace") as f:
                f.write(line)
        except OSError:
            return

    async def keep_writing(self) -> None:
        """Until cancelled, write a snapshot every `interval` seconds (and one at the start)."""
        while True:
            self.write()
            await asyncio.sleep(self.interval)
