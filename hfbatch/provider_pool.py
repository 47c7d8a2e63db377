"""The runner's scheduler: every provider's capacity, circuit breaker and out state, and the stats they feed.

Providers are capacity, not spares. Each has a `ProviderCapacity` (hfbatch.capacity):
an in-flight limit and a request pace (and, with --tpm, a token pace) learned from its
429s, successes and rate-limit headers, never above what the user set. `acquire` gives a
row the first provider in route order with room now, else whichever gets room first
(spill-over). A provider with `breaker_threshold` transient failures in a row is benched
for a cool-down that doubles each time; benched `breaker_max_trips` times with no
success between, or asking for a pause longer than `max_pause`, it is out for the run.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hfbatch import defaults, events
from hfbatch.capacity import Blame, LearnedLimits, ProviderCapacity, RateLimit, Slot, acquire_any
from hfbatch.errors import APIError, RateLimitError
from hfbatch.pricing import Price, count_billed
from hfbatch.stats import ProviderStats, RunStats
from hfbatch.wire import ChatResult

__all__ = ["Lease", "ProviderLimits", "ProviderPool"]


@dataclass(frozen=True, slots=True)
class ProviderLimits:
    """What the user allows one provider: requests in flight, and per minute (requests, tokens)."""

    concurrency: int
    rpm: float | None = None
    tpm: float | None = None


class Lease:
    """One attempt's slot on a provider."""

    __slots__ = ("cost", "provider", "slot")

    def __init__(self, provider: str, slot: Slot, cost: float) -> None:
        self.provider = provider
        self.slot = slot
        self.cost = cost


class _Waiting:
    """While inside, the current task is in `waiting` (a class, not a generator: a row may enter it every time)."""

    __slots__ = ("_task", "_waiting")

    def __init__(self, waiting: set[asyncio.Task[Any]]) -> None:
        self._waiting = waiting
        self._task: asyncio.Task[Any] | None = None

    def __enter__(self) -> None:
        self._task = task = asyncio.current_task()
        if task is not None:
            self._waiting.add(task)

    def __exit__(self, *exc: object) -> None:
        if self._task is not None:
            self._waiting.discard(self._task)


class _State:
    __slots__ = ("benched_until", "capacity", "consecutive", "out", "stats", "trips_in_row")

    def __init__(self, capacity: ProviderCapacity, stats: ProviderStats) -> None:
        self.capacity = capacity
        self.stats = stats  # the provider's entry in the run's stats, looked up once
        self.benched_until = 0.0
        self.consecutive = 0
        self.trips_in_row = 0
        self.out: APIError | None = None


