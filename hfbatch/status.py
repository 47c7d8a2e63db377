"""`hfbatch status OUTPUT`: how far a run into OUTPUT got, read from the files beside it (nothing is sent).

Rows done and failed come from the latest timeline snapshot of a run that is going, else from
the stats file; whether a run holds the output is asked of its lock, without taking it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hfbatch.errors import ExitCode
from hfbatch.outputs.files import OutputFiles, OutputPaths

__all__ = ["OutputStatus", "output_status"]


@dataclass(frozen=True)
class OutputStatus:
    """What the files beside an output say about its run."""

    output: Path
    running: bool
    holder_pid: int | None
    complete: bool
    rows_done: int
    rows_failed: int
    rows_left: int | None
    rate: float | None  # rows per second in the latest run
    eta_s: float | None
    last_exit_code: int | None
    updated_at: float | None  # Unix time of the newest figure
    providers: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def exit_code(self) -> ExitCode:
        """0 when complete, 4 while a run holds the output, 1 otherwise."""
        if self.running:
            return ExitCode.LOCKED
        return ExitCode.OK if self.complete else ExitCode.FAILED_ROWS


def _lock_holder(paths: OutputPaths) -> tuple[bool, int | None]:
    """Whether a run holds the output's lock now, and its pid (the lock is tested, never kept)."""
    try:
        fd = os.open(paths.lock, os.O_RDONLY)
    except OSError:
        return False, None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            raw = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            return True, int(raw) if raw.isdigit() else None
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False, None
    finally:
        os.close(fd)


def _last_line(path: Path, limit: int = 1 << 20) -> dict[str, Any] | None:
    """The last whole JSON line of a file, reading at most its last MiB."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - limit))
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        with contextlib.suppress(ValueError):
            data = json.loads(line)
            if isinstance(data, dict):
                return data
    return None


def _rate(last: dict[str, Any]) -> float | None:
    """Rows per second over the latest run's snapshots."""
    elapsed = last.get("elapsed_s")
    done = (last.get("rows_done") or 0) + (last.get("rows_failed") or 0)
    if isinstance(elapsed, int | float) and elapsed > 0:
        return done / elapsed
    return None


def output_status(output: Path) -> OutputStatus:
    """Read the status of `output` from its stats, timeline, errors and lock files."""
    paths = OutputFiles(output).paths
    running, pid = _lock_holder(paths)
    stats: dict[str, Any] | None = None
    with contextlib.suppress(OSError, ValueError):
        stats = json.loads(paths.stats.read_text(encoding="utf-8"))
    last = _last_line(paths.timeline)
    rows = stats.get("rows", {}) if stats else {}
    use_timeline = last is not None and (running or stats is None)
    source: dict[str, Any] = last if use_timeline and last is not None else rows
    done = int(source.get("rows_done", source.get("done", 0)) or 0)
    failed = int(source.get("rows_failed", source.get("failed", 0)) or 0)
    skipped = int(source.get("rows_skipped", source.get("skipped_already_done", 0)) or 0)
    if source is rows and stats is not None and "runs" in stats:
        skipped = 0  # a stats file with a run history counts every result in the output under done
    bad = int(source.get("rows_bad", source.get("bad_input", 0)) or 0)
    estimate = source.get("input_estimate")
    left = max(0, int(estimate) - done - failed - skipped - bad) if isinstance(estimate, int) else None
    rate = _rate(last) if last is not None else None
    eta = left / rate if left is not None and rate else None
    exit_code = stats.get("exit_code") if stats else None
    complete = not running and exit_code == 0
    providers = (last or {}).get("providers") if use_timeline else (stats or {}).get("providers")
    updated = last.get("t") if last else None
    if stats is not None and not use_timeline:
        updated = paths.stats.stat().st_mtime
    return OutputStatus(
        output=output,
        running=running,
        holder_pid=pid,
        complete=complete,
        rows_done=done + skipped,
        rows_failed=failed,
        rows_left=left,
        rate=rate,
        eta_s=eta,
        last_exit_code=exit_code,
        updated_at=updated if isinstance(updated, int | float) else time.time(),
        providers=providers if isinstance(providers, dict) else {},
    )
