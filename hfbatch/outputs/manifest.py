"""Beside the output: the manifest that makes resuming safe, and the lock that makes one run per output."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from hfbatch.errors import LockedError, UsageError
from hfbatch.outputs.atomic import write_json_atomic

__all__ = ["check_manifest", "hold_lock", "manifest_path", "write_manifest"]

MANIFEST_VERSION = 1


def manifest_path(output: Path) -> Path:
    """Where the manifest of `output` lives."""
    return output.with_name(output.name + ".manifest.json")


def lock_path(output: Path) -> Path:
    """Where the lock of `output` lives."""
    return output.with_name(output.name + ".lock")


def _describe(value: Any) -> str:
    return "unset" if value is None else repr(value)


def check_manifest(
    output: Path,
    settings: dict[str, Any],
    fingerprint: dict[str, Any],
    *,
    force: bool,
    input_grew: Callable[[Any], str | None] | None = None,
) -> bool:
    """Check that resuming `output` with these settings is sound; True when there is something to resume.

    Raises UsageError naming what changed, unless `force`. An input whose fingerprint differs is
    accepted when `input_grew(old_fingerprint)` returns None (it only grew); else its reason is given.
    """
    path = manifest_path(output)
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return False
    except (OSError, ValueError) as exc:
        if force:
            return True
        raise UsageError(f"{path}: unreadable manifest ({exc}); use --restart to start over or --force") from None
    if force:
        return True
    changes = []
    old_settings = old.get("settings", {})
    for key in sorted(set(old_settings) | set(settings)):
        if old_settings.get(key) != settings.get(key):
            changes.append(f"{key} was {_describe(old_settings.get(key))}, now {_describe(settings.get(key))}")
    if old.get("input") != fingerprint:
        why: str | None = "the input file changed since this output was started"
        if input_grew is not None:
            why = input_grew(old.get("input"))
        if why is not None:
            changes.append(why)
    if changes:
        raise UsageError(
            f"{output} was started with other settings: {'; '.join(changes)}. "
            "Use --restart to start over, or --force to add to it anyway"
        )
    return True


def write_manifest(output: Path, settings: dict[str, Any], fingerprint: dict[str, Any]) -> None:
    """Record the settings and input fingerprint the output is made with."""
    write_json_atomic(
        manifest_path(output),
        {"version": MANIFEST_VERSION, "settings": settings, "input": fingerprint, "written_at": time.time()},
    )


@contextlib.contextmanager
def hold_lock(output: Path) -> Iterator[None]:
    """Hold the output's lock for the run; raise LockedError naming the holder's pid.

    flock is released by the kernel when its holder dies, so a lock left by a killed
    run is simply taken over. The lock file is removed when the lock is given back; a
    process that opened it just before is caught by comparing inodes after flock, and
    tries again on the new file.
    """
    path = lock_path(output)
    while True:
        fd = _open_lock(path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raw = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            os.close(fd)
            pid = int(raw) if raw.isdigit() else None
            holder = f"pid {pid}" if pid else "another process"
            raise LockedError(
                f"{output} is being written by another hfbatch run ({holder}); wait for it", pid
            ) from None
        if _same_file(fd, path):
            break
        os.close(fd)  # the holder removed this file as we opened it: lock the one there now
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        with contextlib.suppress(OSError):
            path.unlink()
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _open_lock(path: Path) -> int:
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise UsageError(f"{path}: cannot create the lock file ({exc.strerror or exc})") from None


def _same_file(fd: int, path: Path) -> bool:
    """True when `path` still names the file open as `fd`."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    own = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (own.st_dev, own.st_ino)


def remove_outputs(paths: list[Path]) -> None:
    """Delete an earlier run's files, for --restart."""
    for p in paths:
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
