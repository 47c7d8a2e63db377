"""Streaming input readers: JSONL (optionally gzipped) and Parquet files or folders.

`open_input` checks the whole input up front and raises `InputError` for anything that
makes it unusable; iterating the returned reader then streams `Row`s and `BadRow`s with
memory bounded by one line or one record batch, however many rows the input has. Per-row
rules live in `input_rows.py`.
"""

from __future__ import annotations

import codecs
import gzip
import hashlib
import io
import json
import os
import re
import weakref
import zlib
from collections.abc import Callable, Container, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO

from hfbatch.errors import InputError
from hfbatch.idset import IdSet
from hfbatch.input_rows import ROW_PARAMS, BadRow, DoneRow, Row, RowBuilder, kind_of, template_fields

__all__ = ["BadRow", "DoneRow", "InputReader", "InputSpec", "Row", "input_fingerprint", "open_input"]

_SAMPLE_FOR_ESTIMATE = 4 << 20
SUPPORTED = ".jsonl, .jsonl.gz, .parquet, or a folder of .parquet part files"

# Rows converted to Python objects at a time; a batch is the unit of Parquet memory.
PARQUET_BATCH_ROWS = 1024
# Buffered page reads instead of pyarrow's default pre-buffering, which loads every
# requested row group's column chunks at once: 1M rows measured 92 MB instead of 430 MB.
PARQUET_READ_BUFFER = 1 << 20
JSONL_READ_BUFFER = 1 << 20
# How much of a .jsonl is looked at for binary content, and how many lines for JSON objects.
SNIFF_BYTES = 64 * 1024
SNIFF_LINES = 5
# A first line longer than this is not parsed while sniffing, so a huge single-line file
# (a JSON array, say) is not read whole just to be rejected.
SNIFF_LINE_LIMIT = 8 << 20
FINGERPRINT_CHUNK = 1 << 20

_GZIP_MAGIC = b"\x1f\x8b"
# json.loads on a str only type-checks its argument and calls this; skipping that per line is free.
_DECODER = json.JSONDecoder()
_SHOWN_COLUMNS = 20


@dataclass(frozen=True, slots=True)
class InputSpec:
    """Which file to read and how its rows become requests."""

    path: Path
    id_column: str | None = None
    prompt_column: str = "prompt"
    template: str | None = None
    keep_columns: tuple[str, ...] = ()
    system: str | None = None


