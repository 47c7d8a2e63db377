"""Per-provider capacity: requests in flight and sliding request/token windows.

Past `max_concurrency` requests in flight, `rate_limit` requests or `token_limit` tokens
accepted within the last window, a provider answers 429 at once. A refused request is neither
in flight nor counted in the windows. Time comes from the caller (`now`), so tests can step a
fake clock instead of sleeping.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from hfbatch.sim.config import SimProvider

__all__ = ["Capacity", "Grant", "format_reset"]


@dataclass(frozen=True, slots=True)
class Grant:
    """Whether a request got in, and what the reply says about the limits."""

    ok: bool
    # Which limit refused it: "concurrency", "requests" or "tokens".
    limit: str | None = None
    # Seconds until the refusing window frees room; None when nobody can know (concurrency).
    wait: float | None = None
    headers: dict[str, str] = field(default_factory=dict)


def format_reset(seconds: float) -> str:
    """A reset delay as OpenAI writes it: "0s", "250ms", "1.5s"."""
    if seconds <= 0:
        return "0s"
    if seconds < 1:
        return f"{math.ceil(seconds * 1000)}ms"
    return f"{round(seconds, 3):g}s"


class Capacity:
    """One provider's in-flight count and windows (the caller holds the lock)."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.max_in_flight = 0
        self._requests: deque[float] = deque()
        self._tokens: deque[tuple[float, int]] = deque()
        self._tokens_used = 0

    def _prune(self, provider: SimProvider, now: float) -> None:
        if provider.rate_limit is not None:
            window = provider.rate_limit[1]
            while self._requests and self._requests[0] + window <= now:
                self._requests.popleft()
        if provider.token_limit is not None:
            window = provider.token_limit[1]
            while self._tokens and self._tokens[0][0] + window <= now:
                self._tokens_used -= self._tokens.popleft()[1]

    def _request_wait(self, provider: SimProvider, now: float) -> float | None:
        """Seconds until a request slot frees, or None if one is free now."""
        if provider.rate_limit is None or len(self._requests) < provider.rate_limit[0]:
            return None
        return self._requests[0] + provider.rate_limit[1] - now

    def _token_wait(self, provider: SimProvider, now: float, tokens: int) -> float | None:
        """Seconds until `tokens` more fit in the token window, or None if they fit now."""
        if provider.token_limit is None:
            return None
        limit, window = provider.token_limit
        if self._tokens_used + tokens <= limit:
            return None
        if tokens > limit:
            return window  # never fits; a whole window is as good an answer as any
        used = self._tokens_used
        for stamp, spent in self._tokens:
            used -= spent
            if used + tokens <= limit:
                return stamp + window - now
        return window

    def _headers(self, provider: SimProvider, now: float) -> dict[str, str]:
        if not provider.ratelimit_headers:
            return {}
        headers: dict[str, str] = {}
        if provider.rate_limit is not None:
            limit, window = provider.rate_limit
            reset = self._requests[0] + window - now if self._requests else 0.0
            headers["x-ratelimit-limit-requests"] = str(limit)
            headers["x-ratelimit-remaining-requests"] = str(max(0, limit - len(self._requests)))
            headers["x-ratelimit-reset-requests"] = format_reset(reset)
        if provider.token_limit is not None:
            limit, window = provider.token_limit
            reset = self._tokens[0][0] + window - now if self._tokens else 0.0
            headers["x-ratelimit-limit-tokens"] = str(limit)
            headers["x-ratelimit-remaining-tokens"] = str(max(0, limit - self._tokens_used))
            headers["x-ratelimit-reset-tokens"] = format_reset(reset)
        return headers

    def acquire(self, provider: SimProvider, now: float, tokens: int) -> Grant:
        """Let a request costing `tokens` in, or say which limit refuses it and for how long."""
        self._prune(provider, now)
        if provider.max_concurrency is not None and self.in_flight >= provider.max_concurrency:
            return Grant(ok=False, limit="concurrency", headers=self._headers(provider, now))
        waits = {
            "requests": self._request_wait(provider, now),
            "tokens": self._token_wait(provider, now, tokens),
        }
        refused = {name: wait for name, wait in waits.items() if wait is not None}
        if refused:
            limit = max(refused, key=lambda name: refused[name])
            return Grant(ok=False, limit=limit, wait=refused[limit], headers=self._headers(provider, now))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        if provider.rate_limit is not None:
            self._requests.append(now)
        if provider.token_limit is not None:
            self._tokens.append((now, tokens))
            self._tokens_used += tokens
        return Grant(ok=True, headers=self._headers(provider, now))

    def release(self) -> None:
        """A request let in by `acquire` is over (answered, dropped or abandoned)."""
        # After a reset_counts() a request from before may end here: never go below zero.
        self.in_flight = max(0, self.in_flight - 1)
