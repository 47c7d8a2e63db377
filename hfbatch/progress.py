"""Progress and events on stderr: a tqdm bar on a terminal, a plain line every few seconds elsewhere (cron),
or with `--log-format json` one JSON object per line (the shapes are in hfbatch.events).
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from hfbatch import defaults, events
from hfbatch.stats import RunStats

__all__ = ["Progress"]

_BAR_REFRESH = 0.1  # seconds between two redraws of the bar


class Progress:
    """Called with the run's stats after each row; draws at most a few times a second; writes events."""

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        interval: float = defaults.PROGRESS_LINE_INTERVAL,
        log_format: str = "plain",
    ) -> None:
        self.stream = stream or sys.stderr
        self.json = log_format == "json"
        # Log collectors read lines: JSON is never drawn as a bar, even on a terminal.
        self.tty = self.stream.isatty() and not self.json
        self.interval = interval
        self.started = time.monotonic()
        self._last = self.started if not self.tty else 0.0
        self._bar: Any = None
        self._seen_429: dict[str, int] = {}
        self._window_start = self.started

    def __call__(self, stats: RunStats) -> None:
        now = time.monotonic()
        if self.tty:
            if now - self._last >= _BAR_REFRESH:
                self._last = now
                self._draw_bar(stats)
        elif now - self._last >= self.interval:
            self._last = now
            self.event(self._progress(stats, now))

    def event(self, event: events.Event) -> None:
        """Write one event: a line of text (above the bar on a terminal), or a JSON line."""
        line = events.json_line(event) if self.json else events.plain_line(event)
        if self._bar is not None:
            self._bar.write(line, file=self.stream)
            return
        self.stream.write(line + "\n")
        self.stream.flush()

    def _progress(self, stats: RunStats, now: float) -> events.Event:
        """The progress event, with each provider's 429s since the last one."""
        recent: dict[str, int] = {}
        for name, st in stats.providers.items():
            count = st.failures.get("429", 0)
            recent[name] = count - self._seen_429.get(name, 0)
            self._seen_429[name] = count
        window, self._window_start = now - self._window_start, now
        return events.progress(stats, now - self.started, recent, window)

    def _draw_bar(self, stats: RunStats) -> None:
        if self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(file=self.stream, unit="row", dynamic_ncols=True, desc="hfbatch")
        bar = self._bar
        if stats.rows_total is not None and bar.total is None:
            bar.total = stats.rows_total
        # Rows an earlier run finished count as progress here too, so the bar ends full.
        bar.n = stats.rows_done + stats.rows_failed + stats.rows_bad + stats.rows_skipped
        bar.set_postfix_str(
            f"done={stats.rows_done} failed={stats.rows_failed} skipped={stats.rows_skipped}", refresh=False
        )
        bar.refresh()

    def close(self, stats: RunStats | None = None) -> None:
        """Draw the final state and release the terminal line."""
        if stats is not None:
            if self.tty:
                self._draw_bar(stats)
            else:
                self.event(self._progress(stats, time.monotonic()))
        if self._bar is not None:
            self._bar.close()
            self._bar = None
