"""An in-flight limit that learns a provider's concurrency cap from 429s and then holds just under it.

The 429s it hears of are those its caller put down to places (`ProviderCapacity`
tells them from chance ones). One for a request sent while k were in flight (itself
included) says the cap is at most k - 1, so the limit drops to k - 1 at once (not to
half) and k - 1 is kept as the ceiling estimate. Above the ceiling the limit probes
one place at a time, after `PROBE_ROUNDS` rounds of successes at the limit; every
probe that fails at the same ceiling doubles that interval (up to
2**`PROBE_BACKOFF_MAX`), so a steady cap costs under half a percent of requests in
429s. A probe that holds `PROBE_HOLD` rounds without a 429 raises the ceiling and
doubles the next step, so a cap that grows is found in a few probes; it must hold
that long because our in-flight count runs ahead of the provider's by the replies
still on their way back, so just above a cap only some requests are refused, and one
lucky round proves nothing. Until the first 429 the limit doubles every round from
`SLOW_START` (slow start).

Delivery and latency are the second signal, for providers that queue our requests
instead of refusing them. In slow start, a round that fails to raise the successes
per second by `PLATEAU_GROWTH` holds the limit for one more round; if that one fails
too the provider is full (as BBR leaves its startup) and slow start ends at the
level where the rate last grew. Afterwards the limit stops probing upward while
the average latency (over about `LATENCY_SAMPLES` successes) is `latency_tolerance`
times its lowest: more places would only add waiting and, with several providers,
hold rows back from one with room. The limit is never cut for latency, and single
latencies are never compared: LLM outputs vary tenfold in length. With
`latency_tolerance` None (`follow_latency(False)`: a run with one provider, where a
row held back has nowhere else to go) only 429s move the limit.
"""

from __future__ import annotations

import asyncio
import collections
import math
import time
from collections.abc import Callable

__all__ = ["ConcurrencyLimit"]

SLOW_START = 8  # places before anything is known
PROBE_ROUNDS = 4  # rounds (successes = limit) at the ceiling before probing one place above it
PROBE_HOLD = 8  # rounds a probe must hold without a 429 to raise the ceiling
PROBE_BACKOFF_MAX = 3  # failed probes at one ceiling stretch the interval up to 2**3 times
MAX_STEP = 8  # places added by one probe after a run of successful probes
LATENCY_TOLERANCE = 2.0  # average latency over its lowest: above this, no probing up
LATENCY_SAMPLES = 100  # the average is over about this many successes (a plain mean until then)
_LATENCY_WEIGHT = 1.0 / LATENCY_SAMPLES
PLATEAU_GROWTH = 1.25  # a slow-start round must raise successes per second by this much, ...
PLATEAU_ROUNDS = 2  # ... or, after this many such rounds in a row (the limit held for the second), slow start ends