class ProviderPool:
    """Per-provider capacity, breakers and stats, shared by the runner's workers."""

    def __init__(
        self,
        providers: Sequence[str],
        stats: RunStats,
        *,
        limits: Mapping[str, ProviderLimits],
        learned: Mapping[str, LearnedLimits] | None = None,
        run_rpm: float | None = None,
        run_tpm: float | None = None,
        time_scale: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        breaker_threshold: int = defaults.BREAKER_THRESHOLD,
        breaker_cooldown: float = defaults.BREAKER_COOLDOWN,
        breaker_max_trips: int = defaults.BREAKER_MAX_TRIPS,
        max_pause: float = defaults.MAX_RETRY_AFTER,
        prices: Mapping[str, Price | None] | None = None,
        adaptive_timeout: bool = False,
        on_event: events.OnEvent | None = None,
    ) -> None:
        self.stats = stats
        #: Without --timeout, each provider's attempt deadline follows its latency (see `attempt_timeout`).
        self._adaptive = adaptive_timeout
        self._deadlines: dict[str, float] = {}
        #: Gets the pool's events (hfbatch.events): a provider out, a breaker trip, learned limits that moved.
        self.on_event = on_event
        self._limits_seen: dict[str, dict[str, float | int | None]] = {}
        #: Per provider, the limit its latest 429 since the last look was put down to (chance ones move nothing).
        self._blamed: dict[str, str] = {}
        self._limits_due = clock() + events.RATE_LIMIT_CHECK_INTERVAL
        #: Each provider's price (None: unknown), for the cost of what it bills.
        self.prices: Mapping[str, Price | None] = prices or {}
        self._limits = dict(limits)
        self._learned = dict(learned or {})
        self._states: dict[str, _State] = {}
        self._tokens_paced: set[str] = set()
        self._clock = clock
        self._scale = time_scale
        self._threshold = breaker_threshold
        self._cooldown = breaker_cooldown
        self._max_trips = breaker_max_trips
        self._max_pause = max_pause
        # --rpm / --tpm bound the whole run, whichever providers serve it.
        self._run_requests = None if run_rpm is None else RateLimit(maximum=run_rpm / 60.0, learn=False, clock=clock)
        self._run_tokens = (
            None if run_tpm is None else RateLimit(maximum=run_tpm / 60.0, learn=False, burst=1.0, clock=clock)
        )
        self._waiting: set[asyncio.Task[Any]] = set()
        self._stopped = False
        self.add(providers)

    def add(self, providers: Sequence[str]) -> None:
        """Take on providers (at the start, or first met during the run: rows that name their own model).

        A provider without limits of its own gets those of `limits["*"]`, when given.
        """
        for p in providers:
            if p in self._states:
                continue
            lim = self._limits.get(p) or self._limits["*"]
            capacity = ProviderCapacity.build(
                lim.concurrency,
                rpm=lim.rpm,
                tpm=lim.tpm,
                learned=self._learned.get(p),
                time_scale=self._scale,
                clock=self._clock,
            )
            self._states[p] = _State(capacity, self.stats.provider(p))
            if lim.tpm is not None:
                self._tokens_paced.add(p)
            self._states[p].stats.priced = self.prices.get(p) is not None
        # Holding places back while latency grows serves spill-over: rows go to a provider with room. With
        # one provider a row has nowhere else to go, and each place held back only parks a row here.
        for s in self._states.values():
            s.capacity.concurrency.follow_latency(len(self._states) > 1)
        # What the pool starts from (its user's limits, a warm start) is no news: only moves are.
        self._limits_seen = {**self.limits_now(), **self._limits_seen}

    # --- which providers may take rows ---------------------------------------------------------------

    def is_out(self, provider: str) -> bool:
        """True when the provider is done for this run."""
        return self._states[provider].out is not None

    def why_out(self, provider: str) -> APIError | None:
        """The error that put the provider out, if it is out."""
        return self._states[provider].out

    def all_out(self) -> bool:
        """True when no provider is left for the run (a pool that has none yet is not out)."""
        return bool(self._states) and all(s.out is not None for s in self._states.values())

    def capacity(self, provider: str) -> ProviderCapacity:
        """The provider's learned limits."""
        return self._states[provider].capacity

    async def acquire(self, candidates: Sequence[str], cost: float = 0.0) -> Lease:
        """A slot on the first candidate with room now (route order), else on whichever has room first.

        Benched candidates are skipped until their cool-down ends; `cost` is the request's
        estimated tokens, booked against a token pace when one is set.
        """
        if self._stopped:
            raise asyncio.CancelledError("the run is stopping")
        if self._run_requests is None and self._run_tokens is None:
            lease = self.try_acquire(candidates, cost)
            if lease is not None:
                return lease  # room now: nothing waited, nothing to register
        started = self._clock()
        states = self._states
        with self._waiter():
            if self._run_requests is not None:
                await self._run_requests.wait()
            if self._run_tokens is not None and cost > 0:
                await self._run_tokens.wait(cost)
            while True:
                now = self._clock()
                ready = [p for p in candidates if states[p].out is None and states[p].benched_until <= now]
                if not ready:
                    waiting = [states[p].benched_until for p in candidates if states[p].out is None]
                    # Every candidate is benched (the loop never passes only providers that are out).
                    await asyncio.sleep(max(0.0, min(waiting, default=now) - now))
                    continue
                index, slot = await acquire_any([states[p].capacity for p in ready], cost)
                provider = ready[index]
                state = states[provider]
                if state.out is None and state.benched_until <= self._clock():
                    break
                state.capacity.on_dropped(slot)  # it went out or was benched while we waited
        self.stats.capacity_wait += self._clock() - started
        return Lease(provider, slot, cost)

    def try_acquire(self, candidates: Sequence[str], cost: float = 0.0) -> Lease | None:
        """A slot on the first candidate with room now (not out, not benched), else None; waits for nothing."""
        now = self._clock()
        for p in candidates:
            state = self._states.get(p)
            if state is None or state.out is not None or state.benched_until > now:
                continue
            slot = state.capacity.try_acquire(cost)
            if slot is not None:
                return Lease(p, slot, cost)
        return None

    def latency_p99(self, provider: str) -> tuple[float | None, int]:
        """The provider's p99 latency of successes this run (None before any), and how many there were."""
        st = self.stats.provider(provider)
        return st.latency.percentile(99), st.successes

    def on_hedge(self, provider: str) -> None:
        """A hedge (a second try of a slow request) goes to `provider`."""
        self.stats.provider(provider).hedges += 1

    def on_hedge_won(self, provider: str) -> None:
        """A hedge on `provider` answered first: its reply is the row's."""
        self.stats.provider(provider).hedges_won += 1

    def on_cancelled(self, lease: Lease) -> None:
        """The request was abandoned in flight (the other of a hedged pair answered first): count it, learn nothing."""
        st = self.stats.provider(lease.provider)
        st.requests += 1
        st.cancelled += 1
        self._states[lease.provider].capacity.on_dropped(lease.slot)

    async def sleep(self, delay: float) -> None:
        """Sleep between retries of a row; `stop_waiting` ends it at once."""
        with self._waiter():
            await asyncio.sleep(delay)

    def _waiter(self) -> _Waiting:
        """Register the current task as waiting (for capacity or a retry), so a stop can wake it."""
        if self._stopped:
            raise asyncio.CancelledError("the run is stopping")
        return _Waiting(self._waiting)

    def stop_waiting(self) -> None:
        """The run is stopping: cancel every row that waits (nothing of it is in flight); refuse new waits."""
        self._stopped = True
        for task in list(self._waiting):
            task.cancel()

    def attempt_timeout(self, provider: str) -> float | None:
        """The provider's deadline for one attempt when it follows latency; None: the client's own (--timeout)."""
        if not self._adaptive:
            return None
        return self._deadlines.get(provider, defaults.DEFAULT_TIMEOUT)

    def release(self, lease: Lease) -> None:
        """Give the lease's place back if no outcome did (idempotent)."""
        self._states[lease.provider].capacity.release(lease.slot)

    # --- outcomes --------------------------------------------------------------------------------------

    def on_success(self, lease: Lease, result: ChatResult) -> None:
        """Learn from the success, close the breaker, count it."""
        provider = lease.provider
        s = self._states[provider]
        s.consecutive = 0
        s.trips_in_row = 0
        tokens = None
        if provider in self._tokens_paced and result.prompt_tokens is not None:
            tokens = result.prompt_tokens + (result.completion_tokens or 0)
        s.capacity.on_success(lease.slot, result.latency, tokens=tokens, hint=result.hint)
        st = s.stats
        st.requests += 1
        st.successes += 1
        st.latency.add(result.latency)
        count_billed(st, result, self.prices.get(provider))
        if self._adaptive and st.successes % defaults.ADAPTIVE_TIMEOUT_SAMPLES == 0:
            p99 = st.latency.percentile(99) or 0.0
            self._deadlines[provider] = min(
                defaults.ADAPTIVE_TIMEOUT_MAX,
                max(defaults.ADAPTIVE_TIMEOUT_MIN, defaults.ADAPTIVE_TIMEOUT_FACTOR * p99),
            )
        if self.on_event is not None:
            self._watch_limits()

    def on_failure(self, lease: Lease, error: APIError, latency: float) -> None:
        """Learn from a 429, trip the breaker on transient failures, count it."""
        provider = lease.provider
        s = self._states[provider]
        st = s.stats
        st.requests += 1
        st.failures[error.kind] += 1
        if isinstance(error.billed, ChatResult):  # a whole reply that failed the row is billed too
            count_billed(st, error.billed, self.prices.get(provider))
        if isinstance(error, RateLimitError):
            self._rate_limited(provider, s, lease, error)
            if self.on_event is not None:
                self._watch_limits()  # after the capacity code decided what this 429 moves
            return
        s.capacity.on_dropped(lease.slot)
        if not error.kind.transient:
            return
        s.consecutive += 1
        now = self._clock()
        if s.consecutive >= self._threshold and now >= s.benched_until and s.out is None:
            self._trip(provider, s, error, now)

    def _rate_limited(self, provider: str, s: _State, lease: Lease, error: RateLimitError) -> None:
        retry_after = error.retry_after
        if retry_after is not None and retry_after > self._max_pause:
            # "Come back in a week": waiting would hang the run; out, with the reason in one line.
            s.capacity.on_dropped(lease.slot)
            if s.out is None:
                out = RateLimitError(
                    f"asked to pause for {retry_after:.0f}s (Retry-After), longer than the "
                    f"{self._max_pause:.0f}s hfbatch waits",
                    provider=provider,
                    status=error.status,
                    retry_after=retry_after,
                )
                self._put_out(provider, s, out)
            return
        hint = getattr(error, "hint", None)
        scaled = None if retry_after is None else retry_after * self._scale
        blame = s.capacity.on_rate_limited(lease.slot, retry_after=scaled, hint=hint)
        if blame is not Blame.CHANCE:
            self._blamed[provider] = blame.value

    def _trip(self, provider: str, s: _State, error: APIError, now: float) -> None:
        s.trips_in_row += 1
        self.stats.provider(provider).breaker_trips += 1
        if s.trips_in_row >= self._max_trips:
            self._emit(events.breaker_trip(provider, s.trips_in_row, None, error))
            out = type(error)(
                f"after {s.trips_in_row} circuit-breaker trips in a row; last error: {error.message}",
                provider=provider,
                status=error.status,
            )
            self._put_out(provider, s, out)
            return
        cooldown = self._cooldown * self._scale * 2 ** min(s.trips_in_row - 1, 32)
        s.benched_until = now + cooldown
        self._emit(events.breaker_trip(provider, s.trips_in_row, cooldown, error))
        # Half-open after the cool-down: one more failure benches it again.
        s.consecutive = self._threshold - 1

    def on_retry(self, provider: str, delay: float, error: APIError) -> None:
        """Count a retry of a row."""
        self.stats.provider(provider).retries += 1

    def on_failover(self, provider: str, error: APIError, drop: bool) -> None:
        """Count the row leaving the provider; a dropped provider is out for everyone."""
        self.stats.provider(provider).failovers_out += 1
        if drop:
            s = self._states[provider]
            if s.out is None:
                self._put_out(provider, s, error)

    def _put_out(self, provider: str, s: _State, error: APIError) -> None:
        """The provider is done for this run, because of `error`."""
        s.out = error
        self._emit(events.provider_out(provider, error))

    def _emit(self, event: events.Event) -> None:
        if self.on_event is not None:
            self.on_event(event)

    def _watch_limits(self) -> None:
        """Every so often, emit an event for each provider whose learned limits moved since the last look."""
        now = self._clock()
        if now < self._limits_due:
            return
        self._limits_due = now + events.RATE_LIMIT_CHECK_INTERVAL
        seen = self.limits_now()
        for event in events.rate_limit_changes(self._limits_seen, seen, self._blamed):
            self._emit(event)
        self._limits_seen = seen
        self._blamed = {}

    # --- what was learned ------------------------------------------------------------------------------

    def learned(self) -> dict[str, LearnedLimits]:
        """What this run learned about each provider, for the next run's warm start."""
        return {p: s.capacity.learned() for p, s in self._states.items()}

    def limits_now(self) -> dict[str, dict[str, float | int | None]]:
        """Each provider's current limits: in flight, the learned cap, and the pace (requests per second)."""
        out: dict[str, dict[str, float | int | None]] = {}
        for p, s in self._states.items():
            cap = s.capacity
            out[p] = {
                "in_flight": cap.concurrency.in_flight,
                "limit": cap.concurrency.limit,
                "ceiling": cap.concurrency.ceiling,
                "rate_rps": cap.requests.rate,
            }
        return out
