"""Parquet output: a JSONL journal beside the file during a run, merged into the Parquet file at its end.

Resume invariant: an id is finished when it is in the Parquet file's `id` column or in a
whole line of `<output>.journal.jsonl` (hfbatch records, `id` first, as for JSONL). The
merge writes a temporary file, fsyncs it and renames it over the output, then deletes the
journal, so a crash at any point leaves either the old file plus the journal or the new
file (whose ids the journal repeats, and the merge skips).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

from hfbatch.errors import UsageError
from hfbatch.outputs.jsonl import JournalFormat

__all__ = ["ParquetFormat"]

_PARQUET_CHUNK = 10_000
# Record columns that may be null for a whole run (no prices, no usage) and hold values in the next one:
# typed up front, so a resume's values fit the column the first run made.
_NULLABLE_COLUMNS = {"cost_usd": "float64", "prompt_tokens": "int64", "completion_tokens": "int64"}


class ParquetFormat(JournalFormat):
    """Parquet output through a JSONL journal."""

    name: ClassVar[str] = "parquet"
    suffixes: ClassVar[tuple[str, ...]] = (".parquet",)

    def journal_path(self, output: Path) -> Path:
        """The JSONL journal behind a Parquet output."""
        return output.with_name(output.name + ".journal.jsonl")

    def existing_ids(self, output: Path) -> Iterator[Any]:
        """The ids already in the Parquet file."""
        if not output.exists():
            return
        import pyarrow.parquet as pq

        try:
            pf = pq.ParquetFile(output)
            for batch in pf.iter_batches(batch_size=65_536, columns=["id"]):
                yield from batch.column(0).to_pylist()
        except Exception as exc:  # pyarrow raises several unrelated types for a bad file
            raise UsageError(
                f"{output}: the existing output is not a readable Parquet file ({exc}); move it away or use --restart"
            ) from None

    def finalize(self, output: Path, journal: Path) -> None:
        """Merge the existing Parquet output and the journal into a new file, atomically."""
        if journal.exists():
            _write_parquet(output, journal)


def _journal_chunks(path: Path, skip: set[Any]) -> Iterator[list[dict[str, Any]]]:
    chunk: list[dict[str, Any]] = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            record = json.loads(line)
            if record["id"] in skip:
                continue
            chunk.append(record)
            if len(chunk) >= _PARQUET_CHUNK:
                yield chunk
                chunk = []
    if chunk:
        yield chunk


def _typed(table: Any) -> Any:
    """The table with its all-null record columns given their real types."""
    import pyarrow as pa

    for i, field in enumerate(table.schema):
        kind = _NULLABLE_COLUMNS.get(field.name)
        if kind is not None and pa.types.is_null(field.type):
            table = table.set_column(i, field.with_type(pa.type_for_alias(kind)), table.column(i).cast(kind))
    return table


def _write_parquet(output: Path, journal: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    tmp = output.with_name(output.name + ".tmp")
    writer: Any = None
    existing: set[Any] = set()
    try:
        if output.exists():
            old = pq.ParquetFile(output)
            writer = pq.ParquetWriter(tmp, old.schema_arrow)
            for batch in old.iter_batches(batch_size=65_536):
                existing.update(batch.column("id").to_pylist())
                writer.write_batch(batch)
        for chunk in _journal_chunks(journal, existing):
            if writer is None:
                table = _typed(pa.Table.from_pylist(chunk))
                writer = pq.ParquetWriter(tmp, table.schema)
            else:
                table = pa.Table.from_pylist(chunk, schema=writer.schema)
            writer.write_table(table)
        if writer is None:
            return
        writer.close()
        writer = None
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, output)
        journal.unlink()
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise UsageError(
            f"{output}: cannot write Parquet ({exc}); the results are safe in {journal}. "
            "A column whose type changes between rows cannot be one Parquet column: use a .jsonl output"
        ) from None
    finally:
        if writer is not None:
            writer.close()
        if tmp.exists():
            tmp.unlink()
