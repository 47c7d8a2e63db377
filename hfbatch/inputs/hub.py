"""`hf://` inputs: a Hub dataset's Parquet or JSONL files, streamed through huggingface_hub's `HfFileSystem`.

`hf://datasets/ORG/NAME[@REVISION][/path or glob]`, with `--split` and `--subset` choosing among the
repo's files as the Hub's viewer does (`hub_layout.py`). The revision (default `main`) is resolved
to a commit sha once, when the input is opened, and every read is pinned to it
(`datasets/ORG/NAME@SHA/...`), so a run reads one version however the repo moves meanwhile. The
fingerprint is that sha plus the files read: a resume notices an updated dataset.

Parquet files are read a row group at a time over ranged reads of 1 MiB blocks, without
pyarrow's pre-buffering (`ParquetReader`); JSONL files stream in one request each, line by line.
A thread reads ahead (`_read_ahead`), so a slow Hub read does not hold up the run's event loop
while rows are buffered. Tokens follow hfbatch's rules (`hubfiles.HubAccess`).
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import queue
import re
import threading
import urllib.parse
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePath, PurePosixPath
from typing import Any

from hfbatch.errors import AuthenticationError, HfbatchError, InputError, RunError
from hfbatch.hubfiles import HubAccess, describe_hub_error, hub_errors, require_hub
from hfbatch.inputs.base import HUB_SCHEME, InputReader, InputSpec, input_name
from hfbatch.inputs.hub_layout import select_files
from hfbatch.inputs.jsonl import JSONL_READ_BUFFER, JsonlReader, check_keep_columns
from hfbatch.inputs.parquet import PARQUET_READ_BUFFER, ParquetReader, check_parts
from hfbatch.inputs.rows import BadRow, DoneRow, Row, RowBuilder
from hfbatch.template import Template

__all__ = ["HubLocation", "open_hub", "parse_hub_url"]

#: Bytes per ranged read of a Parquet file (the `HfFileSystem` block size).
HUB_BLOCK_SIZE = 1 << 20
#: Rows handed from the read-ahead thread at a time, and chunks buffered ahead of the run.
READ_AHEAD_CHUNK = 256
READ_AHEAD_CHUNKS = 16
#: Bytes of the first JSONL file read to estimate the rows of all of them.
_ESTIMATE_SAMPLE = 1 << 20
_URL = re.compile(r"hf://datasets/([^/@]+/[^/@]+)(?:@(refs/(?:convert|pr)/[^/]+|[^/]+))?(?:/(.*))?")
_GLOB = re.compile(r"[*?\[]")

Item = Row | BadRow | DoneRow


@dataclass(frozen=True, slots=True)
class HubLocation:
    """A parsed `hf://datasets/...` input: the repo, the revision asked for, and a path or glob in it."""

    url: str
    repo: str
    revision: str | None
    path: str | None


def parse_hub_url(url: str) -> HubLocation:
    """Split an `hf://datasets/ORG/NAME[@REVISION][/path]` URL; InputError saying the shape when it is not one."""
    m = _URL.fullmatch(url)
    if m is None:
        kind = url.removeprefix(HUB_SCHEME).split("/")[0]
        hint = " (hfbatch reads datasets only)" if kind in ("models", "spaces") else ""
        raise InputError(f"{url}: not a Hub dataset URL{hint}; write hf://datasets/ORG/NAME[@REVISION][/path or glob]")
    repo, revision, path = m.groups()
    path = (path or "").strip("/") or None
    return HubLocation(url, repo, urllib.parse.unquote(revision) if revision else None, path)


class _HubReading:
    """What both Hub readers share: the location, the pinned commit, and the Hub's errors in hfbatch's words."""

    url: str
    _access: HubAccess
    _fs: Any
    _sha: str
    _names: tuple[str, ...]

    def fingerprint(self) -> dict[str, Any]:
        """The commit read and the files chosen: an updated dataset, or another split, is noticed on resume."""
        return {"hub": self.url, "commit": self._sha, "files": list(self._names)}

    def files(self) -> tuple[Path, ...]:
        """No local files."""
        return ()

    def _guarded(self, items: Iterator[Item]) -> Generator[Item, None, None]:
        """`items`, with a dropped connection (the HTTP client's own errors, not OSErrors) said as an InputError."""
        try:
            yield from items
        except hub_errors() as exc:
            raise self._stream_failed(self.url, "part-way", exc) from exc

    def _stream_failed(self, part: object, where: str, exc: BaseException) -> InputError:
        label = str(part) if str(part).startswith(HUB_SCHEME) else HUB_SCHEME + str(part)
        if isinstance(exc, hub_errors()):
            problem = describe_hub_error(exc, self._access)
            return InputError(f"{label}: reading it from the Hub failed {where} ({problem.detail}); rerun to resume")
        return InputError(f"{label}: cannot be read {where} ({exc}); the file on the Hub is corrupt or truncated")


class HubParquetReader(_HubReading, ParquetReader):
    """Parquet files of a Hub dataset, read a row group at a time over ranged reads."""

    def __init__(self, location: HubLocation, access: HubAccess, fs: Any, sha: str, names: tuple[str, ...], **kw: Any):
        super().__init__(Path(location.url), **kw)
        self.url, self._access, self._fs, self._sha, self._names = location.url, access, fs, sha, names
        self.rows_total: int | None = None

    def estimate_rows(self) -> int | None:
        """The exact row count, from the footers read when the input was opened."""
        return self.rows_total

    @contextlib.contextmanager
    def _open_part(self, part: PurePath) -> Iterator[Any]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        with _hub_call(self.url, self._access):
            f = self._fs.open(str(part), "rb", block_size=HUB_BLOCK_SIZE)
        try:
            try:
                pf = pq.ParquetFile(f, pre_buffer=False, buffer_size=PARQUET_READ_BUFFER)
            except (pa.ArrowException, ValueError, *hub_errors()) as exc:
                raise self._stream_failed(part, "as Parquet", exc) from exc
            try:
                yield pf
            finally:
                pf.close()
        finally:
            f.close()

    def _read_failed(self, part: PurePath, first: int, size: int, group: int, exc: Exception) -> InputError:
        return self._stream_failed(part, f"at rows {first}-{first + size - 1} (row group {group})", exc)

    def _iter(self) -> Generator[Item, None, None]:
        yield from _read_ahead(self._guarded(super()._iter()))


class HubJsonlReader(_HubReading, JsonlReader):
    """JSONL files (optionally gzipped) of a Hub dataset, each streamed in one request."""

    def __init__(self, location: HubLocation, access: HubAccess, fs: Any, sha: str, parts: dict[str, int], **kw: Any):
        super().__init__(Path(location.url), gzipped=False, **kw)
        self.url, self._access, self._fs, self._sha = location.url, access, fs, sha
        self._parts = parts
        self._names = tuple(_relative(p, sha) for p in parts)

    def estimate_rows(self) -> int | None:
        """About how many rows the files hold, judged from their sizes and the first MiB (None when gzipped)."""
        if any(p.endswith(".gz") for p in self._parts):
            return None
        first = next(iter(self._parts))
        with _hub_call(self.url, self._access), self._fs.open(first, "rb", block_size=0) as f:
            head = f.read(_ESTIMATE_SAMPLE)
        total = sum(self._parts.values())
        lines = head.count(b"\n") + (not head.endswith(b"\n") and len(head) == total)
        return int(lines) if len(head) == total or not lines else round(total * lines / len(head))

    @contextlib.contextmanager
    def open_stream(self, part: str) -> Iterator[io.BufferedReader]:
        """One file's bytes, as a buffered stream of lines (gunzipped when it ends in .gz)."""
        with _hub_call(self.url, self._access):
            raw = self._fs.open(part, "rb", block_size=0)
        with raw:
            stream: Any = gzip.GzipFile(fileobj=raw, mode="rb") if part.endswith(".gz") else raw
            with io.BufferedReader(stream, JSONL_READ_BUFFER) as buffered:
                yield buffered

    def _read_failed(self, label: object, lineno: int, exc: BaseException) -> InputError:
        return self._stream_failed(label, f"after line {lineno}", exc)

    def _iter(self) -> Generator[Item, None, None]:
        yield from _read_ahead(self._guarded(self._all_files()))

    def _all_files(self) -> Generator[Item, None, None]:
        index = 0
        several = len(self._parts) > 1
        for part in self._parts:
            name = PurePosixPath(part).name
            with self.open_stream(part) as stream:
                index = yield from self._stream_rows(stream, index, f"{name} line" if several else "line", part)


def open_hub(path: Path, spec: InputSpec, builder: RowBuilder, template: Template | None) -> InputReader:
    """Resolve an `hf://` input to a commit and its files, check them, and return a reader; InputError if unusable."""
    location = parse_hub_url(input_name(path))
    url = location.url
    require_hub(f"the input {url}")
    access = HubAccess.of(spec.hub_url, spec.api_key_env)
    with _hub_call(url, access):
        fs = access.fs()
        sha: str = access.api().dataset_info(location.repo, revision=location.revision).sha
        root = f"datasets/{location.repo}@{sha}"
        sizes = _listing(fs, root, location.path)
        readme = None
        if location.path is None and "README.md" in sizes:
            readme = fs.cat_file(f"{root}/README.md").decode("utf-8", "replace")
    fmt, chosen = select_files(
        list(sizes), readme=readme, split=spec.split, subset=spec.subset, explicit=location.path is not None, where=url
    )
    names = tuple(chosen)
    if fmt == "parquet":
        parts = tuple(PurePosixPath(f"{root}/{p}") for p in chosen)
        reader = HubParquetReader(location, access, fs, sha, names, builder=builder, parts=parts, columns=())
        columns, rows = check_parts(url, parts, reader._open_part, spec, template)
        reader._columns, reader.rows_total = columns, rows
        return reader
    jsonl = HubJsonlReader(location, access, fs, sha, {f"{root}/{p}": sizes[p] for p in chosen}, builder=builder)
    with _hub_call(url, access):  # a streamed file is asked for when first read
        _check_jsonl_head(jsonl, spec)
    return jsonl


def _listing(fs: Any, root: str, path: str | None) -> dict[str, int]:
    """The repo's files (or those a path or glob names), repo-relative, with their sizes."""
    if path is None:
        found = fs.find(root, detail=True)
    elif _GLOB.search(path):
        found = fs.glob(f"{root}/{path}", detail=True)
    else:
        info = fs.info(f"{root}/{path}")
        found = fs.find(info["name"], detail=True) if info["type"] == "directory" else {info["name"]: info}
    prefix = root + "/"
    return {
        name.removeprefix(prefix): int(info.get("size") or 0)
        for name, info in sorted(found.items())
        if info.get("type") == "file"
    }


def _relative(part: str, sha: str) -> str:
    return part.split(f"@{sha}/", 1)[-1]


def _check_jsonl_head(reader: HubJsonlReader, spec: InputSpec) -> None:
    """InputError unless the first file starts with a JSON object (and has the columns to keep)."""
    first = next(iter(reader._parts))
    with reader.open_stream(first) as stream:
        for raw in stream:
            if raw.strip():
                try:
                    ok = type(json.loads(raw.decode("utf-8-sig"))) is dict
                except (ValueError, RecursionError):
                    ok = False
                if not ok:
                    start = raw.decode("utf-8", "replace").strip()[:40]
                    raise InputError(
                        f"{first}: does not look like JSONL (line 1 starts {start!r}); each line must be one "
                        'JSON object, like {"id": 1, "prompt": "..."}'
                    )
                break
    if spec.keep_columns:
        with reader.open_stream(first) as stream:
            check_keep_columns(first, stream, spec.keep_columns)


@contextlib.contextmanager
def _hub_call(url: str, access: HubAccess) -> Iterator[None]:
    """Turn huggingface_hub's errors into hfbatch's: a missing or gated dataset, a refused token, a Hub down."""
    try:
        yield
    except HfbatchError:
        raise
    except _failures() as exc:
        problem = describe_hub_error(exc, access)
        where = f"{url}: "
        if problem.kind == "auth":
            raise AuthenticationError(
                f"the Hub at {access.endpoint} refused the token reading {url}; {access.token_hint()}", status=401
            ) from None
        if problem.kind == "unavailable":
            raise RunError(
                f"{where}the Hub at {access.endpoint} cannot be reached or is failing ({problem.detail}); "
                "try again later"
            ) from None
        if problem.kind == "gated":
            fix = "accept its conditions on its Hub page with the account of your token"
        elif problem.kind == "forbidden":
            fix = "the token may not read it; use a token with read access"
        elif problem.kind == "missing":
            fix = "check the name, revision and path (a private dataset needs a token that can read it)"
        else:
            fix = "check the URL"
        raise InputError(f"{where}{problem.detail}; {fix}") from None


def _failures() -> tuple[type[BaseException], ...]:
    return (*hub_errors(), FileNotFoundError)


def _read_ahead(items: Iterator[Item]) -> Generator[Item, None, None]:
    """Yield `items`, read by a thread up to READ_AHEAD_CHUNKS chunks ahead; its errors come out here."""
    chunks: queue.Queue[list[Item] | BaseException | None] = queue.Queue(maxsize=READ_AHEAD_CHUNKS)
    stop = threading.Event()

    def produce() -> None:
        chunk: list[Item] = []
        try:
            for item in items:
                chunk.append(item)
                if len(chunk) >= READ_AHEAD_CHUNK:
                    chunks.put(chunk)
                    chunk = []
                    if stop.is_set():
                        return
            chunks.put(chunk)
            chunks.put(None)
        except BaseException as exc:  # handed to the consumer, which raises it in the run
            chunks.put(exc)
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=produce, name="hfbatch-hub-read", daemon=True)
    thread.start()
    try:
        while (got := chunks.get()) is not None:
            if isinstance(got, BaseException):
                raise got
            yield from got
    finally:
        stop.set()
        # Make room so a producer blocked on a full queue sees `stop` and ends.
        with contextlib.suppress(queue.Empty):
            while True:
                chunks.get_nowait()
