"""Progress on stderr: a tqdm bar on a terminal, a plain line every few seconds elsewhere (cron)."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from hfbatch import defaults
from hfbatch.stats import RunStats

__all__ = ["Progress"]


class Progress:
    """Called with the run's stats after each row; draws at most a few times a second."""

    def __init__(self, stream: TextIO | None = None, *, interval: float = defaults.PROGRESS_LINE_INTERVAL) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.interval = interval
        self.started = time.monotonic()
        self._last = self.started if not self.tty else 0.0
        self._bar: Any = None

    def __call__(self, stats: RunStats) -> None:
        now = time.monotonic()
        if self.tty:
            if now - self._last >= 0.1:
                self._last = now
                self._draw_bar(stats)
        elif now - self._last >= self.interval:
            self._last = now
            self.stream.write(self._line(stats, now) + "\n")
            self.stream.flush()

    def _line(self, stats: RunStats, now: float) -> str:
        elapsed = now - self.started
        processed = stats.rows_done + stats.rows_failed
        rate = processed / elapsed if elapsed > 0 else 0.0
        eta = _eta(stats, rate)
        return (
            f"hfbatch: {stats.rows_done} done, {stats.rows_failed} failed, {stats.rows_bad} bad input, "
            f"{stats.rows_skipped} already done; {rate:.1f} rows/s; {elapsed:.0f}s elapsed"
            + (f", about {eta:.0f}s left" if eta is not None else "")
        )

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
                self.stream.write(self._line(stats, time.monotonic()) + "\n")
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _eta(stats: RunStats, rate: float) -> float | None:
    """Seconds left at the current rate, when the input's size is known."""
    if stats.rows_total is None or rate <= 0:
        return None
    left = stats.rows_total - stats.rows_done - stats.rows_failed - stats.rows_bad - stats.rows_skipped
    return max(0, left) / rate
