"""One provider's capacity: its learned in-flight limit, request pace and token pace, and who a 429 blames.

A 429 rarely says which limit it hit, nor whether it hit one at all: providers also
refuse a share of requests whatever our load (shared upstream load, other users).
Headers that say a budget is spent blame that budget. Otherwise a 429 would be about
the request pace when nothing else of ours was in flight (a cap below one is not a
cap), when a pace was in force and places were to spare (a cap refuses at the limit:
we refill up to it), or when the provider had just taken a request sent at a clearly
higher level (within `RECENT_LATENCIES` latencies, this episode): it holds that many
at once; else about places. It is put down to that limit only on evidence that the
refusals depend on load (`hfbatch.capacity.evidence`), else to chance (`Blame.CHANCE`):
it costs only itself, and nothing is cut, paused or learned.

- Places: the sends at its level or above were refused more than the others beyond
  odds of `CHANCE`, as a run since the provider last took one there, or in all. While
  a probe above the learned cap is under way, less will do (odds of `PROBE_CHANCE`;
  failing costs a place, and the probe comes back): its sends against those below the
  cap before it began, and when none of those was refused, any refusal at all.
- The pace: a run of refusals at any level beyond odds of `CHANCE`; while the pace
  probes above the last rate that held, any refusal (a window answers an overshoot
  with one 429 at a time, which no run shows).

Blamed on places, the limit drops to the level less one. If a request sent after
that cut is blamed on places too, the provider is held (paused, then one request
per backoff) so refusals do not churn; and if such an episode reaches a request
blamed on the pace, the cuts are undone.

A Retry-After pauses the provider (only it) when its 429 is blamed on the pace: the
provider would refuse everything until then. Put down to chance, it pauses nothing:
the provider takes other requests meanwhile, so a pause would cost all of them for
one row, and with such 429s as common as successes (50% with Retry-After: 1) a
pause per 429 would never end. In the model that case keeps 0.99 of capacity.
"""

from __future__ import annotations

import asyncio
import collections
import enum
import math
import time
from collections.abc import Callable, Sequence

from hfbatch.capacity.concurrency import ConcurrencyLimit
from hfbatch.capacity.evidence import Baseline, Outcome, RefusalEvidence, Send
from hfbatch.capacity.headers import RateHint
from hfbatch.capacity.learned import LearnedLimits
from hfbatch.capacity.rate import RateLimit

__all__ = ["Blame", "ProviderCapacity", "Slot", "acquire_any"]

RECENT_LATENCIES = 2.0  # an acceptance this many latencies before a refusal still says what the provider takes
HOLD_ROUNDS = 2  # 429s blamed on places, each sent after the last cut, that hold the provider
KEEP_SENDS = 4  # sends the evidence keeps, per place of the user's maximum
PROBE_CHANCE = 1e-2  # odds of chance that fail a probe above the learned cap (a cut below it needs CHANCE)


class Blame(enum.Enum):
    """Which limit a 429 was put down to."""

    CONCURRENCY = "concurrency"
    REQUESTS = "requests"
    TOKENS = "tokens"
    #: None: nothing says the refusals depend on our load (shared load upstream, other users).
    CHANCE = "chance"


class Slot(Send):
    """One request's hold on a provider: taken by `acquire`, ended by exactly one `on_*` call."""

    __slots__ = ("cost", "limit", "paced", "released")

    def __init__(self, level: int, limit: int, sent_at: float, cost: float, paced: bool) -> None:
        super().__init__(level, sent_at)
        self.limit = limit
        #: Tokens booked against the token pace (an estimate, corrected by `on_success(tokens=...)`).
        self.cost = cost
        #: Whether the request pace held this request back.
        self.paced = paced
        self.released = False


