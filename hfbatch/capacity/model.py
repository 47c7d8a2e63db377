"""A discrete-event model of providers with hidden limits, for measuring the learners in virtual time.

`run_model` runs workers that take rows, route each to a provider through
`acquire_any`, and report every reply to that provider's `ProviderCapacity`, as the
runner does. The providers refuse past an in-flight cap (which may change over
time) or past a sliding window of accepted requests, and may refuse a share of
requests at random whatever the load (shared upstream load, other users' bursts).
Everything runs on an event
loop whose clock jumps to the next timer, so a minute of traffic takes a fraction
of a second and nothing sleeps for real.
"""

from __future__ import annotations

import asyncio
import collections
import random
import selectors
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from hfbatch.capacity.headers import RateHint
from hfbatch.capacity.learned import LearnedLimits
from hfbatch.capacity.provider import ProviderCapacity, acquire_any

__all__ = [
    "ModelProvider",
    "ModelResult",
    "ProviderResult",
    "VirtualTimeLoop",
    "run_model",
    "run_virtual",
]

T = TypeVar("T")


class _JumpingSelector(selectors.DefaultSelector):
    """Never blocks: a wait for the next timer moves the loop's clock there instead."""

    def __init__(self, loop: VirtualTimeLoop) -> None:
        super().__init__()
        self._loop = loop

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is None:
            raise RuntimeError("virtual time: nothing is scheduled and nothing can wake the loop")
        self._loop.advance(timeout)
        return super().select(0)


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An asyncio loop whose `time()` is virtual and jumps to the next timer (no I/O may be awaited)."""

    def __init__(self) -> None:
        self._now = 0.0
        super().__init__(_JumpingSelector(self))

    def time(self) -> float:
        """Virtual seconds since the loop was made."""
        return self._now

    def advance(self, seconds: float) -> None:
        """Move the clock forward."""
        if seconds > 0:
            self._now += seconds


def run_virtual(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run `main()` to completion on a fresh virtual-time loop."""
    loop = VirtualTimeLoop()
    try:
        return loop.run_until_complete(main())
    finally:
        loop.close()


@dataclass(frozen=True, slots=True)
class ModelProvider:
    """A provider with hidden limits: an in-flight cap (possibly changing) and/or a sliding window."""

    latency: float = 0.1
    #: Latency is uniform in latency x [1 - jitter, 1 + jitter] ...
    jitter: float = 0.2
    #: ... or, when this is set, lognormal with this sigma and mean `latency` (LLM outputs vary that much).
    spread: float | None = None
    #: (from time, in-flight cap) steps, in time order; empty: no cap.
    caps: tuple[tuple[float, int], ...] = ()
    #: At most `window` accepted requests in any `window_seconds` (None: no window).
    window: int | None = None
    window_seconds: float = 1.0
    #: Window refusals carry Retry-After (the time until the window has room).
    retry_after: bool = False
    #: Cap refusals carry this Retry-After, seconds (None: none).
    cap_retry_after: float | None = None
    #: Replies carry x-ratelimit-*-requests headers.
    headers: bool = False
    #: Over the cap, requests wait at the provider instead of being refused.
    queue_over_cap: bool = False
    reject_latency: float = 0.005
    transit: float = 0.0
    #: Share of requests refused at random, whatever the load (before any limit is checked).
    refuse: float = 0.0
    #: Those refusals carry this Retry-After, seconds (None: none).
    refuse_retry_after: float | None = None

    def cap_at(self, t: float) -> int | None:
        """The in-flight cap at time `t`."""
        cap = None
        for since, c in self.caps:
            if t >= since:
                cap = c
        return cap

    def capacity(self, duration: float, places: int | None = None) -> float:
        """Requests per second the provider can serve, averaged over [0, duration].

        With no cap, `places` (our own bound on requests in flight) stands for one. Random
        refusals cost only themselves: a place spends a latency per success and a refusal's
        `reject_latency` per refusal (network time aside, as for caps), so it serves
        (1 - refuse) / ((1 - refuse) * latency + refuse * reject_latency) rows per second.
        """
        per_place = (1.0 - self.refuse) / ((1.0 - self.refuse) * self.latency + self.refuse * self.reject_latency)
        rates = []
        caps = self.caps or (((0.0, places),) if places is not None else ())
        if caps:
            edges = [since for since, _ in caps if since < duration] + [duration]
            served = 0.0
            for (since, cap), end in zip(caps, edges[1:], strict=False):
                served += cap * per_place * (end - max(0.0, since))
            rates.append(served / duration)
        if self.window is not None:
            rates.append(self.window / self.window_seconds)
        return min(rates) if rates else float("inf")


@dataclass(slots=True)
class _Reply:
    ok: bool
    retry_after: float | None = None
    hint: RateHint | None = None


