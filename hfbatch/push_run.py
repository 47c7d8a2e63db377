"""A run's pushes to the Hub: the results so far every `--push-every` minutes, and all of them at the end.

The runner makes a `RunPusher` when the job has `--push-to-hub`, runs `keep_pushing` as a task of
its TaskGroup (when `--push-every` is set) and awaits `finish` once the output is final. Each
push runs `push.push_output` in a thread, one at a time: a lock orders them, so the final push
always lands after a snapshot that was still uploading when the run ended, and the repo ends at
the complete output. A snapshot that fails is counted and tried again at the next interval; the
run goes on. A snapshot is skipped when no result arrived since the last one (one commit per
interval at most, none while nothing changes).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from hfbatch.errors import ExitCode, HfbatchError, PushError
from hfbatch.outputs.formats import format_for
from hfbatch.push import PushResult, PushTarget, push_output

__all__ = ["RunPusher"]

SECONDS_PER_MINUTE = 60.0


class _Report(Protocol):
    """The part of the runner's `RunReport` a push at the end changes."""

    exit_code: ExitCode
    message: str | None
    stats: dict[str, Any]


class RunPusher:
    """Pushes one run's output to its dataset repo, during the run and when it completes."""

    def __init__(
        self,
        target: PushTarget,
        output: Path,
        *,
        every_minutes: float | None,
        stats_now: Callable[[], dict[str, Any]],
        scale: float = 1.0,
    ) -> None:
        self.target = target
        self.output = output
        # `scale` is HFBATCH_TIME_SCALE, which the tests set tiny.
        self.interval = None if every_minutes is None else every_minutes * SECONDS_PER_MINUTE * scale
        self._stats_now = stats_now
        self._journal = format_for(output).journal_path(output)
        self._lock = threading.Lock()
        self._pushed_at: tuple[int, int] | None = None
        self.pushes = 0
        self.failed = 0
        self.last: PushResult | None = None
        self.last_error: str | None = None

    async def keep_pushing(self) -> None:
        """Until cancelled, push the results so far every interval (nothing when no interval is set)."""
        if self.interval is None:
            return
        while True:
            await asyncio.sleep(self.interval)
            # The stats are read here, on the loop that updates them; the push runs in a thread.
            stats = {**self._stats_now(), "in_progress": True, "exit_code": None}
            await asyncio.to_thread(self._push_snapshot, stats)

    async def push_final(self, stats: dict[str, Any]) -> PushError | None:
        """Push the finished output with the run's stats; the error when it failed (the run's exit code is then 7)."""
        return await asyncio.to_thread(self._push_final, stats)

    async def finish(
        self, report: _Report, written: dict[str, Any], write_stats: Callable[[dict[str, Any]], None]
    ) -> None:
        """Push a completed run's output (one stopped early is not); a failed push makes the run exit 7.

        `written` is the stats file's content (every run into the output), pushed beside the data;
        the pushes' record goes into it and into the report, and the file is written again.
        """
        if report.exit_code in (ExitCode.OK, ExitCode.FAILED_ROWS):
            failure = await self.push_final(written)
            if failure is not None:
                report.exit_code = failure.exit_code
                report.message = str(failure) if report.message is None else f"{report.message}; {failure}"
                report.stats["exit_code"] = written["exit_code"] = int(failure.exit_code)
        report.stats["push"] = written["push"] = self.to_dict()
        write_stats(written)

    def to_dict(self) -> dict[str, Any]:
        """What the pushes did, for the stats file."""
        return {
            "repo": self.target.repo_id,
            "pushes": self.pushes,
            "failed_pushes": self.failed,
            "last_error": self.last_error,
            **({"commit": self.last.commit, "url": self.last.url, "rows": self.last.rows} if self.last else {}),
        }

    def _progress(self) -> tuple[int, int]:
        """Sizes of the output and its journal: they change whenever a result arrives or the file is merged."""
        sizes = []
        for path in (self.output, self._journal):
            try:
                sizes.append(path.stat().st_size)
            except FileNotFoundError:
                sizes.append(-1)
        return sizes[0], sizes[1]

    def _push_snapshot(self, stats: dict[str, Any]) -> None:
        with self._lock:
            progress = self._progress()
            if progress == self._pushed_at:
                return
            try:
                result = push_output(self.output, self.target, stats=stats, live=True, label="run in progress")
            except (HfbatchError, OSError) as exc:
                # A snapshot is never worth the run: count it, and try again at the next interval.
                self.failed += 1
                self.last_error = str(exc)
                return
            self._record(result, progress)

    def _push_final(self, stats: dict[str, Any]) -> PushError | None:
        with self._lock:
            progress = self._progress()
            hint = f"rerun the same command to push it, or `hfbatch push {self.output} {self.target.repo_id}`"
            try:
                result = push_output(self.output, self.target, stats=stats, label="run completed", retry_hint=hint)
            except PushError as exc:
                self.failed += 1
                self.last_error = str(exc)
                return exc
            self._record(result, progress)
            return None

    def _record(self, result: PushResult | None, progress: tuple[int, int]) -> None:
        self._pushed_at = progress
        if result is not None:
            self.pushes += 1
            self.last = result
            self.last_error = None
