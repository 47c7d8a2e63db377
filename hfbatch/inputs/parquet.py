"""Parquet input: a file, or a folder of part files, read one record batch at a time.

Only the columns a run needs are read, one row group at a time, so corruption is pinned
to a row range and memory stays at one batch however large the input.
"""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path
from typing import Any

from hfbatch.errors import InputError
from hfbatch.inputs.base import InputReader, InputSpec, check_readable, one_line
from hfbatch.inputs.rows import ROW_PARAMS, BadRow, DoneRow, Row, RowBuilder
from hfbatch.template import Template

__all__ = ["ParquetReader", "open_parquet", "parquet_parts"]

# Rows converted to Python objects at a time; a batch is the unit of Parquet memory.
PARQUET_BATCH_ROWS = 1024
# Buffered page reads instead of pyarrow's default pre-buffering, which loads every
# requested row group's column chunks at once: 1M rows measured 92 MB instead of 430 MB.
PARQUET_READ_BUFFER = 1 << 20
_SHOWN_COLUMNS = 20


class ParquetReader(InputReader):
    """A checked Parquet file or folder of parts."""

    format = "parquet"

    def __init__(self, path: Path, *, builder: RowBuilder, parts: tuple[Path, ...], columns: tuple[str, ...]) -> None:
        super().__init__(path, builder=builder)
        self._parts = parts
        self._columns = columns
        self._folder = path.is_dir()

    def estimate_rows(self) -> int | None:
        """The exact row count, from the parts' metadata."""
        total = 0
        for part in self._parts:
            pf = _open_parquet(part)
            total += pf.metadata.num_rows
            pf.close()
        return total

    def files(self) -> tuple[Path, ...]:
        """The part files, in name order (or the one file)."""
        return self._parts

    def _iter(self) -> Generator[Row | BadRow | DoneRow, None, None]:
        import pyarrow as pa

        build = self._builder.build
        columns = list(self._columns)
        index = 0
        for part in self._parts:
            where = f"{part.name} row" if self._folder else "row"
            pf = _open_parquet(part)
            try:
                metadata = pf.metadata
                first = 0  # row number within this part of the current row group's first row
                for group in range(metadata.num_row_groups):
                    size = metadata.row_group(group).num_rows
                    # One row group at a time, so corruption can be pinned to a row range.
                    batches = pf.iter_batches(
                        batch_size=PARQUET_BATCH_ROWS, row_groups=[group], columns=columns, use_threads=False
                    )
                    number = first
                    while True:
                        try:
                            batch = next(batches, None)
                            if batch is None:
                                break
                            records = batch.to_pylist()
                        except (pa.ArrowException, OSError, ValueError) as exc:
                            raise InputError(
                                f"{part}: rows {first}-{first + size - 1} (row group {group}) cannot be read "
                                f"({one_line(exc)}); the file is corrupt, so re-export it"
                            ) from exc
                        for obj in records:
                            yield build(obj, index, where, number)
                            index += 1
                            number += 1
                    first += size
            finally:
                pf.close()


def open_parquet(path: Path, spec: InputSpec, builder: RowBuilder, template: Template | None) -> ParquetReader:
    """Check a Parquet file or folder and return its reader; InputError if it is unusable."""
    if path.is_dir():
        parts = parquet_parts(path)
        if not parts:
            raise InputError(
                f"{path}: the folder holds no *.parquet files; give a folder of Parquet parts, or the file itself"
            )
    else:
        parts = (path,)
    columns = _check_parquet(path, parts, spec, template)
    return ParquetReader(path, builder=builder, parts=parts, columns=columns)


def parquet_parts(folder: Path) -> tuple[Path, ...]:
    # Names starting with "." or "_" are writers' bookkeeping (_SUCCESS, .crc files, ...).
    return tuple(
        sorted(
            (p for p in folder.iterdir() if _is_part(p.name) and p.is_file()),
            key=lambda p: p.name,
        )
    )


def _is_part(name: str) -> bool:
    return name.lower().endswith(".parquet") and name[0] not in "._"


def _open_parquet(path: Path) -> Any:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(str(path), pre_buffer=False, buffer_size=PARQUET_READ_BUFFER)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise InputError(
            f"{path}: is not a readable Parquet file ({one_line(exc)}); it may be truncated or corrupt, so re-export it"
        ) from exc


def _check_parquet(path: Path, parts: tuple[Path, ...], spec: InputSpec, template: Template | None) -> tuple[str, ...]:
    """Validate every part and return the columns to read, in schema order."""
    schema: Any = None
    first_part = parts[0]
    rows = 0
    for part in parts:
        if check_readable(part) == 0:
            raise InputError(f"{part}: is empty (0 bytes); re-export it or remove it")
        pf = _open_parquet(part)
        try:
            part_schema = pf.schema_arrow
            rows += pf.metadata.num_rows
        finally:
            pf.close()
        if schema is None:
            schema = part_schema
        elif (difference := _schema_difference(schema, part_schema)) is not None:
            raise InputError(
                f"{path}: part files have different schemas: compared with {first_part.name}, "
                f"{part.name} {difference}; rewrite the parts with one schema"
            )
    names: list[str] = list(schema.names)
    present = set(names)
    shown = ", ".join(names[:_SHOWN_COLUMNS]) + (", ..." if len(names) > _SHOWN_COLUMNS else "")
    fields = template.fields if template is not None else ()
    if template is not None:
        # A field with a default may be absent: every row then takes the default.
        missing = [f for f in template.required if f not in present]
        if missing:
            raise InputError(
                f"{path}: the template uses {', '.join(map(repr, missing))}, "
                f"{'which is not a column' if len(missing) == 1 else 'which are not columns'} "
                f"(columns: {shown}); fix --template"
            )
    elif not present & {spec.prompt_column, "messages", "body"}:
        raise InputError(
            f"{path}: has no '{spec.prompt_column}', 'messages' or 'body' column (columns: {shown}); "
            "name the prompt column with --prompt-column, or use --template"
        )
    lacking = [c for c in spec.keep_columns if c not in present]
    if lacking:
        raise InputError(
            f"{path}: --keep-columns names {', '.join(map(repr, lacking))}, "
            f"{'which is not a column' if len(lacking) == 1 else 'which are not columns'} (columns: {shown}); "
            "fix --keep-columns"
        )
    if spec.id_column is not None and spec.id_column not in present:
        raise InputError(f"{path}: has no '{spec.id_column}' column for ids (columns: {shown}); fix --id-column")
    if rows == 0:
        raise InputError(f"{path}: is empty (no rows); give a file with at least one row")

    wanted = {*spec.keep_columns, *fields, "system", "images", *ROW_PARAMS}
    wanted.update((spec.id_column,) if spec.id_column is not None else ("id", "custom_id"))
    if not fields:
        wanted.update((spec.prompt_column, "messages", "body", "url", "method"))
    return tuple(n for n in names if n in wanted)


def _schema_difference(expected: Any, actual: Any) -> str | None:
    """Describe how `actual` differs from `expected` (names and types; order and nullability aside)."""
    want = {f.name: f.type for f in expected}
    have = {f.name: f.type for f in actual}
    if want == have:
        return None
    extra = [n for n in have if n not in want]
    if extra:
        return f"has extra column(s) {', '.join(extra)}"
    lacking = [n for n in want if n not in have]
    if lacking:
        return f"lacks column(s) {', '.join(lacking)}"
    name = next(n for n in want if want[n] != have[n])
    return f"has column {name} as {have[name]} instead of {want[name]}"