class _Provider:
    """The server side of one `ModelProvider`."""

    def __init__(self, spec: ModelProvider, rng: random.Random) -> None:
        self.spec = spec
        self.rng = rng
        self.in_flight = 0
        self.peak = 0
        self.accepted: collections.deque[float] = collections.deque()
        self.freed = asyncio.Condition()

    def _hint(self, now: float) -> RateHint | None:
        s = self.spec
        if not s.headers or s.window is None:
            return None
        reset = (self.accepted[-1] + s.window_seconds - now) if self.accepted else 0.0
        return RateHint(limit_requests=s.window, remaining_requests=s.window - len(self.accepted), reset_requests=reset)

    async def handle(self, now: Callable[[], float]) -> _Reply:
        s = self.spec
        if s.transit:
            await asyncio.sleep(s.transit)
        if s.refuse and self.rng.random() < s.refuse:
            await asyncio.sleep(s.reject_latency + s.transit)
            return _Reply(False, s.refuse_retry_after)
        cap = s.cap_at(now())
        if cap is not None and self.in_flight >= cap:
            if not s.queue_over_cap:
                await asyncio.sleep(s.reject_latency + s.transit)
                return _Reply(False, s.cap_retry_after)
            async with self.freed:
                await self.freed.wait_for(lambda: self.in_flight < (s.cap_at(now()) or 1))
        if s.window is not None:
            t = now()
            while self.accepted and self.accepted[0] <= t - s.window_seconds:
                self.accepted.popleft()
            if len(self.accepted) >= s.window:
                wait = self.accepted[0] + s.window_seconds - t
                hint = self._hint(t)
                await asyncio.sleep(s.reject_latency + s.transit)
                return _Reply(False, wait if s.retry_after else None, hint)
            self.accepted.append(t)
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            if s.spread is not None:
                await asyncio.sleep(s.latency * self.rng.lognormvariate(-(s.spread**2) / 2.0, s.spread))
            else:
                await asyncio.sleep(s.latency * (1.0 + s.jitter * (2.0 * self.rng.random() - 1.0)))
        finally:
            self.in_flight -= 1
            if s.queue_over_cap:
                async with self.freed:
                    self.freed.notify()
        hint = self._hint(now())
        if s.transit:
            await asyncio.sleep(s.transit)
        return _Reply(True, hint=hint)


@dataclass(slots=True)
class ProviderResult:
    """What one provider did in a model run."""

    capacity: float
    successes: int = 0
    rate_limited: int = 0
    #: (time, in-flight limit, request pace) once per sample interval.
    limits: list[tuple[float, int, float | None]] = field(default_factory=list)
    learned: LearnedLimits | None = None
    #: Most requests the provider was serving at once.
    peak_in_flight: int = 0


@dataclass(slots=True)
class ModelResult:
    """Goodput and 429s of a model run, overall and per provider."""

    duration: float
    providers: list[ProviderResult]
    max_refusals_per_row: int = 0

    @property
    def successes(self) -> int:
        """Rows served."""
        return sum(p.successes for p in self.providers)

    @property
    def rate_limited(self) -> int:
        """429 replies."""
        return sum(p.rate_limited for p in self.providers)

    @property
    def goodput(self) -> float:
        """Rows served per second."""
        return self.successes / self.duration

    @property
    def capacity(self) -> float:
        """Rows per second the providers could serve together."""
        return sum(p.capacity for p in self.providers)

    @property
    def share(self) -> float:
        """Goodput as a share of capacity."""
        return self.goodput / self.capacity

    @property
    def refused_share(self) -> float:
        """429s as a share of all replies."""
        total = self.successes + self.rate_limited
        return self.rate_limited / total if total else 0.0


def run_model(
    providers: list[ModelProvider],
    *,
    duration: float = 60.0,
    workers: int = 64,
    max_concurrency: int = 64,
    rpm: float | None = None,
    learned: list[LearnedLimits | None] | None = None,
    seed: int = 0,
    sample_every: float = 1.0,
) -> ModelResult:
    """Run `workers` against `providers` for `duration` virtual seconds; count what the learners achieved."""

    async def main() -> ModelResult:
        loop = asyncio.get_running_loop()
        clock = loop.time
        rng = random.Random(seed)
        servers = [_Provider(p, rng) for p in providers]
        caps = [
            ProviderCapacity.build(
                max_concurrency, rpm=rpm, learned=None if learned is None else learned[i], clock=clock
            )
            for i in range(len(providers))
        ]
        places = min(workers, max_concurrency) if len(providers) == 1 else None
        results = [ProviderResult(p.capacity(duration, places)) for p in providers]
        worst = 0

        async def worker() -> None:
            nonlocal worst
            while True:
                refusals = 0
                while True:
                    i, slot = await acquire_any(caps)
                    reply = await servers[i].handle(clock)
                    counted = clock() <= duration
                    if reply.ok:
                        caps[i].on_success(slot, hint=reply.hint)
                        results[i].successes += counted
                        break
                    caps[i].on_rate_limited(slot, retry_after=reply.retry_after, hint=reply.hint)
                    results[i].rate_limited += counted
                    refusals += 1
                    worst = max(worst, refusals)

        async def sampler() -> None:
            while True:
                for cap, res in zip(caps, results, strict=True):
                    res.limits.append((clock(), cap.concurrency.limit, cap.requests.pace))
                await asyncio.sleep(sample_every)

        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(worker()) for _ in range(workers)]
            tasks.append(tg.create_task(sampler()))
            await asyncio.sleep(duration)
            for t in tasks:
                t.cancel()
        for cap, res, server in zip(caps, results, servers, strict=True):
            res.learned = cap.learned(wall_time=0.0)
            res.peak_in_flight = server.peak
        return ModelResult(duration, results, worst)

    return run_virtual(main)
