"""The append-only JSONL journal every output format writes through, and the scan that reads it back.

A journal holds one whole record per line, newline last, handed to the OS in the
event-loop tick its result arrived in, so a crash (even kill -9) loses only requests in
flight and leaves whole lines plus at most one torn last line. The next run scans it to
learn which row ids are finished and cuts the torn tail off before appending; blank
lines are skipped, and any other line that is not a record stops the run (exit 2) naming
the line: cutting there would throw away every result after it. How a finished id is
found in a line is the format's `IdScanner`: each format's resume invariant is written
beside its scanner.

Lone UTF-16 surrogates (valid in JSON, not in UTF-8) can only sit inside JSON strings,
so they are written as their `\\udcXX` escapes (`errors="backslashreplace"`) and read
back as the same strings.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hfbatch.errors import UsageError
from hfbatch.idset import IdSet
from hfbatch.json_codec import compact_encoder

__all__ = ["IdScanner", "Journal", "dumps", "scan_journal"]

_SCAN_BLOCK = 4 << 20

# default=str: kept Parquet columns may hold dates or decimals, which JSON has no type for.
# Built once: json.dumps with any option set builds a new encoder on every call.
dumps = compact_encoder((", ", ": "), default=str)


@dataclass(frozen=True)
class IdScanner:
    """How a format's journal line names its row id: under `key`, right after what `lead` matches.

    `lead` is a regex for the bytes from the start of a line up to the id's value (for
    hfbatch's own records `{"id":`, or `{"id": ` as earlier versions wrote them). Blocks
    whose every line matches it with a plain string or integer id are read by one regex at
    C speed (a resume over a million done rows reads its output in about a second); any
    other line is parsed as JSON.
    """

    key: str = "id"
    lead: bytes = rb'\{"id": ?'
    _strings: re.Pattern[bytes] = field(init=False, repr=False, compare=False)
    _ints: re.Pattern[bytes] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # A newline is put before each block, so every line, the first too, follows one.
        object.__setattr__(self, "_strings", re.compile(rb"\n" + self.lead + rb'"([^"\\\n]*)"[,}]'))
        object.__setattr__(self, "_ints", re.compile(rb"\n" + self.lead + rb"(-?[0-9]+)[,}]"))

    def scan_block(self, block: bytes, ids: IdSet) -> int | None:
        """Add the ids of a block of whole lines; return None, or the 0-based line in it that is not a record."""
        lines = block.count(b"\n")
        if (found := self._strings.findall(b"\n" + block)) and len(found) == lines:
            ids.update_strings(map(bytes.decode, found))
            return None
        if (found := self._ints.findall(b"\n" + block)) and len(found) == lines:
            ids.update(map(int, found))
            return None
        for number, line in enumerate(block.splitlines()):
            if not line.strip():
                continue
            try:
                ids.add(self.row_id(line))
            except (ValueError, KeyError, TypeError, IndexError, RecursionError):
                return number
        return None

    def row_id(self, line: bytes) -> Any:
        """The row id of one whole line; raises ValueError, KeyError or TypeError when it is not a record."""
        record = json.loads(line)
        return record[self.key]


def scan_journal(path: Path, ids: IdSet, scanner: IdScanner) -> int:
    """Add the id of every whole record in a journal to `ids`; return the byte length they fill.

    Records are written whole, newline last, so a last line without its newline is a torn
    write (its length is not counted: the caller cuts it off). A whole line that is not a
    record is damage this run must not paper over: UsageError naming the line.
    """
    good = 0
    lineno = 0
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
            bad = scanner.scan_block(block, ids)
            if bad is not None:
                raise UsageError(
                    f"{path}: line {lineno + bad + 1} is not a whole result record; the output was changed by "
                    "something other than hfbatch. Fix or delete that line (or move the file away) and rerun"
                )
            good += len(block)
            lineno += block.count(b"\n")
    return good


class Journal:
    """Append-only JSONL records, handed to the OS in batches."""

    def __init__(self, path: Path, good: int) -> None:
        self.path = path
        try:
            if path.exists() and path.stat().st_size != good:
                with open(path, "r+b") as f:
                    f.truncate(good)
            self._file = open(path, "a", encoding="utf-8", errors="backslashreplace")
        except OSError as exc:
            raise UsageError(
                f"{path}: cannot write ({exc.strerror or exc}); check the folder and permissions"
            ) from None
        self._pending: list[str] = []

    def add(self, line: str) -> None:
        """Queue one encoded record (no newline)."""
        self._pending.append(line)

    @property
    def pending(self) -> int:
        """Records queued and not yet handed to the OS."""
        return len(self._pending)

    def flush(self) -> None:
        """Hand queued records to the OS: a crash after this loses none of them."""
        if self._pending:
            self._file.write("\n".join(self._pending) + "\n")
            self._pending.clear()
        self._file.flush()

    def close(self, *, sync: bool = True) -> None:
        """Flush, optionally fsync, and close."""
        if self._file.closed:
            return
        try:
            self.flush()
            if sync:
                os.fsync(self._file.fileno())
        finally:
            # A write that failed (disk full) is raised; the file is closed all the same.
            with contextlib.suppress(OSError):
                self._file.close()