class InputReader:
    """A validated input; iterate it (more than once if need be) for Rows and BadRows."""

    def __init__(
        self,
        path: Path,
        format: str,
        *,
        builder: RowBuilder,
        gzipped: bool = False,
        parts: tuple[Path, ...] = (),
        columns: tuple[str, ...] = (),
    ) -> None:
        self.path = path
        self.format = format
        self._builder = builder
        self._gzipped = gzipped
        self._parts = parts
        self._columns = columns
        self._folder = path.is_dir()
        self._live: weakref.WeakSet[Generator[Row | BadRow | DoneRow, None, None]] = weakref.WeakSet()
        self._closed = False

    def __iter__(self) -> Iterator[Row | BadRow | DoneRow]:
        """Stream the rows in input order; raises InputError only if the file itself breaks."""
        if self._closed:
            raise ValueError(f"the reader for {self.path} is closed")
        gen = self._iter_jsonl() if self.format == "jsonl" else self._iter_parquet()
        self._live.add(gen)
        return gen

    def rows(self, done: Container[Any] | None = None) -> Iterator[Row | BadRow | DoneRow]:
        """Stream the rows; a row whose id is in `done` comes back as a DoneRow, without being built."""
        self._builder.done = done
        return iter(self)

    def close(self) -> None:
        """Stop every iteration in progress and release its file."""
        self._closed = True
        for gen in list(self._live):
            gen.close()

    def __enter__(self) -> InputReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"InputReader({str(self.path)!r}, format={self.format!r})"

    def estimate_rows(self) -> int | None:
        """About how many rows the input holds, for progress and ETA.

        Exact for Parquet (its metadata) and for a JSONL file of up to 4 MiB; a larger
        JSONL is judged from its size and the line length of its first 4 MiB, so a
        resumed run does not read its input twice. A gzipped input is not judged (None).
        """
        if self.format == "parquet":
            total = 0
            for part in self._parts or (self.path,):
                pf = _open_parquet(part)
                total += pf.metadata.num_rows
                pf.close()
            return total
        if self._gzipped:
            return None
        size = self.path.stat().st_size
        with open(self.path, "rb") as f:
            head = f.read(_SAMPLE_FOR_ESTIMATE)
        lines = head.count(b"\n") + (not head.endswith(b"\n") and len(head) == size)
        if len(head) == size or not lines:
            return lines
        return round(size * lines / len(head))

    def _iter_jsonl(self) -> Generator[Row | BadRow | DoneRow, None, None]:
        build = self._builder.build
        loads = _DECODER.decode
        # A line whose leading id is already done is not parsed again: it was a valid row when it was
        # done, and the manifest checks the input has not changed since. This keeps a resume cheap.
        done: Container[Any] = self._builder.done or ()
        leading_id = _leading_id_pattern(self._builder.leading_id_key).match if done else None
        prefix = b"{" + json.dumps(self._builder.leading_id_key).encode() + b': "'
        done_strings: Container[str] = done.strings if isinstance(done, IdSet) else done
        index = 0
        lineno = 0
        try:
            stream = _open_jsonl(self.path, self._gzipped)
        except OSError as exc:
            raise InputError(f"{self.path}: cannot be opened ({_one_line(exc)})") from exc
        with stream:
            try:
                for raw in stream:
                    lineno += 1
                    if lineno == 1 and raw.startswith(codecs.BOM_UTF8):
                        raw = raw[3:]
                        if not raw:
                            continue
                    if raw.isspace():
                        continue
                    item: Row | BadRow | DoneRow
                    if leading_id is not None:
                        key = _leading_id(raw, prefix, leading_id)
                        if key is not None and (key in done_strings if type(key) is str else key in done):
                            yield DoneRow(index, key)
                            index += 1
                            continue
                    try:
                        obj = loads(raw.decode())
                    except UnicodeDecodeError:
                        item = BadRow(index, f"line {lineno}", "line is not valid UTF-8; save the file as UTF-8")
                    except json.JSONDecodeError as exc:
                        item = BadRow(index, f"line {lineno}", _json_reason(exc))
                    except (ValueError, RecursionError) as exc:
                        # Integers past Python's digit limit, or nesting deeper than the stack.
                        reason = f"JSON cannot be read ({_one_line(exc)})"
                        item = BadRow(index, f"line {lineno}", reason)
                    else:
                        if type(obj) is dict:
                            item = build(obj, index, "line", lineno)
                        else:
                            reason = f"line is {kind_of(obj)}, not a JSON object; write each row as {{...}}"
                            item = BadRow(index, f"line {lineno}", reason)
                    yield item
                    index += 1
            except (OSError, EOFError, zlib.error) as exc:
                raise InputError(
                    f"{self.path}: reading failed after line {lineno} ({_one_line(exc)}); "
                    "the file is truncated or corrupt, so re-create or re-download it"
                ) from exc

    def _iter_parquet(self) -> Generator[Row | BadRow | DoneRow, None, None]:
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
                                f"({_one_line(exc)}); the file is corrupt, so re-export it"
                            ) from exc
                        for obj in records:
                            yield build(obj, index, where, number)
                            index += 1
                            number += 1
                    first += size
            finally:
                pf.close()


