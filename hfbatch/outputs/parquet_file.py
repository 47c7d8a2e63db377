"""Writing a Parquet output from its journal, and reading its ids and records back exactly.

`merge` chooses every column's type from every value first (`parquet_types`), since a Parquet
column has one type: a first pass reads the old file's ids, schema and statistics (which give
its integer columns' ranges and its all-null columns) and the journal, keeping per column the
few kinds of value seen. A second pass writes the old file's rows (converted where a column
widened), then the journal's rows not already in it, `CHUNK` at a time, to a temporary file
that is fsynced and renamed over the output; only then is the journal deleted. Memory holds
one chunk, the kinds and the old file's ids.

The first pass also writes as it goes, with the types seen so far, and stops writing when a
later row widens one of them; when none did (the usual case) the file is whole after one
read of the journal, and the second pass is skipped.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from hfbatch.errors import UsageError
from hfbatch.idset import IdSet
from hfbatch.outputs.parquet_types import (
    ID_ENCODING,
    JSON_COLUMNS,
    OWN_COLUMNS,
    ColumnType,
    arrow_kinds,
    column_kinds,
    convert,
    id_kinds,
    id_type,
    kept_type,
    own_type,
    to_arrow,
)

__all__ = ["CHUNK", "merge", "read_ids", "read_records"]

#: Journal records converted and written at a time.
CHUNK = 10_000
_BATCH = 65_536


@dataclass
class _Survey:
    """What the first pass learns: the columns in order, the kinds each holds, and the old file's ids."""

    kinds: dict[str, set[str]] = field(default_factory=lambda: {"id": set()})
    old_json: set[str] = field(default_factory=set)
    old_ids: IdSet = field(default_factory=IdSet)
    new_rows: int = 0

    def add(self, chunk: _Chunk) -> None:
        """Note the kinds of every value of a chunk of new journal rows."""
        for name, values in chunk.columns.items():
            seen = self.kinds.get(name)
            if seen is None:
                seen = self.kinds[name] = set()
            seen.update(id_kinds(values) if name == "id" else column_kinds(values))
        self.new_rows += len(chunk.rows)

    def types(self) -> dict[str, ColumnType]:
        """Each column's type, in column order."""
        out: dict[str, ColumnType] = {}
        for name, kinds in self.kinds.items():
            if name == "id":
                out[name] = id_type(kinds)
            elif name in OWN_COLUMNS:
                out[name] = own_type(OWN_COLUMNS[name], kinds)
            else:
                out[name] = kept_type(kinds)
        return out


def merge(output: Path, journal: Path, *, chunk: int = CHUNK) -> None:
    """Write the old output's rows and the journal's new ones to a new file, atomically; then drop the journal."""
    survey = _Survey()
    tmp = output.with_name(output.name + ".tmp")
    try:
        if output.exists():
            _survey_old(output, survey)
        whole = _first_pass(output, journal, tmp, survey, chunk)
        if not survey.new_rows:
            # Every journal record is already in the file (a crash came after the rename): nothing to add.
            journal.unlink()
            return
        if not whole:
            _second_pass(output, journal, tmp, survey, chunk)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, output)
    except (OSError, pa.ArrowException) as exc:  # a full disk, a file gone bad since the run began
        raise UsageError(
            f"{output}: cannot write the Parquet file ({_one_line(exc)}); the results are safe in {journal}: "
            "fix the cause and rerun the same command to write it"
        ) from None
    finally:
        tmp.unlink(missing_ok=True)
    journal.unlink()


def _first_pass(output: Path, journal: Path, tmp: Path, survey: _Survey, chunk: int) -> bool:
    """Survey the journal's new rows, writing them while the types seen so far hold; True if the file is whole."""
    writer: _Writer | None = None
    whole = True
    try:
        for part in _new_chunks(journal, survey.old_ids, chunk):
            survey.add(part)
            if not whole:
                continue
            types = survey.types()
            if writer is None:
                writer = _Writer(output, journal, tmp, types, survey.old_json)
            elif types != writer.types:
                # A column widened after rows went out with its narrower type: the second pass writes again.
                whole = False
                continue
            writer.add(part)
    finally:
        if writer is not None:
            writer.close()
    return whole and writer is not None


