"""Parquet output: a JSONL journal beside the file during a run, merged into the Parquet file at its end.

Resume invariant: an id is finished when it is in the Parquet file's `id` column (decoded from
JSON text when the file's metadata says so: `parquet_types`) or in a whole line of
`<output>.journal.jsonl` (hfbatch records, `id` first, as for JSONL). The merge
(`parquet_file.merge`) writes a temporary file, fsyncs it and renames it over the output,
then deletes the journal, so a crash at any point leaves either the old file plus the
journal or the new file (whose ids the journal repeats, and the merge skips). Column types
are chosen from every value, so the merge of a run that paid always has a file to write.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

from hfbatch.errors import UsageError
from hfbatch.outputs.jsonl import JournalFormat

__all__ = ["ParquetFormat"]


class ParquetFormat(JournalFormat):
    """Parquet output through a JSONL journal."""

    name: ClassVar[str] = "parquet"
    suffixes: ClassVar[tuple[str, ...]] = (".parquet",)

    def journal_path(self, output: Path) -> Path:
        """The JSONL journal behind a Parquet output."""
        return output.with_name(output.name + ".journal.jsonl")

    def existing_ids(self, output: Path) -> Iterator[Any]:
        """The ids already in the Parquet file, exactly as the runs that wrote them had them."""
        if not output.exists():
            return
        # pyarrow is imported only when a Parquet output is used, so `hfbatch --help` stays fast.
        from hfbatch.outputs.parquet_file import read_ids

        try:
            yield from read_ids(output)
        except Exception as exc:  # pyarrow raises several unrelated types for a bad file
            raise UsageError(
                f"{output}: the existing output is not a readable Parquet file ({exc}); move it away or use --restart"
            ) from None

    def finalize(self, output: Path, journal: Path) -> None:
        """Merge the existing Parquet output and the journal into a new file, atomically."""
        if journal.exists():
            from hfbatch.outputs.parquet_file import merge

            merge(output, journal)