def open_input(spec: InputSpec) -> InputReader:
    """Check the input named by `spec` and return a reader; raises InputError if unusable."""
    path = Path(spec.path)
    fields: tuple[str, ...] = ()
    if spec.template is not None:
        try:
            fields = template_fields(spec.template)
        except ValueError as exc:
            raise InputError(f"{path}: the template {spec.template!r} is not usable: {exc}") from None
    try:
        is_dir = path.is_dir()
        exists = is_dir or path.is_file()
    except OSError as exc:
        raise InputError(f"{path}: cannot be reached ({_one_line(exc)}); check the path") from exc
    if not exists:
        raise InputError(f"{path}: no such file or folder; check the path")

    name = path.name.lower()
    if is_dir:
        parts = _parquet_parts(path)
        if not parts:
            raise InputError(
                f"{path}: the folder holds no *.parquet files; give a folder of Parquet parts, "
                f"or the file itself ({SUPPORTED})"
            )
        fmt = "parquet"
    elif name.endswith(".parquet"):
        parts = (path,)
        fmt = "parquet"
    elif name.endswith((".jsonl", ".jsonl.gz")):
        fmt = "jsonl"
    else:
        hint = " (if it holds one JSON object per line, rename it to .jsonl)" if name.endswith(".json") else ""
        raise InputError(f"{path}: unsupported input type{hint}; hfbatch reads {SUPPORTED}")

    builder = RowBuilder(
        id_column=spec.id_column,
        prompt_column=spec.prompt_column,
        template=spec.template,
        keep_columns=spec.keep_columns,
        system=spec.system,
        nulls_in_structs=fmt == "parquet",
    )
    if fmt == "jsonl":
        gzipped = name.endswith(".gz")
        _check_jsonl(path, gzipped)
        return InputReader(path, "jsonl", builder=builder, gzipped=gzipped)
    columns = _check_parquet(path, parts, spec, fields)
    return InputReader(path, "parquet", builder=builder, parts=parts, columns=columns)


def input_fingerprint(path: Path) -> dict[str, Any]:
    """Identify an input cheaply: each file's name, size and a hash of its first and last MiB."""
    path = Path(path)
    try:
        files = _parquet_parts(path) if path.is_dir() else (path,)
        return {"files": [_file_fingerprint(p) for p in files]}
    except OSError as exc:
        raise InputError(f"{path}: cannot be read for its fingerprint ({_one_line(exc)})") from exc


def _file_fingerprint(path: Path) -> dict[str, Any]:
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        digest.update(f.read(FINGERPRINT_CHUNK))
        if size > FINGERPRINT_CHUNK:
            f.seek(max(FINGERPRINT_CHUNK, size - FINGERPRINT_CHUNK))
            digest.update(f.read(FINGERPRINT_CHUNK))
    return {"name": path.name, "size": size, "blake2b": digest.hexdigest()}


def _parquet_parts(folder: Path) -> tuple[Path, ...]:
    # Names starting with "." or "_" are writers' bookkeeping (_SUCCESS, .crc files, ...).
    return tuple(
        sorted(
            (p for p in folder.iterdir() if _is_part(p.name) and p.is_file()),
            key=lambda p: p.name,
        )
    )


def _is_part(name: str) -> bool:
    return name.lower().endswith(".parquet") and name[0] not in "._"


def _open_jsonl(path: Path, gzipped: bool) -> BinaryIO:
    if gzipped:
        # GzipFile.readline is Python code per call; a C buffer in front reads lines ~12% faster.
        return io.BufferedReader(gzip.GzipFile(path, "rb"), JSONL_READ_BUFFER)
    return open(path, "rb", buffering=JSONL_READ_BUFFER)


def _check_readable(path: Path) -> int:
    """Return the file's size; InputError if it cannot be opened for reading."""
    try:
        with open(path, "rb") as f:
            return os.fstat(f.fileno()).st_size
    except PermissionError as exc:
        raise InputError(f"{path}: cannot be read (permission denied); check its permissions") from exc
    except OSError as exc:
        raise InputError(f"{path}: cannot be read ({_one_line(exc)})") from exc


