"""What a run learned about each provider's limits, in a form a state file can keep between runs.

The caller owns the file; this module only turns `LearnedLimits` into plain JSON-ready
dicts and back, dropping entries that are malformed or older than `STALE_AFTER`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["STALE_AFTER", "LearnedLimits", "dump_learned", "load_learned"]

#: Limits learned longer ago than this (seconds) are ignored: providers change their capacity.
STALE_AFTER = 24 * 3600.0
_VERSION = 1


@dataclass(frozen=True, slots=True)
class LearnedLimits:
    """One provider's learned in-flight cap, request rate and token rate (per second), and when (Unix time)."""

    concurrency: int | None = None
    rate: float | None = None
    token_rate: float | None = None
    learned_at: float = 0.0

    def is_stale(self, now: float, stale_after: float = STALE_AFTER) -> bool:
        """True when learned more than `stale_after` seconds before `now` (or in the future)."""
        return not (now - stale_after <= self.learned_at <= now + 60.0)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "concurrency": self.concurrency,
            "rate": self.rate,
            "token_rate": self.token_rate,
            "learned_at": self.learned_at,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LearnedLimits:
        """Read `to_dict`'s output; raises ValueError on anything else."""
        return cls(
            concurrency=_positive_int(data.get("concurrency")),
            rate=_positive_float(data.get("rate")),
            token_rate=_positive_float(data.get("token_rate")),
            learned_at=_time(data.get("learned_at")),
        )


def _positive_int(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"expected a positive integer or null, got {value!r}")
    return value


def _positive_float(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"expected a positive number or null, got {value!r}")
    return float(value)


def _time(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"expected a Unix time, got {value!r}")
    return float(value)


def dump_learned(limits: Mapping[str, LearnedLimits]) -> dict[str, Any]:
    """A JSON-ready dict of learned limits per key (for example `model:provider`)."""
    return {"version": _VERSION, "providers": {key: lim.to_dict() for key, lim in sorted(limits.items())}}


def load_learned(data: Any, now: float, stale_after: float = STALE_AFTER) -> dict[str, LearnedLimits]:
    """The fresh, well-formed entries of `dump_learned`'s output; anything else is skipped, never raised."""
    if not isinstance(data, Mapping) or data.get("version") != _VERSION:
        return {}
    providers = data.get("providers")
    if not isinstance(providers, Mapping):
        return {}
    out: dict[str, LearnedLimits] = {}
    for key, entry in providers.items():
        if not isinstance(key, str) or not isinstance(entry, Mapping):
            continue
        try:
            lim = LearnedLimits.from_dict(entry)
        except ValueError:
            continue
        if not lim.is_stale(now, stale_after):
            out[key] = lim
    return out
