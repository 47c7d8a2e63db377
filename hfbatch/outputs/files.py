"""`OutputFiles`: the one object that owns every file beside a run's output.

| file | what |
| --- | --- |
| the output | results, in its format (JSONL is its own journal; Parquet is made from one) |
| `<output>.journal.jsonl` | Parquet only: results not yet merged into the Parquet file |
| `<output>.errors.jsonl` | the rows that failed in the latest run |
| `<output>.stats.json` | what the run did |
| `<output>.manifest.json` | the settings and input fingerprint the output was made with |
| `<output>.lock` | held while a run writes the output |

A run goes: `with open_output(...) as files:` (takes the lock), `prepare` (restart, or
check that resuming is sound), `load_done` (ids earlier runs finished), `start` (write the
manifest, open the journal and the errors file), `add_result` / `add_error` / `flush`,
`write_stats`, and `close` (sync, and make the final file).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from hfbatch.errors import UsageError
from hfbatch.idset import IdSet
from hfbatch.outputs import manifest
from hfbatch.outputs.atomic import write_json_atomic
from hfbatch.outputs.errorlog import ErrorLog
from hfbatch.outputs.formats import format_for
from hfbatch.outputs.journal import Journal, scan_journal
from hfbatch.outputs.jsonl import JournalFormat

__all__ = ["OutputFiles", "OutputPaths", "open_output"]


@dataclass(frozen=True, slots=True)
class OutputPaths:
    """Where each file of one output lives."""

    output: Path
    journal: Path
    errors: Path
    stats: Path
    manifest: Path
    lock: Path
    timeline: Path


class OutputFiles:
    """Every file of one output, from taking the lock to writing the final file."""

    def __init__(
        self, output: Path, *, errors: Path | None = None, stats: Path | None = None, format: str | None = None
    ) -> None:
        self.format: JournalFormat = format_for(output, format)
        self.paths = OutputPaths(
            output=output,
            journal=self.format.journal_path(output),
            errors=errors or output.with_name(output.name + ".errors.jsonl"),
            stats=stats or output.with_name(output.name + ".stats.json"),
            manifest=manifest.manifest_path(output),
            lock=manifest.lock_path(output),
            timeline=output.with_name(output.name + ".timeline.jsonl"),
        )
        self._lock: contextlib.ExitStack | None = None
        self._good: int | None = None
        self._journal: Journal | None = None
        self._errors: ErrorLog | None = None
        # While `keep_flushed` runs: its loop, whether a flush is due this tick, and a write that failed.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._flush_due = False
        self._failed: asyncio.Future[None] | None = None

    def __enter__(self) -> OutputFiles:
        stack = contextlib.ExitStack()
        stack.enter_context(manifest.hold_lock(self.paths.output))
        self._lock = stack
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def check_distinct(self, inputs: Sequence[Path]) -> None:
        """UsageError, before anything is touched, when two of these files (or an input) are one file.

        Paths are compared after resolving symlinks, and existing files by device and inode,
        so hard links and `a/../b` spellings are caught too. An output inside an input folder
        is refused as well: its next run would read it as a part of the input.
        """
        named = {
            "output": self.paths.output,
            "errors file": self.paths.errors,
            "stats file": self.paths.stats,
            "journal": self.paths.journal,
            "manifest": self.paths.manifest,
            "lock": self.paths.lock,
            "timeline": self.paths.timeline,
        }
        if self.paths.journal == self.paths.output:
            del named["journal"]  # a JSONL output is its own journal
        seen: dict[object, str] = {}
        files = [p for p in inputs if not p.is_dir()]
        for name, path in [*((f"input {p}", p) for p in files), *named.items()]:
            for key in _identities(path):
                other = seen.setdefault(key, name)
                if other != name:
                    raise UsageError(
                        f"{path}: the {name} and the {other} are the same file; give them different paths "
                        "(nothing was written)"
                    )
        for source in inputs:
            if source.is_dir() and _inside(self.paths.output, source):
                raise UsageError(
                    f"{self.paths.output}: the output is inside the input folder {source}; "
                    "write it elsewhere (its next run would read it as input)"
                )

    def prepare(
        self,
        settings: dict[str, Any],
        fingerprint: dict[str, Any],
        *,
        restart: bool,
        force: bool,
        input_grew: Callable[[Any], str | None] | None = None,
    ) -> None:
        """Start over (`restart`), or check that adding to the existing output is sound; UsageError if not.

        `input_grew` tells an input that only grew from one that changed (`manifest.check_manifest`).

        Starting over keeps the earlier results (paid for) as `<output>.bak` (and the journal's
        as `<journal>.bak`), replacing an older backup; the other files are removed.
        """
        p = self.paths
        if restart:
            for kept in (p.output, p.journal):
                if kept.exists():
                    os.replace(kept, kept.with_name(kept.name + ".bak"))
            manifest.remove_outputs([p.errors, p.stats, p.manifest, p.timeline])
            return
        try:
            resuming = manifest.check_manifest(p.output, settings, fingerprint, force=force, input_grew=input_grew)
        except UsageError:
            if self._holds_results():
                raise
            # Nothing was written under the old settings (every row failed, or the run stopped first):
            # a rerun with corrected ones needs no --restart; `start` records the new manifest.
            return
        if resuming or force:
            return
        if p.output.exists() or p.journal.exists():
            raise UsageError(
                f"{p.output} exists but was not written by hfbatch (no manifest beside it); "
                "use --restart to replace it or --force to add to it"
            )

    def _holds_results(self) -> bool:
        """True when the output or its journal holds at least one result."""
        p = self.paths
        if not any(f.exists() and f.stat().st_size for f in (p.output, p.journal)):
            return False
        found = IdSet()
        self.load_done(found)
        return bool(found)

    def load_done(self, ids: IdSet) -> None:
        """Add every id earlier runs finished (in the output, and in a journal a crash left) to `ids`."""
        ids.update(self.format.existing_ids(self.paths.output))
        # Remembered so that `start` need not read the journal a second time.
        self._good = scan_journal(self.paths.journal, ids, self.format.scanner)

    def start(self, settings: dict[str, Any], fingerprint: dict[str, Any]) -> None:
        """Record the manifest, cut a torn last record off the journal, and open it and the errors file."""
        manifest.write_manifest(self.paths.output, settings, fingerprint)
        if self._good is None:
            self._good = scan_journal(self.paths.journal, IdSet(), self.format.scanner)
        self._journal = Journal(self.paths.journal, self._good)
        self._errors = ErrorLog(self.paths.errors, self.format.encode_error)

    def add_result(self, record: dict[str, Any]) -> None:
        """Queue one result record; it reaches the OS in this event-loop tick's flush."""
        assert self._journal is not None, "start() first"
        self._journal.add(self.format.encode(record))
        self._flush_soon()

    def add_error(self, record: dict[str, Any]) -> None:
        """Write one failed row to the errors file; it reaches the OS in this tick's flush."""
        assert self._errors is not None, "start() first"
        self._errors.add(record)
        self._flush_soon()

    def _flush_soon(self) -> None:
        if self._loop is None:
            self.flush()  # no flusher running (used outside a run): hand it over at once
        elif not self._flush_due:
            # One callback per tick, not a task to wake: this runs in every tick that finishes a row.
            self._flush_due = True
            self._loop.call_soon(self._flush_now)

    def _flush_now(self) -> None:
        self._flush_due = False
        failed = self._failed
        if failed is None or failed.done():
            return  # the run's flusher has ended (close() flushes the rest) or a write already failed
        try:
            self.flush()
        except Exception as exc:
            failed.set_exception(exc)  # raised by `keep_flushed`, in the run's task group

    async def keep_flushed(self) -> None:
        """Until cancelled, hand results to the OS in the event-loop tick after they arrive.

        One write covers every result that completed in a tick, with no timer: a kill -9
        loses only requests still in flight. Run it as a task beside the workers; a write
        that fails (disk full) raises here and stops the run.
        """
        self._loop = loop = asyncio.get_running_loop()
        self._failed = failed = loop.create_future()
        try:
            await failed
        finally:
            self._loop = None
            self._failed = None
            if not failed.done():
                failed.cancel()

    @property
    def pending(self) -> int:
        """Result records queued and not yet handed to the OS."""
        return self._journal.pending if self._journal is not None else 0

    def flush(self) -> None:
        """Hand queued results and errors to the OS: a crash after this loses none of them."""
        if self._journal is not None:
            self._journal.flush()
        if self._errors is not None:
            self._errors.flush()

    def close(self) -> None:
        """Sync and close the journal and the errors file, then make the final output."""
        try:
            if self._journal is not None:
                self._journal.close()
        finally:
            if self._errors is not None:
                self._errors.close()
        if self._journal is not None:
            self.format.finalize(self.paths.output, self.paths.journal)

    def abandon(self) -> None:
        """Close the journal and the errors file without making the final output (for a caller that discards them)."""
        for f in (self._journal, self._errors):
            if f is not None:
                with contextlib.suppress(OSError):
                    f.close()

    def write_stats(self, data: dict[str, Any]) -> None:
        """Write the stats file atomically."""
        write_json_atomic(self.paths.stats, data)


def _identities(path: Path) -> list[object]:
    """What makes two paths one file: the resolved path, and (dev, inode) when it exists."""
    keys: list[object] = [os.path.realpath(path)]
    with contextlib.suppress(OSError):
        st = os.stat(path)
        keys.append((st.st_dev, st.st_ino))
    return keys


def _inside(path: Path, folder: Path) -> bool:
    """True when `path` is (after resolving symlinks) somewhere under `folder`."""
    return Path(os.path.realpath(path)).is_relative_to(os.path.realpath(folder))


def open_output(
    output: Path, *, errors: Path | None = None, stats: Path | None = None, format: str | None = None
) -> OutputFiles:
    """The files of `output`, after checking its folder exists and is writable; UsageError if not."""
    folder = output.parent
    if not folder.is_dir():
        raise UsageError(f"{output}: the folder {folder} does not exist; create it first")
    if not os.access(folder, os.W_OK):
        raise UsageError(f"{output}: the folder {folder} is not writable")
    try:
        return OutputFiles(output, errors=errors, stats=stats, format=format)
    except KeyError:
        raise UsageError(f"{output}: unknown output type; use a .jsonl or .parquet output") from None