def _check_jsonl(path: Path, gzipped: bool) -> None:
    if _check_readable(path) == 0:
        raise InputError(f"{path}: is empty (no rows); give a file with one JSON object per line")
    with open(path, "rb") as f:
        head = f.read(SNIFF_BYTES)
    if gzipped:
        if not head.startswith(_GZIP_MAGIC):
            raise InputError(f"{path}: is not gzip data; if it is plain text, rename it to .jsonl")
    elif head.startswith(_GZIP_MAGIC):
        raise InputError(f"{path}: is gzip-compressed; rename it to .jsonl.gz")
    seen = 0
    found = False
    first = b""
    try:
        # Unbuffered, so the sniff decompresses only what it looks at.
        with gzip.GzipFile(path, "rb") if gzipped else open(path, "rb") as stream:
            if gzipped:
                head = stream.read(SNIFF_BYTES)
                stream.seek(0)
            if b"\x00" in head:
                raise InputError(
                    f"{path}: holds NUL bytes, so it is binary or UTF-16, not JSONL; "
                    "save it as UTF-8 text with one JSON object per line"
                )
            at_start = True
            while seen < SNIFF_LINES:
                line = stream.readline(SNIFF_LINE_LIMIT)
                if not line:
                    break
                if at_start and line.startswith(codecs.BOM_UTF8):
                    line = line[3:]
                at_start = False
                if line.isspace() or not line:
                    continue
                seen += 1
                first = first or line
                if len(line) == SNIFF_LINE_LIMIT and not line.endswith(b"\n"):
                    # Too long to parse here; a line that opens an object is taken on trust.
                    found = line.lstrip().startswith(b"{")
                    break
                try:
                    found = type(json.loads(line.decode())) is dict
                except (ValueError, RecursionError):
                    continue
                if found:
                    break
    except (OSError, EOFError, zlib.error) as exc:
        raise InputError(f"{path}: is not valid gzip ({_one_line(exc)}); re-create it with gzip") from exc
    if seen == 0:
        raise InputError(f"{path}: is empty (only blank lines, no rows); give one JSON object per line")
    if not found:
        start = first.decode("utf-8", "replace").strip()[:40]
        hint = " (it looks like one JSON array)" if start.startswith("[") else ""
        raise InputError(
            f"{path}: does not look like JSONL{hint}: none of the first {seen} non-blank lines is a "
            f"JSON object (line 1 starts {start!r}); write one object per line, like "
            '{"id": 1, "prompt": "..."}'
        )


def _open_parquet(path: Path) -> Any:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(str(path), pre_buffer=False, buffer_size=PARQUET_READ_BUFFER)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise InputError(
            f"{path}: is not a readable Parquet file ({_one_line(exc)}); "
            "it may be truncated or corrupt, so re-export it"
        ) from exc


def _check_parquet(path: Path, parts: tuple[Path, ...], spec: InputSpec, fields: tuple[str, ...]) -> tuple[str, ...]:
    """Validate every part and return the columns to read, in schema order."""
    schema: Any = None
    first_part = parts[0]
    rows = 0
    for part in parts:
        if _check_readable(part) == 0:
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
    if fields:
        missing = [f for f in fields if f not in present]
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


def _leading_id(raw: bytes, prefix: bytes, pattern: Callable[[bytes], re.Match[bytes] | None]) -> str | int | None:
    """The id a JSON line starts with, read without parsing the line; None when it is not that simple."""
    if raw.startswith(prefix):
        # The shape our own writers and most exporters use: {"id": "..."
        start = len(prefix)
        end = raw.find(b'"', start)
        text = raw[start:end]
        if end > 0 and b"\\" not in text:
            try:
                return text.decode()
            except UnicodeDecodeError:
                return None
    m = pattern(raw)
    if m is None:
        return None
    text_group, number = m.group(1, 2)
    if number is not None:
        return int(number)
    try:
        return str(text_group.decode())
    except UnicodeDecodeError:
        return None


def _leading_id_pattern(key: str) -> re.Pattern[bytes]:
    """Matches a JSON line whose first key is `key` with a plain string or integer value."""
    name = re.escape(json.dumps(key).encode())
    return re.compile(rb"\{\s*" + name + rb'\s*:\s*(?:"([^"\\\n]*)"|(-?(?:0|[1-9][0-9]*))\s*[,}])')


def _json_reason(exc: json.JSONDecodeError) -> str:
    # The document is the line plus its newline; colno would restart after that newline and
    # name "column 1" of a line that does not exist, so the line's own length is the measure.
    at = "the end of the line" if exc.pos >= len(exc.doc.rstrip()) else f"column {exc.pos + 1}"
    msg = exc.msg.removesuffix(" at")  # some of json's messages already end in "at"
    return f"not valid JSON: {msg} at {at}; each line must be one complete JSON object"


def _one_line(exc: BaseException) -> str:
    """Make an exception's text fit one line of a message."""
    return " ".join(str(exc).split())[:300] or type(exc).__name__
