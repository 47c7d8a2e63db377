"""What every input format shares: the spec of what to read, the reader's life cycle, and fingerprints.

A format module (`jsonl.py`, `parquet.py`) subclasses `InputReader`: `_iter` streams
`Row`s, `BadRow`s and `DoneRow`s with memory bounded by one line or one record batch,
`estimate_rows` sizes the input for progress, and `files` lists what the fingerprint
covers. The registry in `__init__.py` picks the format by suffix or scheme.
"""

from __future__ import annotations

import hashlib
import os
import weakref
from collections.abc import Container, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar

from hfbatch.errors import InputError
from hfbatch.inputs.rows import BadRow, DoneRow, Row, RowBuilder

if TYPE_CHECKING:
    from hfbatch.jobspec import JobSpec

__all__ = ["HUB_SCHEME", "InputReader", "InputSpec", "check_readable", "file_fingerprint", "input_name", "one_line"]

#: Inputs on the Hub: `hf://datasets/ORG/NAME[@REVISION][/path or glob]`.
HUB_SCHEME = "hf://"

FINGERPRINT_CHUNK = 1 << 20

Item = Row | BadRow | DoneRow


@dataclass(frozen=True, slots=True)
class InputSpec:
    """Which file to read and how its rows become requests."""

    path: Path
    id_column: str | None = None
    prompt_column: str = "prompt"
    template: str | None = None
    keep_columns: tuple[str, ...] = ()
    system: str | None = None
    #: For `hf://` inputs: the Hub, the token's variable, and which split and subset (config) to read.
    hub_url: str | None = None
    api_key_env: str | None = None
    split: str | None = None
    subset: str | None = None

    @classmethod
    def from_job(cls, spec: JobSpec) -> InputSpec:
        """What a job reads."""
        return cls(
            path=spec.input,
            id_column=spec.id_column,
            prompt_column=spec.prompt_column,
            template=spec.template,
            keep_columns=spec.keep_columns,
            system=spec.system,
            hub_url=spec.hub_url,
            api_key_env=spec.api_key_env,
            split=spec.split,
            subset=spec.subset,
        )


class InputReader:
    """A validated input; iterate it (more than once if need be) for Rows, BadRows and DoneRows."""

    format: ClassVar[str]

    def __init__(self, path: Path, *, builder: RowBuilder) -> None:
        self.path = path
        self._builder = builder
        self._live: weakref.WeakSet[Generator[Item, None, None]] = weakref.WeakSet()
        self._closed = False

    def __iter__(self) -> Iterator[Item]:
        """Stream the rows in input order; raises InputError only if the file itself breaks."""
        if self._closed:
            raise ValueError(f"the reader for {self.path} is closed")
        gen = self._iter()
        self._live.add(gen)
        return gen

    def _iter(self) -> Generator[Item, None, None]:
        raise NotImplementedError

    def rows(self, done: Container[Any] | None = None) -> Iterator[Item]:
        """Stream the rows; a row whose id is in `done` comes back as a DoneRow, without being built."""
        self._builder.done = done
        return iter(self)

    def estimate_rows(self) -> int | None:
        """About how many rows the input holds, for progress and ETA; None when it cannot be judged cheaply."""
        return None

    def files(self) -> tuple[Path, ...]:
        """The files the input is read from."""
        return (self.path,)

    def fingerprint(self) -> dict[str, Any]:
        """Identify the input cheaply, so a resume notices when it changed."""
        try:
            return {"files": [file_fingerprint(p) for p in self.files()]}
        except OSError as exc:
            raise InputError(f"{self.path}: cannot be read for its fingerprint ({one_line(exc)})") from exc

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
        return f"{type(self).__name__}({str(self.path)!r})"


def input_name(path: Path) -> str:
    """The input as the user wrote it: a path, or an `hf://` URL (which `Path` folds to `hf:/`)."""
    text = str(path)
    if text.startswith("hf:/") and not text.startswith(HUB_SCHEME):
        return HUB_SCHEME + text[len("hf:/") :]
    return text


def file_fingerprint(path: Path) -> dict[str, Any]:
    """A file's name, size and a hash of its first and last MiB."""
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        digest.update(f.read(FINGERPRINT_CHUNK))
        if size > FINGERPRINT_CHUNK:
            f.seek(max(FINGERPRINT_CHUNK, size - FINGERPRINT_CHUNK))
            digest.update(f.read(FINGERPRINT_CHUNK))
    return {"name": path.name, "size": size, "blake2b": digest.hexdigest()}


def check_readable(path: Path) -> int:
    """Return the file's size; InputError if it cannot be opened for reading."""
    try:
        with open(path, "rb") as f:
            return os.fstat(f.fileno()).st_size
    except PermissionError as exc:
        raise InputError(f"{path}: cannot be read (permission denied); check its permissions") from exc
    except OSError as exc:
        raise InputError(f"{path}: cannot be read ({one_line(exc)})") from exc


def one_line(exc: BaseException) -> str:
    """Make an exception's text fit one line of a message."""
    return " ".join(str(exc).split())[:300] or type(exc).__name__