def _second_pass(output: Path, journal: Path, tmp: Path, survey: _Survey, chunk: int) -> None:
    """Write the file again with the final types."""
    writer = _Writer(output, journal, tmp, survey.types(), survey.old_json)
    try:
        for part in _new_chunks(journal, survey.old_ids, chunk):
            writer.add(part)
    finally:
        writer.close()


def _json_columns(schema: pa.Schema) -> set[str]:
    """The columns of a file written by hfbatch that hold JSON text, the id included."""
    meta = schema.metadata or {}
    names = set(json.loads(meta[JSON_COLUMNS])) if JSON_COLUMNS in meta else set()
    if meta.get(ID_ENCODING) == b"json":
        names.add("id")
    return names


def _survey_old(output: Path, survey: _Survey) -> None:
    """The old file's ids, and the kinds of value each column holds, from its types and statistics."""
    with pq.ParquetFile(output) as pf:
        schema = pf.schema_arrow
        survey.old_json = _json_columns(schema)
        ranges = _ranges(pf.metadata)
        unknown = [f.name for f in schema if pa.types.is_integer(f.type) and f.name not in ranges]
        for batch in pf.iter_batches(batch_size=_BATCH, columns=list(dict.fromkeys(["id", *unknown]))):
            survey.old_ids.update(_decoded_ids(batch.column("id"), "id" in survey.old_json))
            for name in unknown:
                bounds = pc.min_max(batch.column(name))
                lo, hi = bounds["min"].as_py(), bounds["max"].as_py()
                if lo is not None:
                    old_lo, old_hi = ranges.get(name, (lo, hi))
                    ranges[name] = (min(lo, old_lo), max(hi, old_hi))
    for f in schema:
        lo, hi = ranges.get(f.name, (None, None))
        if f.name in ranges and lo is None:
            survey.kinds[f.name] = set()  # all null: it may become any type
        else:
            survey.kinds[f.name] = arrow_kinds(f.type, is_json=f.name in survey.old_json, low=lo, high=hi)


def _ranges(meta: pq.FileMetaData) -> dict[str, tuple[Any, Any]]:
    """(min, max) of each flat column whose row groups all have statistics; (None, None) when it is all null."""
    out: dict[str, tuple[Any, Any]] = {}
    for j in range(meta.num_columns):
        lo = hi = None
        for i in range(meta.num_row_groups):
            group = meta.row_group(i)
            stats = group.column(j).statistics
            if stats is None or not stats.has_null_count:
                break
            if stats.null_count == group.num_rows:
                continue
            if not stats.has_min_max:
                break
            lo = stats.min if lo is None else min(lo, stats.min)
            hi = stats.max if hi is None else max(hi, stats.max)
        else:
            out[meta.schema.column(j).path] = (lo, hi)
    return out


#: JSON text to a value, built once (json.loads checks its arguments on every call).
_decode = json.JSONDecoder().decode


def _journal_records(journal: Path) -> Iterator[dict[str, Any]]:
    """The journal's records; lone surrogates written raw (not as JSON escapes) come through too."""
    with open(journal, encoding="utf-8", errors="surrogatepass") as f:
        for number, line in enumerate(f, 1):
            try:
                record = _decode(line)
                if type(record) is dict and "id" in record:
                    yield record
                    continue
            except ValueError:
                pass
            raise UsageError(f"{journal}: line {number} is not a result record; move the line away and rerun")


@dataclass(frozen=True, slots=True)
class _Chunk:
    """Journal records, and each column's values in them (None where a record lacks the column)."""

    rows: list[dict[str, Any]]
    columns: dict[str, list[Any]]


def _new_chunks(journal: Path, old_ids: IdSet, size: int) -> Iterator[_Chunk]:
    """The journal's records not already in the old file, `size` at a time."""
    rows: list[dict[str, Any]] = []
    for record in _journal_records(journal):
        if record["id"] in old_ids:
            continue
        rows.append(record)
        if len(rows) >= size:
            yield _chunk(rows)
            rows = []
    if rows:
        yield _chunk(rows)


def _chunk(rows: list[dict[str, Any]]) -> _Chunk:
    names = dict.fromkeys(chain.from_iterable(rows))  # in order of first appearance
    return _Chunk(rows, {name: [r.get(name) for r in rows] for name in names})


