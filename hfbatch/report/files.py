"""Reading the files beside an output (streamed, bounded) and writing its report atomically."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hfbatch.report.page import render_report

__all__ = ["MAX_LINE", "build_report", "iter_jsonl", "read_stats", "report_path"]

#: A JSONL line longer than this is skipped (read in pieces, never held whole).
MAX_LINE = 1 << 20
MAX_STATS = 64 << 20  # a stats file is kilobytes; a bigger one is not ours


def beside(output: Path, suffix: str) -> Path:
    """The file named `<output><suffix>` next to the output."""
    return output.with_name(output.name + suffix)


def report_path(output: Path) -> Path:
    """Where the report of `output` goes: `<output>.report.html`."""
    return beside(output, ".report.html")


def iter_jsonl(path: Path, max_line: int = MAX_LINE) -> Iterator[Any]:
    """Each line's JSON value, or None for a line that is not JSON or too long; nothing if the file is absent."""
    try:
        f = open(path, "rb")  # closed by the with below; opened first so a missing file is told apart
    except FileNotFoundError:
        return
    with f:
        while line := f.readline(max_line + 1):
            if len(line) > max_line and not line.endswith(b"\n"):
                while (rest := f.readline(max_line)) and not rest.endswith(b"\n"):
                    pass
                yield None
                continue
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except ValueError:  # includes a torn last line while a run is still writing
                yield None


def read_stats(path: Path) -> dict[str, Any] | None:
    """The stats file's content, or None when it is absent, too big or not a JSON object."""
    try:
        with open(path, "rb") as f:
            # read(n) reserves n bytes up front, so ask only for what is there.
            size = os.fstat(f.fileno()).st_size
            data = json.loads(f.read(size)) if size <= MAX_STATS else None
    except (FileNotFoundError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def build_report(
    output_path: Path,
    *,
    stats_path: Path | None = None,
    timeline_path: Path | None = None,
    errors_path: Path | None = None,
    now: float | None = None,
) -> Path:
    """Write `<output>.report.html` from the stats, timeline and errors beside the output; return its path."""
    output_path = Path(output_path)
    html = render_report(
        read_stats(stats_path or beside(output_path, ".stats.json")),
        iter_jsonl(timeline_path or beside(output_path, ".timeline.jsonl")),
        iter_jsonl(errors_path or beside(output_path, ".errors.jsonl")),
        title=output_path.name,
        now=time.time() if now is None else now,
    )
    target = report_path(output_path)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=target.name + ".", suffix=".tmp")
    try:
        os.chmod(tmp, 0o644)  # a report is meant to be shared, unlike mkstemp's private default
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(html)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return target
