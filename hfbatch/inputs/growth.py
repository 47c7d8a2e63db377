"""Whether an input only grew since an output was started, so a cron job over a growing file can resume.

The manifest keeps the input's fingerprint (`base.file_fingerprint`: each file's name, size, and a
hash of its first and last MiB). An input grew when:

- a single file (JSONL, or .jsonl.gz with members appended) is longer, and its first `size` bytes
  hash as the whole file did: the same first MiB, and the same last MiB *of that length*, so the
  check reads at most 2 MiB however large the file; a plain JSONL must also have ended in a newline,
  else its last line may have been completed since, and that row changed;
- a folder of Parquet parts holds every old part unchanged, and its new parts sort after them (row
  numbers, the ids of rows without an id column, would shift if a part came before an old one).

Anything else is a change, refused with the reason. Hashing the prefix alone cannot tell an edit
in the middle of a file bigger than 2 MiB from an append; neither could the fingerprint before.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from hfbatch.inputs.base import FINGERPRINT_CHUNK

__all__ = ["input_growth", "prefix_fingerprint"]


def prefix_fingerprint(path: Path, size: int) -> dict[str, Any]:
    """`file_fingerprint` of the file's first `size` bytes, as if it ended there."""
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        digest.update(f.read(min(size, FINGERPRINT_CHUNK)))
        if size > FINGERPRINT_CHUNK:
            f.seek(max(FINGERPRINT_CHUNK, size - FINGERPRINT_CHUNK))
            digest.update(f.read(size - max(FINGERPRINT_CHUNK, size - FINGERPRINT_CHUNK)))
    return {"name": path.name, "size": size, "blake2b": digest.hexdigest()}


def _byte_at(path: Path, offset: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(1)


def _file_grew(old: dict[str, Any], new: dict[str, Any], path: Path) -> str | None:
    """None when `path` (now `new`) starts with exactly the content `old` describes, else why not."""
    size = old.get("size")
    if not isinstance(size, int) or not isinstance(new.get("size"), int):
        return "the input file changed since this output was started"
    if new["size"] < size:
        return f"{path.name} is shorter than when this output was started ({new['size']} bytes, was {size})"
    try:
        if prefix_fingerprint(path, size) != {**old, "name": path.name}:
            return f"{path.name}: its first {size} bytes changed since this output was started (not only appended to)"
        if size and not path.name.lower().endswith(".gz") and _byte_at(path, size - 1) != b"\n":
            return f"{path.name}: its last line had no newline when this output was started, and may have changed"
    except OSError as exc:
        return f"{path.name} cannot be read to compare ({exc.strerror or exc})"
    return None


def input_growth(old: Any, new: dict[str, Any], files: tuple[Path, ...]) -> str | None:
    """None when the input fingerprinted `new` (read from `files`) only grew from `old`; else the reason it changed.

    `old` and `new` are `InputReader.fingerprint()` results; `files` the reader's files in order.
    """
    changed = "the input file changed since this output was started"
    if not isinstance(old, dict) or not isinstance(old.get("files"), list) or not isinstance(new.get("files"), list):
        return changed
    before: list[Any] = old["files"]
    after: list[dict[str, Any]] = new["files"]
    if len(after) != len(files) or not before or not all(isinstance(f, dict) for f in before):
        return changed
    if len(before) == 1 and len(after) == 1 and before[0].get("name") == after[0].get("name"):
        if before[0] == after[0]:
            return None
        return _file_grew(before[0], after[0], files[0])
    by_name = {f.get("name"): (f, p) for f, p in zip(after, files, strict=True)}
    for f in before:
        name = f.get("name")
        if name not in by_name:
            return f"part {name} is gone from the input since this output was started"
        if by_name[name][0] != f:
            return f"part {name} changed since this output was started (an old part must stay as it was)"
    last_old = max(str(f.get("name")) for f in before)
    added = sorted(str(n) for n in by_name if n not in {f.get("name") for f in before})
    early = [n for n in added if n < last_old]
    if early:
        return (
            f"new part {early[0]} sorts before the old part {last_old}, which would shift row numbers; "
            "name new parts so they sort after the old ones"
        )
    return None
