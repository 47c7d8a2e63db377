"""Provider state shared by the runner's workers: limits, pauses, circuit breakers and stats.

Each provider has an adaptive in-flight limit (halved on 429, grown back by one
per window of successes), a pause set by `Retry-After` that holds only that
provider, and a circuit breaker that benches it after consecutive failures for
a cool-down that doubles each time; benched too often with no success between,
it is out for the run, as a provider that answered 402 is.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping

from hfbatch import defaults
from hfbatch.errors import APIError, RateLimitError
from hfbatch.pricing import Price, count_billed
from hfbatch.stats import RunStats
from hfbatch.wire import ChatResult

__all__ = ["AdaptiveLimiter", "ProviderPool"]


class AdaptiveLimiter:
    """A semaphore whose size can shrink and grow while it is in use."""

    __slots__ = ("_waiters", "in_flight", "limit", "maximum")

    def __init__(self, maximum: int) -> None:
        self.maximum = maximum
        self.limit = float(maximum)
        self.in_flight = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    async def acquire(self) -> None:
        """Wait for a place."""
        if self.in_flight < int(self.limit) and not self._waiters:
            self.in_flight += 1
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release()  # the place was handed over just as we were cancelled
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(fut)
            raise

    def release(self) -> None:
        """Give a place back."""
        self.in_flight -= 1
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self.in_flight < int(self.limit):
            fut = self._waiters.popleft()
            if not fut.done():
                self.in_flight += 1
                fut.set_result(None)

    def decrease(self) -> None:
        """Halve the limit (never below one)."""
        self.limit = max(1.0, self.limit / 2)

    def increase(self) -> None:
        """Grow the limit by about one per `limit` successes, back up to the maximum."""
        if self.limit < self.maximum:
            self.limit = min(float(self.maximum), self.limit + 1.0 / self.limit)
            self._wake()


class _State:
    __slots__ = (
        "benched_until",
        "consecutive",
        "last_decrease",
        "limiter",
        "out",
        "paused_until",
        "trips_in_row",
    )

    def __init__(self, limit: int) -> None:
        self.limiter = AdaptiveLimiter(limit)
        self.paused_until = 0.0
        self.benched_until = 0.0
        self.consecutive = 0
        self.trips_in_row = 0
        self.last_decrease = 0.0
        self.out: APIError | None = None


class ProviderPool:
    """The runner's Scheduler: per-provider limits, Retry-After pauses, breakers and stats."""

    def __init__(
        self,
        providers: list[str],
        stats: RunStats,
        *,
        per_provider: int,
        time_scale: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        breaker_threshold: int = defaults.BREAKER_THRESHOLD,
        breaker_cooldown: float = defaults.BREAKER_COOLDOWN,
        breaker_max_trips: int = defaults.BREAKER_MAX_TRIPS,
        prices: Mapping[str, Price | None] | None = None,
    ) -> None:
        self.stats = stats
        #: Each provider's price (None: unknown), for the cost of what it bills.
        self.prices: Mapping[str, Price | None] = prices or {}
        self._per_provider = per_provider
        self._states = {p: _State(per_provider) for p in providers}
        self._clock = clock
        self._scale = time_scale
        self._threshold = breaker_threshold
        self._cooldown = breaker_cooldown
        self._max_trips = breaker_max_trips
        for p in providers:
            stats.provider(p).priced = self.prices.get(p) is not None

    def add(self, providers: list[str]) -> None:
        """Take on providers first met during the run (rows that name their own model)."""
        for p in providers:
            if p not in self._states:
                self._states[p] = _State(self._per_provider)
                self.stats.provider(p)

    def _state(self, provider: str) -> _State:
        return self._states[provider]

    def is_out(self, provider: str) -> bool:
        """True when the provider is done for this run."""
        return self._state(provider).out is not None

    def why_out(self, provider: str) -> APIError | None:
        """The error that put the provider out, if it is out."""
        return self._state(provider).out

    def all_out(self) -> bool:
        """True when no provider is left for the run (a pool that has none yet is not out)."""
        return bool(self._states) and all(s.out is not None for s in self._states.values())

    def is_ready(self, provider: str) -> bool:
        """True when the provider would take a request now."""
        s = self._state(provider)
        if s.out is not None:
            return False
        now = self._clock()
        return now >= s.paused_until and now >= s.benched_until

    async def wait_ready(self, provider: str) -> None:
        """Sleep until the provider's pause or bench ends, or it is out."""
        s = self._state(provider)
        while s.out is None:
            delay = max(s.paused_until, s.benched_until) - self._clock()
            if delay <= 0:
                return
            await asyncio.sleep(delay)

    def acquire(self, provider: str) -> Awaitable[None]:
        """Wait for one of the provider's in-flight places."""
        return self._states[provider].limiter.acquire()

    def release(self, provider: str) -> None:
        """Give back a place taken by `acquire`."""
        self._states[provider].limiter.release()

    def on_success(self, provider: str, result: ChatResult) -> None:
        """Count the success; close the breaker and let the limit grow back."""
        s = self._state(provider)
        s.consecutive = 0
        s.trips_in_row = 0
        s.limiter.increase()
        st = self.stats.provider(provider)
        st.requests += 1
        st.successes += 1
        st.latency.add(result.latency)
        count_billed(st, result, self.prices.get(provider))

    def on_failure(self, provider: str, error: APIError, latency: float) -> None:
        """Count the failure; shrink the limit on 429, pause on Retry-After, trip the breaker."""
        s = self._state(provider)
        st = self.stats.provider(provider)
        st.requests += 1
        st.failures[error.kind] += 1
        if isinstance(error.billed, ChatResult):  # a whole reply that failed the row is billed too
            count_billed(st, error.billed, self.prices.get(provider))
        now = self._clock()
        if isinstance(error, RateLimitError):
            # Requests sent before the last cut saw the old limit; only later ones may cut again.
            if now - latency >= s.last_decrease:
                s.limiter.decrease()
                s.last_decrease = now
            if error.retry_after is not None:
                s.paused_until = max(s.paused_until, now + error.retry_after * self._scale)
            return
        if not error.kind.transient:
            return
        s.consecutive += 1
        if s.consecutive >= self._threshold and now >= s.benched_until:
            self._trip(provider, s, error, now)

    def _trip(self, provider: str, s: _State, error: APIError, now: float) -> None:
        s.trips_in_row += 1
        self.stats.provider(provider).breaker_trips += 1
        if s.trips_in_row >= self._max_trips:
            s.out = type(error)(
                f"out for this run after {s.trips_in_row} circuit-breaker trips; last error: {error.message}",
                provider=provider,
                status=error.status,
            )
            return
        s.benched_until = now + self._cooldown * self._scale * 2 ** (s.trips_in_row - 1)
        # Half-open after the cool-down: one more failure benches it again.
        s.consecutive = self._threshold - 1

    def on_retry(self, provider: str, delay: float, error: APIError) -> None:
        """Count a retry on the same provider."""
        self.stats.provider(provider).retries += 1

    def on_failover(self, provider: str, error: APIError, drop: bool) -> None:
        """Count the row leaving the provider; a dropped provider is out for everyone."""
        self.stats.provider(provider).failovers_out += 1
        if drop:
            s = self._state(provider)
            if s.out is None:
                s.out = error
