"""JSONL input, optionally gzipped: one JSON object per line, read line by line.

A line whose leading id an earlier run finished is not parsed again (`_leading_id`),
which keeps a resume over a million done rows about as cheap as reading the file.
"""

from __future__ import annotations

import codecs
import difflib
import gzip
import io
import json
import re
import zlib
from collections.abc import Callable, Container, Generator
from pathlib import Path
from typing import Any, BinaryIO

from hfbatch.errors import InputError
from hfbatch.inputs.base import InputReader, check_readable, one_line
from hfbatch.inputs.rows import BadRow, DoneRow, Row, RowBuilder, kind_of
from hfbatch.json_codec import loads_text

__all__ = ["JsonlReader", "check_keep_columns", "open_jsonl"]

_SAMPLE_FOR_ESTIMATE = 4 << 20
JSONL_READ_BUFFER = 1 << 20
# How much of a .jsonl is looked at for binary content, and how many lines for JSON objects.
SNIFF_BYTES = 64 * 1024
SNIFF_LINES = 5
# A first line longer than this is not parsed while sniffing, so a huge single-line file
# (a JSON array, say) is not read whole just to be rejected.
SNIFF_LINE_LIMIT = 8 << 20
# --keep-columns are looked for in this many rows (and bytes) at most before a run starts.
KEEP_SNIFF_LINES = 1000
KEEP_SNIFF_BYTES = 4 << 20
_SHOWN_COLUMNS = 20
_GZIP_MAGIC = b"\x1f\x8b"


class JsonlReader(InputReader):
    """A checked .jsonl or .jsonl.gz file."""

    format = "jsonl"

    def __init__(self, path: Path, *, builder: RowBuilder, gzipped: bool) -> None:
        super().__init__(path, builder=builder)
        self._gzipped = gzipped

    def estimate_rows(self) -> int | None:
        """About how many rows the file holds: exact up to 4 MiB, else judged from its size and first 4 MiB.

        A resumed run thus does not read its input twice. A gzipped input is not judged (None).
        """
        if self._gzipped:
            return None
        size = self.path.stat().st_size
        with open(self.path, "rb") as f:
            head = f.read(_SAMPLE_FOR_ESTIMATE)
        lines = head.count(b"\n") + (not head.endswith(b"\n") and len(head) == size)
        if len(head) == size or not lines:
            return lines
        return round(size * lines / len(head))

    def _iter(self) -> Generator[Row | BadRow | DoneRow, None, None]:
        try:
            stream = _open_jsonl(self.path, self._gzipped)
        except OSError as exc:
            raise InputError(f"{self.path}: cannot be opened ({one_line(exc)})") from exc
        with stream:
            yield from self._stream_rows(stream, 0, "line", self.path)

    def _stream_rows(
        self, stream: BinaryIO, index: int, where: str, label: object
    ) -> Generator[Row | BadRow | DoneRow, None, int]:
        """The rows of one stream of lines, numbered from `index` and located as f"{where} N"; the next index."""
        build = self._builder.build
        loads = loads_text
        # A line whose leading id is already done is not parsed again: it was a valid row when it was
        # done, and the manifest checks the input has not changed since. This keeps a resume cheap.
        done: Container[Any] = self._builder.done or ()
        leading_id = _leading_id_pattern(self._builder.leading_id_key).match if done else None
        prefix = b"{" + json.dumps(self._builder.leading_id_key).encode() + b': "'
        lineno = 0
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
                    if key is not None and key in done:
                        yield DoneRow(index, key)
                        index += 1
                        continue
                try:
                    obj = loads(raw.decode())
                except UnicodeDecodeError:
                    item = BadRow(index, f"{where} {lineno}", "line is not valid UTF-8; save the file as UTF-8")
                except json.JSONDecodeError as exc:
                    item = BadRow(index, f"{where} {lineno}", _json_reason(exc))
                except (ValueError, RecursionError) as exc:
                    # Integers past Python's digit limit, or nesting deeper than the stack.
                    reason = f"JSON cannot be read ({one_line(exc)})"
                    item = BadRow(index, f"{where} {lineno}", reason)
                else:
                    if type(obj) is dict:
                        item = build(obj, index, where, lineno)
                    else:
                        reason = f"line is {kind_of(obj)}, not a JSON object; write each row as {{...}}"
                        item = BadRow(index, f"{where} {lineno}", reason)
                yield item
                index += 1
        except (OSError, EOFError, zlib.error) as exc:
            raise self._read_failed(label, lineno, exc) from exc
        return index

    def _read_failed(self, label: object, lineno: int, exc: BaseException) -> InputError:
        """The error for a stream that broke after `lineno` lines."""
        return InputError(
            f"{label}: reading failed after line {lineno} ({one_line(exc)}); "
            "the file is truncated or corrupt, so re-create or re-download it"
        )


def open_jsonl(path: Path, builder: RowBuilder, *, keep_columns: tuple[str, ...] = ()) -> JsonlReader:
    """Check a JSONL file looks like JSONL (and has the columns to keep); return its reader; InputError if not."""
    gzipped = path.name.lower().endswith(".gz")
    _check_jsonl(path, gzipped)
    if keep_columns:
        _check_keep_columns(path, gzipped, keep_columns)
    return JsonlReader(path, builder=builder, gzipped=gzipped)


def _check_keep_columns(path: Path, gzipped: bool, keep: tuple[str, ...]) -> None:
    """InputError when a column to keep is in none of the first rows: a typo must not give an all-null column."""
    with _open_jsonl(path, gzipped) as stream:
        check_keep_columns(path, stream, keep)


def check_keep_columns(label: object, stream: BinaryIO, keep: tuple[str, ...]) -> None:
    """InputError when a column to keep is in none of the first rows of `stream` (JSONL lines)."""
    wanted = set(keep)
    seen: dict[str, None] = {}
    read = lineno = 0
    for lineno, raw in enumerate(stream):
        read += len(raw)
        try:
            obj = json.loads(raw.decode("utf-8-sig" if lineno == 0 else "utf-8"))
        except (ValueError, RecursionError):
            obj = None  # a bad row is reported when the run reaches it
        if type(obj) is dict:
            seen.update(dict.fromkeys(obj))
            if wanted <= seen.keys():
                return
        if lineno + 1 >= KEEP_SNIFF_LINES or read >= KEEP_SNIFF_BYTES:
            break
    lacking = [c for c in keep if c not in seen]
    names = list(seen)
    shown = ", ".join(names[:_SHOWN_COLUMNS]) + (", ..." if len(names) > _SHOWN_COLUMNS else "")
    close = [m for c in lacking for m in difflib.get_close_matches(c, names, n=1)]
    hint = f" (did you mean {', '.join(map(repr, close))}?)" if close else ""
    raise InputError(
        f"{label}: --keep-columns names {', '.join(map(repr, lacking))}, which no row has in the first "
        f"{lineno + 1} lines{hint} (columns seen: {shown or 'none'}); fix --keep-columns"
    )


def _open_jsonl(path: Path, gzipped: bool) -> BinaryIO:
    if gzipped:
        # GzipFile.readline is Python code per call; a C buffer in front reads lines ~12% faster.
        return io.BufferedReader(gzip.GzipFile(path, "rb"), JSONL_READ_BUFFER)
    return open(path, "rb", buffering=JSONL_READ_BUFFER)


def _check_jsonl(path: Path, gzipped: bool) -> None:
    if check_readable(path) == 0:
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
        raise InputError(f"{path}: is not valid gzip ({one_line(exc)}); re-create it with gzip") from exc
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
