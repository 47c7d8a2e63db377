"""The limits learned for each (API base, model, provider), kept between runs as a warm start.

A nightly job should not relearn every provider's capacity from scratch, nor open with
a burst of 429s: what a run learned is written to `$XDG_CACHE_HOME/hfbatch/learned-limits.json`
(or `~/.cache/hfbatch/`) when it ends, atomically, and read when the next run starts.
Entries older than a day are ignored (`hfbatch.capacity.STALE_AFTER`); a damaged file is
ignored too: it is only a starting point, never a reason to fail.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from pathlib import Path

from hfbatch.capacity import LearnedLimits, dump_learned, load_learned
from hfbatch.outputs.atomic import write_json_atomic

__all__ = ["load_state", "save_state", "state_path"]

_FILE = "learned-limits.json"


def state_path() -> Path:
    """Where learned limits are kept: under $XDG_CACHE_HOME, else ~/.cache."""
    base = os.environ.get("XDG_CACHE_HOME")
    root = Path(base) if base else Path.home() / ".cache"
    return root / "hfbatch" / _FILE


def _key(api_base: str, model: str, provider: str) -> str:
    return f"{api_base}|{model}|{provider}"


def _read(path: Path) -> dict[str, LearnedLimits]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return load_learned(data, time.time())


def load_state(api_base: str, model: str, providers: list[str], path: Path | None = None) -> dict[str, LearnedLimits]:
    """The fresh limits learned earlier for these providers of `model` on `api_base`, by provider."""
    known = _read(path or state_path())
    found = {p: known.get(_key(api_base, model, p)) for p in providers}
    return {p: lim for p, lim in found.items() if lim is not None}


def save_state(api_base: str, model: str, learned: Mapping[str, LearnedLimits], path: Path | None = None) -> None:
    """Merge what this run learned into the state file; a file that cannot be written is skipped."""
    path = path or state_path()
    entries = _read(path)
    for provider, lim in learned.items():
        if lim.concurrency is not None or lim.rate is not None or lim.token_rate is not None:
            entries[_key(api_base, model, provider)] = lim
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, dump_learned(entries))
    except OSError:
        return  # a read-only home or a full disk: the next run simply starts cold