class ConcurrencyLimit:
    """A semaphore whose size is learned: it converges to the provider's in-flight cap and stays there."""

    __slots__ = (
        "_baseline",
        "_best_level",
        "_best_rate",
        "_clock",
        "_count",
        "_ewma",
        "_fails",
        "_flat_rounds",
        "_probe_level",
        "_round_oks",
        "_round_size",
        "_round_start",
        "_samples",
        "_slow_start",
        "_step",
        "_waiters",
        "ceiling",
        "in_flight",
        "latency_tolerance",
        "limit",
        "maximum",
        "minimum",
    )

    def __init__(
        self,
        maximum: int,
        *,
        start: int | None = None,
        ceiling: int | None = None,
        minimum: int = 1,
        latency_tolerance: float | None = LATENCY_TOLERANCE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if maximum < 1:
            raise ValueError(f"maximum must be at least 1, got {maximum}")
        self.maximum = maximum
        self.minimum = max(1, min(minimum, maximum))
        #: Learned estimate of the provider's cap (None until a 429 or a warm start).
        self.ceiling = None if ceiling is None else self._clamp(ceiling)
        if start is None:
            start = self.ceiling if self.ceiling is not None else SLOW_START
        #: Places now; `in_flight` may exceed it for a while after a cut.
        self.limit = self._clamp(start)
        self.in_flight = 0
        self.latency_tolerance = latency_tolerance
        self._waiters: collections.deque[tuple[asyncio.Future[int], int]] = collections.deque()
        self._count = 0
        self._fails = 0
        self._step = 1
        self._probe_level: int | None = None
        self._slow_start = self.ceiling is None
        self._clock = clock
        self._ewma: float | None = None
        self._samples = 0
        self._baseline: float | None = None  # the lowest average latency seen
        self._round_start: float | None = None
        self._round_oks = 0
        self._round_size = self.limit
        self._best_rate = 0.0
        self._best_level = self.limit
        self._flat_rounds = 0

    def follow_latency(self, on: bool) -> None:
        """Whether delivery and latency hold the limit back (see the module docstring), or only 429s."""
        self.latency_tolerance = LATENCY_TOLERANCE if on else None

    def _clamp(self, n: int) -> int:
        return max(self.minimum, min(self.maximum, n))

    @property
    def probe_level(self) -> int | None:
        """The limit being probed above the ceiling (None: no probe under way)."""
        return self._probe_level

    @property
    def latency(self) -> float | None:
        """Recent average latency of successes, seconds (None before the first)."""
        return self._ewma

    # --- the semaphore ---------------------------------------------------------------------------

    def has_room(self) -> bool:
        """True when `try_acquire` would succeed."""
        return self.in_flight < self.limit and not self._waiters

    def try_acquire(self) -> int | None:
        """Take a place if one is free now; return the in-flight count with it, else None."""
        if not self.has_room():
            return None
        self.in_flight += 1
        return self.in_flight

    async def acquire(self) -> int:
        """Wait for a place (first come, first served); return the in-flight count with it."""
        if self.has_room():
            self.in_flight += 1
            return self.in_flight
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._join(fut, 0)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release()  # the place was handed over just as we were cancelled
            else:
                self._leave(fut)
            raise
        return self.in_flight

    def _join(self, fut: asyncio.Future[int], tag: int) -> None:
        """Queue `fut` for a place; granting one sets its result to `tag`. One future may queue at several limits."""
        self._waiters.append((fut, tag))

    def _leave(self, fut: asyncio.Future[int]) -> None:
        """Take `fut` out of the queue (it was granted elsewhere, or cancelled)."""
        for entry in self._waiters:
            if entry[0] is fut:
                self._waiters.remove(entry)
                return

    def release(self) -> None:
        """Give a place back."""
        self.in_flight -= 1
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self.in_flight < self.limit:
            fut, tag = self._waiters.popleft()
            if not fut.done():
                self.in_flight += 1
                fut.set_result(tag)

    # --- learning --------------------------------------------------------------------------------

    def on_success(self, level: int, latency: float | None = None, limit: int | None = None) -> None:
        """A request sent at in-flight `level` (itself included) succeeded after `latency` seconds.

        `limit` is the limit when it was sent (default: now); a success counts toward
        growing only if that limit bound (the request took the last place).
        """
        if latency is not None:
            self._observe_latency(latency)
        if level < min(self.limit, self.limit if limit is None else limit):
            return  # the limit did not bind, so this says nothing about more places
        self._count += 1
        if self._probe_level is not None and self._count >= PROBE_HOLD * self._probe_level:
            # A whole round at the probed limit and no 429: the cap is at least that.
            self.ceiling = self._probe_level
            self._probe_level = None
            self._step = min(self._step * 2, MAX_STEP)
            self._fails = 0
            self._count = 0
        if self._slow_start and self.latency_tolerance is not None:
            if self._plateaued():
                self._end_slow_start(self._best_level)
                return
            if self._flat_rounds:
                return  # hold the limit for a round to see whether the rate really stopped growing
        if self.limit >= self.maximum or self._probe_level is not None:
            return
        if self._queueing():
            return
        if self._slow_start:
            need = 1
        elif self.ceiling is not None and self.limit < self.ceiling:
            need = self.limit  # back up to the known ceiling: one place per round
        else:
            need = PROBE_ROUNDS * self.limit * 2 ** min(self._fails, PROBE_BACKOFF_MAX)
        if self._count < need:
            return
        self._count = 0
        if self._slow_start or (self.ceiling is not None and self.limit < self.ceiling):
            self.limit += 1
        else:
            self.limit = min(self.maximum, self.limit + self._step)
            self._probe_level = self.limit
        self._wake()

    def on_rate_limited(self, level: int) -> None:
        """A request sent at in-flight `level` (itself included) was answered 429 for lack of places."""
        est = self._clamp(level - 1)
        if self.ceiling is None or est < self.ceiling - 1:
            self.ceiling = est  # a new, lower cap
            self._fails = 0
        elif est <= self.ceiling:
            self.ceiling = est
            if self._probe_level is not None:
                self._fails += 1  # a probe just above the ceiling failed: probe less often
        # else: sent above the ceiling (a wide probe, or before a cut): nothing new about it.
        self.limit = min(self.limit, est)
        self._step = 1
        self._probe_level = None
        self._count = 0
        if self._slow_start:
            self._end_slow_start(self.limit)

    def restore(self, limit: int, ceiling: int | None) -> None:
        """Put back a limit and ceiling saved earlier (the caller found its cuts were not about places)."""
        self.ceiling = None if ceiling is None else self._clamp(ceiling)
        self.limit = self._clamp(limit)
        self._slow_start = self.ceiling is None
        self._count = 0
        self._wake()

    def _end_slow_start(self, level: int) -> None:
        self._slow_start = False
        self.ceiling = self._clamp(level) if self.ceiling is None else self.ceiling
        self.limit = min(self.limit, self.ceiling)
        self._count = 0

    def _plateaued(self) -> bool:
        """At the end of each slow-start round (as many successes as places), whether successes per second stalled."""
        now = self._clock()
        if self._round_start is None:
            self._round_start, self._round_size = now, self.limit
            return False
        self._round_oks += 1
        if self._round_oks < self._round_size or now <= self._round_start:
            return False
        rate = self._round_oks / (now - self._round_start)
        self._round_start, self._round_oks, self._round_size = now, 0, self.limit
        if rate >= PLATEAU_GROWTH * self._best_rate:
            self._best_rate, self._best_level, self._flat_rounds = rate, self.limit, 0
            return False
        self._flat_rounds += 1
        return self.latency_tolerance is not None and self._flat_rounds >= PLATEAU_ROUNDS

    def _observe_latency(self, latency: float) -> None:
        if not 0.0 < latency < math.inf:  # NaN fails it too
            return
        n = self._samples = self._samples + 1
        ewma = self._ewma
        if ewma is None:
            ewma = latency
        else:
            ewma += (1.0 / n if n < LATENCY_SAMPLES else _LATENCY_WEIGHT) * (latency - ewma)
        self._ewma = ewma
        if n >= LATENCY_SAMPLES // 5:
            base = self._baseline
            if base is None or ewma < base:
                self._baseline = ewma

    def _queueing(self) -> bool:
        tol, ewma, base = self.latency_tolerance, self._ewma, self._baseline
        return tol is not None and ewma is not None and base is not None and ewma > tol * base