class _Writer:
    """The new file: the old file's rows as `types` first, then the journal's rows chunk by chunk."""

    def __init__(
        self, output: Path, journal: Path, tmp: Path, types: dict[str, ColumnType], old_json: set[str]
    ) -> None:
        self.output, self.journal, self.types = output, journal, types
        self.schema = _schema(types)
        self._file = pq.ParquetWriter(tmp, self.schema)
        try:
            if output.exists():
                with pq.ParquetFile(output) as pf:
                    for batch in pf.iter_batches(batch_size=_BATCH):
                        self._file.write_batch(_old_batch(output, batch, types, self.schema, old_json))
        except BaseException:
            self._file.close()
            raise

    def add(self, chunk: _Chunk) -> None:
        """Write journal records."""
        self._file.write_batch(_new_batch(self.output, self.journal, chunk, self.types, self.schema))

    def close(self) -> None:
        """Finish the file."""
        self._file.close()


def _schema(types: dict[str, ColumnType]) -> pa.Schema:
    meta: dict[bytes, bytes] = {}
    if types["id"].is_json:
        meta[ID_ENCODING] = b"json"
    if json_columns := [name for name, t in types.items() if t.is_json and name != "id"]:
        meta[JSON_COLUMNS] = json.dumps(json_columns).encode()
    return pa.schema([pa.field(name, t.arrow) for name, t in types.items()], metadata=meta or None)


def _old_batch(
    output: Path, batch: pa.RecordBatch, types: dict[str, ColumnType], schema: pa.Schema, old_json: set[str]
) -> pa.RecordBatch:
    names = set(batch.schema.names)
    arrays = []
    for name, ctype in types.items():
        if name not in names:
            arrays.append(pa.nulls(batch.num_rows, ctype.arrow))
            continue
        try:
            arrays.append(convert(batch.column(name), ctype, was_json=name in old_json, exact=name == "id"))
        except (ValueError, TypeError, OverflowError, pa.ArrowException) as exc:
            raise UsageError(
                f"{output}: cannot rewrite its column {name!r} as {ctype.name} ({_one_line(exc)}); "
                "the file and the journal are unchanged"
            ) from None
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _new_batch(
    output: Path, journal: Path, chunk: _Chunk, types: dict[str, ColumnType], schema: pa.Schema
) -> pa.RecordBatch:
    arrays = []
    for name, ctype in types.items():
        values = chunk.columns.get(name)
        if values is None:
            arrays.append(pa.nulls(len(chunk.rows), ctype.arrow))
            continue
        try:
            arrays.append(to_arrow(values, ctype, exact=name == "id"))
        except (ValueError, TypeError, OverflowError, pa.ArrowException) as exc:
            row_id = chunk.rows[_culprit(values, ctype, exact=name == "id")]["id"]
            raise UsageError(
                f"{output}: cannot write column {name!r} as {ctype.name} at id {row_id!r} ({_one_line(exc)}); "
                f"the results are safe in {journal}"
            ) from None
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _culprit(values: list[Any], ctype: ColumnType, *, exact: bool) -> int:
    """The index of the first value that does not convert (0 when each converts alone)."""
    for i, value in enumerate(values):
        try:
            to_arrow([value], ctype, exact=exact)
        except (ValueError, TypeError, OverflowError, pa.ArrowException):
            return i
    return 0


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200] or type(exc).__name__


def _decoded_ids(column: pa.Array, is_json: bool) -> list[Any]:
    ids = column.to_pylist()
    return [json.loads(i) for i in ids] if is_json else ids


def read_ids(path: Path) -> Iterator[Any]:
    """The ids in an hfbatch Parquet output, each as the run had it (1 and "1" apart)."""
    with pq.ParquetFile(path) as pf:
        is_json = "id" in _json_columns(pf.schema_arrow)
        for batch in pf.iter_batches(batch_size=_BATCH, columns=["id"]):
            yield from _decoded_ids(batch.column(0), is_json)


def read_records(path: Path) -> Iterator[dict[str, Any]]:
    """The records of an hfbatch Parquet output, JSON-text columns decoded back to their values."""
    with pq.ParquetFile(path) as pf:
        json_columns = _json_columns(pf.schema_arrow)
        for batch in pf.iter_batches(batch_size=_BATCH):
            for record in batch.to_pylist():
                for name in json_columns:
                    if record[name] is not None:
                        record[name] = json.loads(record[name])
                yield record
