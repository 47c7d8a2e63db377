"""Reading a provider's rate-limit headers into a `RateHint`, so pacing can start before a 429.

Understood: OpenAI-style `x-ratelimit-{limit,remaining,reset}-{requests,tokens}` (resets as Go
durations such as "1s", "6m0s", "20ms", or plain seconds), the generic `x-ratelimit-limit`,
`-remaining`, `-reset` and the IETF draft's `ratelimit-limit`, `-remaining`, `-reset` (requests;
a reset above ~1e9 is a Unix time), plus `retry-after-ms` / `Retry-After`.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass

from hfbatch.http_errors import parse_retry_after

__all__ = ["RateHint", "hint_of", "parse_duration", "parse_ratelimit_headers"]

# A reset this large is a Unix timestamp, not a delay (GitHub-style `x-ratelimit-reset`).
_EPOCH_THRESHOLD = 1e9
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(h|ms|m|s|us|µs|ns)")


@dataclass(frozen=True, slots=True)
class RateHint:
    """What one reply's headers said about the provider's request and token budgets (seconds for resets)."""

    limit_requests: int | None = None
    remaining_requests: int | None = None
    reset_requests: float | None = None
    limit_tokens: int | None = None
    remaining_tokens: int | None = None
    reset_tokens: float | None = None
    retry_after: float | None = None

    @property
    def requests_exhausted(self) -> bool:
        """True when no request is left in the current window."""
        return self.remaining_requests is not None and self.remaining_requests <= 0

    @property
    def tokens_exhausted(self) -> bool:
        """True when no token is left in the current window."""
        return self.remaining_tokens is not None and self.remaining_tokens <= 0


def parse_duration(text: str) -> float | None:
    """Seconds in a Go-style duration ("1s", "6m0s", "20ms", "1.5s", "1h2m") or plain seconds; None if unusable."""
    raw = text.strip().lower()
    if not raw:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        pos = 0
        seconds = 0.0
        while pos < len(raw):
            m = _PART.match(raw, pos)
            if m is None:
                return None
            seconds += float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
            pos = m.end()
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return seconds


def _count(raw: str | None) -> int | None:
    if raw is None:
        return None
    try:
        value = float(raw.strip())
    except ValueError:
        return None
    if not math.isfinite(value) or value < 0:
        return None
    return int(value)


def _reset(raw: str | None, now: float) -> float | None:
    if raw is None:
        return None
    seconds = parse_duration(raw)
    if seconds is not None and seconds > _EPOCH_THRESHOLD:
        return max(0.0, seconds - now)
    return seconds


def parse_ratelimit_headers(headers: Mapping[str, str], now: float | None = None) -> RateHint | None:
    """The rate-limit hint in a reply's headers, or None when they say nothing usable.

    `now` is the wall-clock time (`time.time()`) that HTTP-date Retry-After values
    and Unix-time resets are measured from.
    """
    wall = time.time() if now is None else now
    lower = {k.lower(): v for k, v in headers.items()}

    def first(*names: str) -> str | None:
        for name in names:
            if name in lower:
                return lower[name]
        return None

    hint = RateHint(
        limit_requests=_count(first("x-ratelimit-limit-requests", "x-ratelimit-limit", "ratelimit-limit")),
        remaining_requests=_count(
            first("x-ratelimit-remaining-requests", "x-ratelimit-remaining", "ratelimit-remaining")
        ),
        reset_requests=_reset(first("x-ratelimit-reset-requests", "x-ratelimit-reset", "ratelimit-reset"), wall),
        limit_tokens=_count(lower.get("x-ratelimit-limit-tokens")),
        remaining_tokens=_count(lower.get("x-ratelimit-remaining-tokens")),
        reset_tokens=_reset(lower.get("x-ratelimit-reset-tokens"), wall),
        retry_after=parse_retry_after(lower, wall),
    )
    return None if hint == RateHint() else hint


# A reply with none of these says nothing about rate limits: most replies, checked in one pass in C.
_RATE_HEADERS = frozenset(
    (
        "x-ratelimit-remaining-requests",
        "x-ratelimit-remaining-tokens",
        "x-ratelimit-remaining",
        "ratelimit-remaining",
        "retry-after",
        "retry-after-ms",
    )
)


def hint_of(headers: Mapping[str, str]) -> RateHint | None:
    """What a reply's rate-limit headers say, or None when it has none."""
    if _RATE_HEADERS.isdisjoint(map(str.lower, headers)):
        return None
    return parse_ratelimit_headers(headers, time.time())
