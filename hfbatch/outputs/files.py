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

import contextlib
import os
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
        )
        self._lock: contextlib.ExitStack | None = None
        self._good: int | None = None
        self._journal: Journal | None = None
        self._errors: ErrorLog | None = None

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

    def prepare(self, settings: dict[str, Any], fingerprint: dict[str, Any], *, restart: bool, force: bool) -> None:
        """Start over (`restart`), or check that adding to the existing output is sound; UsageError if not."""
        p = self.paths
        if restart:
            manifest.remove_outputs([p.output, p.journal, p.errors, p.stats, p.manifest])
            return
        if manifest.check_manifest(p.output, settings, fingerprint, force=force) or force:
            return
        if p.output.exists() or p.journal.exists():
            raise UsageError(
                f"{p.output} exists but was not written by hfbatch (no manifest beside it); "
                "use --restart to replace it or --force to add to it"
            )

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
        """Queue one result record (handed to the OS by `flush`)."""
        assert self._journal is not None, "start() first"
        self._journal.add(self.format.encode(record))

    def add_error(self, record: dict[str, Any]) -> None:
        """Write one failed row to the errors file."""
        assert self._errors is not None, "start() first"
        self._errors.add(record)

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

    def write_stats(self, data: dict[str, Any]) -> None:
        """Write the stats file atomically."""
        write_json_atomic(self.paths.stats, data)


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
