"""Where results go: an append-only journal that survives kill -9, and the final JSONL or Parquet.

A JSONL output is its own journal: records are appended and flushed in small
batches, and a torn last line left by a crash is cut off before the next run
appends. A Parquet output is written from a JSONL journal beside it when a run
ends, through a temporary file and an atomic rename, so the Parquet file is
always whole; a journal left by a crash is merged by the next run.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hfbatch.errors import UsageError
from hfbatch.idset import IdSet

__all__ = ["ErrorLog", "ResultSink", "journal_path", "open_sink"]

_ID_PREFIX = b'{"id": '
# Our records begin with the id; these find it in every line of a block (with a newline put before
# it) at once. The literal prefix lets the regex engine skip ahead, five times faster than "^".
_STRING_IDS = re.compile(rb'\n\{"id": "([^"\\\n]*)"[,}]')
_INT_IDS = re.compile(rb'\n\{"id": (-?[0-9]+)[,}]')
_SCAN_BLOCK = 4 << 20
_DECODER = json.JSONDecoder()
_PARQUET_CHUNK = 10_000


def journal_path(output: Path) -> Path:
    """The JSONL journal behind a Parquet output."""
    return output.with_name(output.name + ".journal.jsonl")


# default=str: kept Parquet columns may hold dates or decimals, which JSON has no type for.
# Built once: json.dumps with any option set builds a new encoder on every call.
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(", ", ": "), default=str).encode


def _record_id(line: bytes) -> Any:
    """The id of one journal line; our records start with it, so most need no full parse."""
    if line.startswith(_ID_PREFIX):
        if line[7:8] == b'"':
            end = line.find(b'"', 8)
            if end > 0 and b"\\" not in line[8:end]:
                return line[8:end].decode("utf-8")
        return _DECODER.raw_decode(line.decode("utf-8"), len(_ID_PREFIX))[0]
    return json.loads(line)["id"]


def scan_journal(path: Path, ids: IdSet) -> int:
    """Add the id of every whole record in a journal to `ids`; return the byte length they fill.

    Records are written whole, newline last, so a line without its newline is a torn
    write; so is anything after a line that does not parse. Blocks whose every line
    starts with a plain string or integer id are read by a regex, not line by line:
    a resume over a million done rows reads its output at C speed.
    """
    good = 0
    tail = b""
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return 0
    with f:
        while chunk := f.read(_SCAN_BLOCK):
            data = tail + chunk
            cut = data.rfind(b"\n") + 1
            block, tail = data[:cut], data[cut:]
            lines = block.count(b"\n")
            if (found := _STRING_IDS.findall(b"\n" + block)) and len(found) == lines:
                ids.update_strings(map(bytes.decode, found))
            elif (found := _INT_IDS.findall(b"\n" + block)) and len(found) == lines:
                ids.update(map(int, found))
            else:
                taken = _scan_lines(block, ids)
                good += taken
                if taken < len(block):
                    return good
                continue
            good += len(block)
    return good


def _scan_lines(block: bytes, ids: IdSet) -> int:
    """Add ids line by line (mixed or escaped ids); return the length up to the first bad line."""
    taken = 0
    for line in block.splitlines(keepends=True):
        try:
            ids.add(_record_id(line))
        except (ValueError, KeyError, TypeError, IndexError):
            break
        taken += len(line)
    return taken


class _Journal:
    """Append-only JSONL records, flushed to the OS in batches."""

    def __init__(self, path: Path, good: int | None = None) -> None:
        self.path = path
        if good is None:
            good = scan_journal(path, IdSet())
        try:
            if path.exists() and path.stat().st_size != good:
                with open(path, "r+b") as f:
                    f.truncate(good)
            self._file = open(path, "a", encoding="utf-8")
        except OSError as exc:
            raise UsageError(
                f"{path}: cannot write ({exc.strerror or exc}); check the folder and permissions"
            ) from None
        self._pending: list[str] = []

    def add(self, record: dict[str, Any]) -> None:
        self._pending.append(_dumps(record))

    @property
    def pending(self) -> int:
        return len(self._pending)

    def flush(self) -> None:
        if self._pending:
            self._file.write("\n".join(self._pending) + "\n")
            self._pending.clear()
        self._file.flush()

    def close(self, *, sync: bool = True) -> None:
        if self._file.closed:
            return
        self.flush()
        if sync:
            os.fsync(self._file.fileno())
        self._file.close()


class ResultSink:
    """Results of one run; `done_ids` lists what earlier runs finished."""

    def __init__(self, output: Path) -> None:
        self.output = output
        self.parquet = output.suffix == ".parquet"
        self._journal_path = journal_path(output) if self.parquet else output
        self._journal: _Journal | None = None
        self._good: int | None = None

    def load_done(self, ids: IdSet) -> None:
        """Add every id already in the output (and, for Parquet, in a journal a crash left) to `ids`."""
        if self.parquet and self.output.exists():
            ids.update(_parquet_ids(self.output))
        # Remembered so that `open` need not read the journal a second time.
        self._good = scan_journal(self._journal_path, ids)

    def open(self) -> None:
        """Open the journal for appending, cutting off a torn last record first."""
        self._journal = _Journal(self._journal_path, self._good)

    def add(self, record: dict[str, Any]) -> None:
        """Queue one result record (flushed by `flush`)."""
        assert self._journal is not None
        self._journal.add(record)

    @property
    def pending(self) -> int:
        """Records queued and not yet flushed."""
        return self._journal.pending if self._journal else 0

    def flush(self) -> None:
        """Hand queued records to the OS: a crash after this loses none of them."""
        if self._journal is not None:
            self._journal.flush()

    def close(self) -> None:
        """Flush, sync, and for Parquet write the final file from the journal."""
        if self._journal is not None:
            self._journal.close()
        if self.parquet and self._journal_path.exists():
            _write_parquet(self.output, self._journal_path)


def _parquet_ids(path: Path) -> Iterator[Any]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
        for batch in pf.iter_batches(batch_size=65_536, columns=["id"]):
            yield from batch.column(0).to_pylist()
    except Exception as exc:  # pyarrow raises several unrelated types for a bad file
        raise UsageError(
            f"{path}: the existing output is not a readable Parquet file ({exc}); move it away or use --restart"
        ) from None


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


def _write_parquet(output: Path, journal: Path) -> None:
    """Merge the existing Parquet output and the journal into a new file, atomically."""
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
                table = pa.Table.from_pylist(chunk)
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


class ErrorLog:
    """The failed rows of the latest run, one JSON object per line, rewritten each run."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._file = open(path, "w", encoding="utf-8")
        except OSError as exc:
            raise UsageError(
                f"{path}: cannot write ({exc.strerror or exc}); check the folder and permissions"
            ) from None
        self.count = 0

    def add(self, record: dict[str, Any]) -> None:
        """Write one failed row (flushed with `flush`)."""
        self._file.write(_dumps(record) + "\n")
        self.count += 1

    def flush(self) -> None:
        """Hand written records to the OS."""
        self._file.flush()

    def close(self) -> None:
        """Flush and close; remove the file when no row failed."""
        if self._file.closed:
            return
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        if self.count == 0:
            self.path.unlink(missing_ok=True)


def open_sink(output: Path) -> ResultSink:
    """A sink for `output`, after checking its folder exists and is writable."""
    folder = output.parent
    if not folder.is_dir():
        raise UsageError(f"{output}: the folder {folder} does not exist; create it first")
    if not os.access(folder, os.W_OK):
        raise UsageError(f"{output}: the folder {folder} is not writable")
    return ResultSink(output)
