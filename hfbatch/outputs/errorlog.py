"""The errors file: the rows that failed in the latest run, one JSON object per line."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hfbatch.errors import UsageError

__all__ = ["ErrorLog"]


class ErrorLog:
    """The failed rows of the latest run, rewritten each run; removed when no row failed."""

    def __init__(self, path: Path, encode: Callable[[dict[str, Any]], str]) -> None:
        self.path = path
        self._encode = encode
        try:
            # Lone surrogates in ids or messages are written as their JSON escapes (see journal.py).
            self._file = open(path, "w", encoding="utf-8", errors="backslashreplace")
        except OSError as exc:
            raise UsageError(
                f"{path}: cannot write ({exc.strerror or exc}); check the folder and permissions"
            ) from None
        self.count = 0

    def add(self, record: dict[str, Any]) -> None:
        """Write one failed row (handed to the OS by `flush`)."""
        self._file.write(self._encode(record) + "\n")
        self.count += 1

    def flush(self) -> None:
        """Hand written records to the OS."""
        self._file.flush()

    def close(self) -> None:
        """Flush, sync and close; remove the file when no row failed."""
        if self._file.closed:
            return
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
        finally:
            # A write that failed (disk full) is raised; the file is closed all the same.
            with contextlib.suppress(OSError):
                self._file.close()
        if self.count == 0:
            self.path.unlink(missing_ok=True)