class ProviderCapacity:
    """A provider's learned limits in one place: take a `Slot`, send, report how it went."""

    def __init__(
        self,
        concurrency: ConcurrencyLimit,
        requests: RateLimit | None = None,
        tokens: RateLimit | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.concurrency = concurrency
        self.requests = requests if requests is not None else RateLimit(clock=clock)
        self.tokens = tokens
        self.evidence = RefusalEvidence(KEEP_SENDS * concurrency.maximum, concurrency.maximum)
        self._clock = clock
        self._pacing = 0  # holders of a place still waiting for their turn: not in flight yet
        self._streak_since: float | None = None
        self._reacted = 0  # the last send (`Send.seq`) before our last cut
        self._probe: Baseline | None = None  # the sends below the probe under way, before it
        self._rounds = 0
        self._saved: tuple[int, int | None] | None = None
        self._accepted: collections.deque[tuple[float, int]] = collections.deque()  # (sent at, level)

    @classmethod
    def build(
        cls,
        max_concurrency: int,
        *,
        rpm: float | None = None,
        tpm: float | None = None,
        learned: LearnedLimits | None = None,
        time_scale: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> ProviderCapacity:
        """Limits from the user's caps (`--provider-concurrency`, `--rpm`, `--tpm`) and a warm start.

        `time_scale` multiplies every delay of the paces' own (backoffs, probe intervals), as
        HFBATCH_TIME_SCALE does the runner's; Retry-After values come to `on_rate_limited` scaled.
        """
        ceiling = None if learned is None else learned.concurrency
        rate = None if learned is None else learned.rate
        token_rate = None if learned is None else learned.token_rate
        concurrency = ConcurrencyLimit(max_concurrency, ceiling=ceiling, clock=clock)
        requests = RateLimit(
            maximum=None if rpm is None else rpm / 60.0, ceiling=rate, time_scale=time_scale, clock=clock
        )
        tokens = None
        if tpm is not None or token_rate is not None:
            tokens = RateLimit(
                maximum=None if tpm is None else tpm / 60.0,
                ceiling=token_rate,
                burst=1.0,
                learn=False,
                time_scale=time_scale,
                clock=clock,
            )
        return cls(concurrency, requests, tokens, clock=clock)

    # --- taking and giving back ------------------------------------------------------------------

    def delay_until_ready(self, cost: float = 0.0) -> float:
        """Seconds until the paces allow a send (0: now); whether a place is free is `has_room`."""
        delay = self.requests.delay_until_ready()
        if self.tokens is not None and cost > 0:
            delay = max(delay, self.tokens.delay_until_ready())
        return delay

    def has_room(self, cost: float = 0.0) -> bool:
        """True when `try_acquire` would succeed now."""
        if not (self.concurrency.has_room() and self.requests.ready()):
            return False
        return self.tokens is None or cost <= 0 or self.tokens.ready()

    def try_acquire(self, cost: float = 0.0) -> Slot | None:
        """A slot if a place is free and the paces allow a send now, else None (nothing taken)."""
        # `has_room` and each limit's taking in one pass: this runs for every request.
        concurrency = self.concurrency
        if not concurrency.has_room():
            return None
        tokens = self.tokens if cost > 0 else None
        if tokens is not None and not tokens.ready():
            return None
        if not self.requests.take_now():
            return None
        concurrency.in_flight += 1
        if tokens is not None:
            tokens.try_acquire(cost)
        return self._slot(cost, paced=False)

    async def acquire(self, cost: float = 0.0) -> Slot:
        """Wait for a place, then for the paces; cancelling gives both back."""
        await self.concurrency.acquire()
        return await self._paced_slot(cost)

    async def _paced_slot(self, cost: float, paced: bool | None = None) -> Slot:
        """Holding a place, wait for the paces (the request pace is done if `paced` is given)."""
        if paced is None:
            self._pacing += 1
        try:
            if paced is None:
                paced = await self.requests.wait()
            if self.tokens is not None and cost > 0:
                await self.tokens.wait(cost)
        except BaseException:
            self.concurrency.release()
            raise
        finally:
            self._pacing -= 1
        return self._slot(cost, paced=paced)

    def _slot(self, cost: float, paced: bool) -> Slot:
        level = self.concurrency.in_flight - self._pacing
        slot = Slot(level, self.concurrency.limit, self._clock(), cost, paced)
        self.evidence.sent(slot)
        return slot

    def release(self, slot: Slot) -> None:
        """Give the slot's place back (idempotent; every `on_*` call does it too)."""
        if not slot.released:
            slot.released = True
            if slot.outcome is Outcome.PENDING:
                self.evidence.dropped(slot)
            self.evidence.ended(slot)
            self.concurrency.release()

    # --- what happened ----------------------------------------------------------------------------

    def on_success(
        self,
        slot: Slot,
        latency: float | None = None,
        *,
        tokens: float | None = None,
        hint: RateHint | None = None,
    ) -> None:
        """The request was answered (2xx); `tokens` is its usage, `hint` its rate-limit headers."""
        now = self._clock()
        self.evidence.taken(slot)
        self.concurrency.on_success(slot.level, now - slot.sent_at if latency is None else latency, slot.limit)
        if self.concurrency.probe_level is None:
            self._probe = None
        elif self._probe is None and self.concurrency.ceiling is not None:
            # A probe begins. Its yardstick is below the ceiling, which itself may have been a lucky probe.
            self._probe = self.evidence.baseline(self.concurrency.ceiling + 1, self.concurrency.ceiling)
        self.requests.on_success(sent_at=slot.sent_at)
        if self.tokens is not None and tokens is not None:
            self.tokens.correct(slot.cost, tokens)
            self.tokens.on_success(tokens, sent_at=slot.sent_at)
        accepted = self._accepted
        accepted.append((slot.sent_at, slot.level))
        since = now - 2.0 * self._recent()
        while accepted and accepted[0][0] < since:
            accepted.popleft()
        if self._streak_since is not None and slot.sent_at > self._streak_since:
            self._streak_since = None
            self._rounds = 0
            self._saved = None
        if hint is not None:
            self.apply_hint(hint, slot.sent_at)
        self.release(slot)  # after learning, so a waiter woken by it sees the new limit

    def on_rate_limited(
        self,
        slot: Slot,
        *,
        retry_after: float | None = None,
        hint: RateHint | None = None,
    ) -> Blame:
        """The request was answered 429; return which limit it was put down to (`Blame.CHANCE`: none).

        `retry_after` (seconds, already scaled by the caller's time scale) pauses the provider
        only when the 429 is put down to the pace (see the module docstring).
        """
        if retry_after is None and hint is not None:
            retry_after = hint.retry_after
        self.evidence.refused(slot)
        blame = self._blame(slot, hint)
        if blame is Blame.CHANCE:
            self.requests.note_refused(slot.sent_at)
        elif blame is Blame.CONCURRENCY:
            self._on_place_refusal(slot)
        elif blame is Blame.TOKENS and self.tokens is not None:
            self.tokens.on_rate_limited(retry_after, sent_at=slot.sent_at)
        else:
            if self._saved is not None:
                # The episode's refusals were about the pace after all: its cuts were never about places.
                self.concurrency.restore(*self._saved)
                self._saved = None
            self.requests.on_rate_limited(retry_after, sent_at=slot.sent_at)
        if hint is not None:
            self.apply_hint(hint, slot.sent_at)
        self.release(slot)  # after the cut, so a waiter woken by it sees the new limit
        return blame

    def on_dropped(self, slot: Slot) -> None:
        """The request ended some other way (error, timeout, cancelled): give the place back, learn nothing."""
        self.release(slot)

    def apply_hint(self, hint: RateHint, sent_at: float | None = None) -> None:
        """Keep to the request and token budgets a reply's headers state (`sent_at`: when its request went)."""
        self.requests.apply_hint(hint.limit_requests, hint.remaining_requests, hint.reset_requests, sent_at)
        if self.tokens is not None:
            self.tokens.apply_hint(hint.limit_tokens, hint.remaining_tokens, hint.reset_tokens, sent_at)

    def _blame(self, slot: Slot, hint: RateHint | None) -> Blame:
        if hint is not None and hint.tokens_exhausted and self.tokens is not None:
            return Blame.TOKENS
        if hint is not None and hint.requests_exhausted:
            return Blame.REQUESTS
        blame = self._limit_at(slot)
        if blame is Blame.CONCURRENCY:
            ceiling = self.concurrency.ceiling
            if self._probe is not None and ceiling is not None and slot.seen > ceiling:
                return blame if self.evidence.probe_failed(slot, self._probe, PROBE_CHANCE) else Blame.CHANCE
            return blame if self.evidence.is_cap(slot) else Blame.CHANCE
        # Above the last pace that held, the pace is probing: failing that costs little.
        if self.requests.above_ceiling:
            return blame  # a probe of the pace failed, as it would against a window
        return blame if self.evidence.is_run(slot) else Blame.CHANCE

    def _limit_at(self, slot: Slot) -> Blame:
        """Which limit a 429 would be about, if it is about one."""
        if slot.level <= self.concurrency.minimum:
            return Blame.REQUESTS
        if (slot.paced or self.requests.rate is not None) and slot.level < slot.limit:
            return Blame.REQUESTS  # a pace is in force and places were to spare
        if slot.level < self._recent_level(slot.sent_at) - max(1, slot.level // 10):
            return Blame.REQUESTS
        return Blame.CONCURRENCY

    def _recent(self) -> float:
        """How far back an accepted request still shows what the provider takes at once: two latencies."""
        latency = self.concurrency.latency
        return RECENT_LATENCIES * latency if latency is not None else 0.0

    def _recent_level(self, sent_at: float) -> int:
        """The highest level at which a request sent lately (around `sent_at`) was accepted."""
        since = sent_at - self._recent()
        if self._streak_since is not None:
            since = max(since, self._streak_since)  # what it took before places ran short says nothing now
        return max((level for t, level in self._accepted if t >= since), default=0)

    def _on_place_refusal(self, slot: Slot) -> None:
        if self._streak_since is None:
            self._streak_since = slot.sent_at
            self._rounds = 0
            self._saved = (self.concurrency.limit, self.concurrency.ceiling)
        self.concurrency.on_rate_limited(slot.seen)
        self._probe = None
        if slot.seq > self._reacted:
            # Sent after our last cut, and still refused: a new round.
            self._rounds += 1
            self._reacted = self.evidence.last_seq
            if self._rounds >= HOLD_ROUNDS:
                self.requests.hold()

    # --- what was learned --------------------------------------------------------------------------

    def learned(self, wall_time: float | None = None) -> LearnedLimits:
        """What this run learned about the provider, stamped with `wall_time` (default: now)."""
        return LearnedLimits(
            concurrency=self.concurrency.ceiling,
            rate=self.requests.ceiling,
            token_rate=None if self.tokens is None else self.tokens.ceiling,
            learned_at=time.time() if wall_time is None else wall_time,
        )


async def acquire_any(capacities: Sequence[ProviderCapacity], cost: float = 0.0) -> tuple[int, Slot]:
    """A slot on the first provider, in order, with room now; else on whichever has room first.

    Returns the provider's index and the slot. One future waits at once for a place
    on every provider that has none and, holding a place, for the next turn of the
    one pace that comes soonest; waiting costs no task. Cancelling it takes nothing.
    """
    for i, cap in enumerate(capacities):
        slot = cap.try_acquire(cost)
        if slot is not None:
            return i, slot
    fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    # The provider with a free place whose pace lets a request go soonest (the first such in order).
    paced, soonest = -1, math.inf
    for i, cap in enumerate(capacities):
        if cap.concurrency.has_room():
            delay = cap.delay_until_ready(cost)
            if paced < 0 or delay < soonest:
                paced, soonest = i, delay
    held = False
    if paced >= 0:
        cap = capacities[paced]
        cap.concurrency.try_acquire()
        cap._pacing += 1
        held = cap.requests._note_held(cap._clock())
        cap.requests._join(fut, paced)
    for i, cap in enumerate(capacities):
        if i != paced:
            cap.concurrency._join(fut, i)
    try:
        won = await fut
    except asyncio.CancelledError:
        _settle(capacities, fut, paced, keep=False)
        raise
    _settle(capacities, fut, paced, keep=True)
    cap = capacities[won]
    if cap.tokens is None or cost <= 0:
        # Nothing left to wait for (the pace held this place, or its turn is free now): no coroutine.
        if won == paced:
            cap._pacing -= 1
            return won, cap._slot(cost, paced=held)
        if cap.requests.take_now():
            return won, cap._slot(cost, paced=False)
    return won, await cap._paced_slot(cost, paced=held if won == paced else None)


def _settle(capacities: Sequence[ProviderCapacity], fut: asyncio.Future[int], paced: int, *, keep: bool) -> None:
    """Leave every queue `fut` waits in; give back what it holds, except what it won if `keep`."""
    won = fut.result() if fut.done() and not fut.cancelled() else None
    # The queue that granted `fut` has already dropped it.
    for i, cap in enumerate(capacities):
        if i != paced and i != won:
            cap.concurrency._leave(fut)
    if paced >= 0:
        cap = capacities[paced]
        if won != paced:
            cap.requests._leave(fut)
        if won == paced and not keep:
            cap.requests._unbook()  # the turn came just as we were cancelled
        if won != paced or not keep:
            cap._pacing -= 1  # the place held for the pace goes back
            cap.concurrency.release()
    if won is not None and won != paced and not keep:
        capacities[won].concurrency.release()  # a place came just as we were cancelled
