"""A pacer for requests (or tokens) per second whose rate is learned from 429s, headers and successes.

Pacing is GCRA (a token bucket kept as the time the next unit may go): "can I send
now?" (`try_acquire`) and "how long until I can?" (`delay_until_ready`) are O(1);
`wait` queues callers first come, first served behind one timer, which is reset
whenever a pause, a probe or a new pace moves the next turn.

Learning, when the provider refuses for rate (`on_rate_limited`):
- sends pause: until Retry-After when given, else for a backoff that doubles
  per round of refusals (`BACKOFF_START` .. `BACKOFF_MAX`); while refusals go on,
  only one request goes per pause (a half-open probe), never a burst;
- before any rate is known, the first episode is measured end to end: what the
  provider accepted from the first send until it took one again, over that time,
  which is also about the length of its window;
- at the first refusal of a later episode the window was full, so the sustainable
  rate is what the provider accepted over the last window (`MEASURE` seconds while
  the window is unknown), and the pace drops to `CUT` of it (never below half).
While the pace binds and nothing is refused, it probes upward once per window (at
least `PROBE_SECONDS`): in doubling steps while below the measured ceiling or on a
first guess, by `PROBE_STEP` above it, and half as often after each episode at about
the same rate. A window answers up to one window late, so probing faster overshoots.

`time_scale` multiplies this pacer's own delays (the backoffs, the shortest probe
interval) for tests; what the provider states or shows (Retry-After, header resets,
the windows and rates measured) is taken as it comes.
"""

from __future__ import annotations

import asyncio
import collections
import math
import time
from collections.abc import Callable

from hfbatch import defaults

__all__ = ["RateLimit"]

BACKOFF_START = 0.25  # first pause after a refusal that named no Retry-After, seconds
BACKOFF_MAX = 2.0
MEASURE = 10.0  # seconds the sustainable rate is measured over while the window's length is unknown
MIN_MEASURE = 1.0  # a shorter measurement is noise: keep the pace, only cut it
MAX_WINDOW = 120.0  # longest window learned (and history kept), seconds
MAX_CUT = 0.5  # one episode never cuts the pace below half
CUT = 0.95  # pace as a share of the measured sustainable rate after an episode
PROBE_STEP = 0.02  # first probe: +2% of the pace
MAX_PROBE_STEP = 0.25
PROBE_SECONDS = 2.0  # between probes while the pace binds
PROBE_BACKOFF_MAX = 3  # episodes at about the same rate stretch the probe interval up to 2**3 times
SAME_LEVEL = 0.1  # a measured rate within 10% of the ceiling is "the same level"
BINDING = 1.0  # the pace binds if it delayed a send in the last second
MIN_RATE = 0.01  # requests per second: never slower than one per 100 s


class RateLimit:
    """Paces sends to a rate that is learned (or set by the user), with pauses for Retry-After."""

    def __init__(
        self,
        *,
        maximum: float | None = None,
        start: float | None = None,
        ceiling: float | None = None,
        burst: float = 1.0,
        minimum: float = MIN_RATE,
        learn: bool = True,
        max_pause: float = defaults.MAX_RETRY_AFTER,
        time_scale: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if maximum is not None and not maximum > 0:
            raise ValueError(f"maximum rate must be positive, got {maximum}")
        if not time_scale > 0:
            raise ValueError(f"time_scale must be positive, got {time_scale}")
        self.maximum = maximum
        self.time_scale = time_scale
        self.minimum = minimum
        self.learn = learn
        self.burst = max(1.0, burst)
        self.max_pause = max_pause
        self._clock = clock
        #: Learned sustainable rate (None until an episode of 429s or a warm start).
        self.ceiling = None if ceiling is None else self._bound(ceiling)
        if start is None:
            start = self.ceiling
        #: Learned length of the provider's window, seconds (from the first episode; None: unknown).
        self.window: float | None = None
        #: Learned pace, per second (None: not paced by learning; `maximum` still applies).
        self.rate: float | None = None if start is None else self._bound(start)
        self.paused_until = -math.inf
        now = clock()
        self._tat = now  # when the next unit may go, burst tolerance aside
        self._probe_at = -math.inf  # while probing: when the next lone request may go
        self._waiters: collections.deque[tuple[asyncio.Future[int], float, int]] = collections.deque()
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._budget: float | None = None  # what the last headers said is left, less what we sent since
        self._budget_until = -math.inf
        self._budget_at = -math.inf
        self._refill = 0.0
        self._sends: collections.deque[tuple[float, float]] = collections.deque()  # (send time, cost)
        # Sends are kept `MAX_WINDOW` seconds once the provider has shown it limits us (a 429, rate
        # headers); until then `MEASURE` seconds do (what a first cut measures), so a long run at a
        # high rate that is never limited does not hold minutes of sends (300,000 at 2,500/s).
        self._history = MEASURE
        self._refused: collections.deque[float] = collections.deque()  # send times of refused requests
        self._total_accepted = 0.0
        self._first_send: float | None = None
        self._last_bound = -math.inf
        self._last_change = now
        self._step = PROBE_STEP
        self._fails = 0
        # The current episode of refusals: when it began (by send time), when we last reacted, rounds so far.
        self._streak_since: float | None = None
        self._rate_episode = False
        self._reacted_at = -math.inf
        self._rounds = 0
        self._probing = False
        self._last_refused = -math.inf
        self._named_until = -math.inf  # the end of the last pause the server named (Retry-After)
        self._settled = self.rate is not None  # a cut has measured the rate (or a warm start gave it)

    def _bound(self, rate: float) -> float:
        rate = max(self.minimum, rate)
        return rate if self.maximum is None else min(self.maximum, rate)

    @property
    def pace(self) -> float | None:
        """Units per second sends are spaced at now (None: not paced)."""
        rate, maximum = self.rate, self.maximum
        if rate is None or maximum is None:
            return maximum if rate is None else rate
        return min(rate, maximum)

    @property
    def probing(self) -> bool:
        """True while refusals go on and only one request goes per backoff."""
        return self._probing

    @property
    def above_ceiling(self) -> bool:
        """True while the learned pace tries a rate above the last one that held (a probe upward)."""
        return self.rate is not None and self.ceiling is not None and self.rate > self.ceiling

    # --- pacing ---------------------------------------------------------------------------------

    def _ready_at(self) -> float:
        pace = self.pace
        at = max(self.paused_until, self._tat - ((self.burst - 1.0) / pace if pace else 0.0))
        if self._budget is not None and self._out_of_budget(self._clock()):
            refilled = self._budget_until
            if self._refill > 0:
                refilled = min(refilled, self._budget_at + (1.0 - self._budget) / self._refill)
            at = max(at, refilled)
        return max(at, self._probe_at) if self._probing else at

    def _out_of_budget(self, now: float) -> bool:
        """Whether the headers' budget, refilled since, has less than one unit left."""
        if self._budget is None or now >= self._budget_until:
            return False
        return self._budget + self._refill * (now - self._budget_at) < 1.0

    def ready(self) -> bool:
        """True when `try_acquire` would take the turn now."""
        return not self._waiters and self._ready_at() <= self._clock()

    def delay_until_ready(self) -> float:
        """Seconds until a unit may go (0: now), callers already queued in `wait` aside."""
        return max(0.0, self._ready_at() - self._clock())

    def take_now(self, cost: float = 1.0) -> bool:
        """Take the turn if it is free now and nobody is queued in `wait`; else False, nothing taken or noted."""
        start = self._clock()
        if not self._waiters and self._ready_at() <= start:
            self._book(start, cost)
            return True
        return False

    def try_acquire(self, cost: float = 1.0) -> bool:
        """`take_now`, noting when the pace is what holds the send back (the pace binds: it may probe up)."""
        if self.take_now(cost):
            return True
        self._note_held(self._clock())
        return False

    async def wait(self, cost: float = 1.0) -> bool:
        """Wait for this caller's turn, first come first served; True if the pace (not a pause) held it back."""
        if self.take_now(cost):
            return False
        held = self._note_held(self._clock())
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._join(fut, 0, cost)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self._unbook(cost)  # the turn was handed over just as we were cancelled
            else:
                self._leave(fut)
            raise
        return held

    def _join(self, fut: asyncio.Future[int], tag: int, cost: float = 1.0) -> None:
        """Queue `fut` for a turn; granting it books the turn and sets its result to `tag`."""
        self._loop = asyncio.get_running_loop()
        self._waiters.append((fut, cost, tag))
        self._arm()

    def _leave(self, fut: asyncio.Future[int]) -> None:
        """Take `fut` out of the queue (granted elsewhere, or cancelled)."""
        for entry in self._waiters:
            if entry[0] is fut:
                self._waiters.remove(entry)
                self._arm()
                return

    def _arm(self) -> None:
        """(Re)set the one timer that hands the turn to the first waiter when it comes."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._waiters and self._loop is not None and not self._loop.is_closed():
            self._timer = self._loop.call_later(max(0.0, self._ready_at() - self._clock()), self._fire)

    def _fire(self) -> None:
        self._timer = None
        now = self._clock()
        while self._waiters and self._ready_at() <= now:
            fut, cost, tag = self._waiters.popleft()
            if not fut.done():
                self._book(now, cost)
                fut.set_result(tag)
        self._arm()

    def _note_held(self, now: float) -> bool:
        """Whether the pace, rather than a pause or a probe, is what holds a caller back now."""
        if now >= self.paused_until and not self._probing and self.pace is not None and not self._out_of_budget(now):
            self._last_bound = now
            return True
        return False

    def _book(self, start: float, cost: float) -> None:
        if self._first_send is None:
            self._first_send = start
        sends = self._sends
        sends.append((start, cost))
        since = start - self._history
        while sends[0][0] < since:
            sends.popleft()  # never the send just added
        if self._budget is not None:
            self._budget -= cost
        pace = self.pace
        if self._probing:
            # Half-open: one request per backoff until one is accepted.
            self._probe_at = start + self._backoff()
        if pace is None:
            self._tat = start
        else:
            self._tat = max(self._tat, start) + cost / pace

    def _unbook(self, cost: float = 1.0) -> None:
        pace = self.pace
        if pace is not None:
            self._tat -= cost / pace
        self._arm()

    def correct(self, estimated: float, actual: float) -> None:
        """A request booked at `estimated` units turned out to cost `actual` (tokens from usage)."""
        pace = self.pace
        if pace is not None and math.isfinite(actual) and actual >= 0:
            self._tat += (actual - estimated) / pace
            self._arm()

    def _pause(self, until: float) -> None:
        if until > self.paused_until:
            self.paused_until = until
            self._tat = max(self._tat, until)
            self._arm()

    def _backoff(self) -> float:
        # The exponent is capped: refusals may go on for thousands of rounds (2.0 ** 1024 overflows).
        return self.time_scale * min(BACKOFF_MAX, BACKOFF_START * 2.0 ** min(max(0, self._rounds - 1), 32))

    # --- learning -------------------------------------------------------------------------------

    def on_success(self, cost: float = 1.0, sent_at: float | None = None) -> None:
        """A request (costing `cost` units) sent at `sent_at` was accepted."""
        now = self._clock()
        self._total_accepted += cost
        if self._streak_since is not None and (sent_at is None or sent_at > self._streak_since):
            self._end_episode(now if sent_at is None else sent_at, cost)
        elif self._streak_since is None:
            self._maybe_probe(now)

    def on_rate_limited(self, retry_after: float | None = None, sent_at: float | None = None) -> None:
        """A request sent at `sent_at` was refused for rate; `retry_after` is the server's delay, if any."""
        now = self._clock()
        sent = now if sent_at is None else sent_at
        self._last_refused = now
        self.note_refused(sent)
        if self._streak_since is None or not self._rate_episode:
            if self._streak_since is None:
                self._streak_since = sent
                self._rounds = 0
            self._rate_episode = True
            if self.learn:
                self._cut(now)
        if retry_after is not None:
            self._rounds += 1
            self._reacted_at = now
            self._named_until = now + min(max(0.0, retry_after), self.max_pause)
            self._pause(self._named_until)
            self._probing = self.pace is None
        elif sent >= self._reacted_at:
            # Requests sent before our last reaction saw the old pace; only later ones escalate.
            self._rounds += 1
            self._reacted_at = now
            self._pause(now + self._backoff())
            self._probing = True

    def note_refused(self, sent_at: float) -> None:
        """A request sent at `sent_at` was refused for another reason (by chance): not taken, nothing learned."""
        self._history = MAX_WINDOW
        self._refused.append(sent_at)
        while self._refused and self._refused[0] < self._clock() - MAX_WINDOW:
            self._refused.popleft()

    def hold(self, seconds: float | None = None) -> None:
        """Pause (for `seconds`, else the backoff), then let one request through per backoff until one is accepted.

        Learns nothing about the rate: the caller blamed the refusals on something else.
        """
        now = self._clock()
        if self._streak_since is None:
            self._streak_since = now
            self._rounds = 0
        self._rounds += 1
        self._reacted_at = now
        self._pause(now + (self._backoff() if seconds is None else seconds))
        self._probing = True

    def pause_for(self, seconds: float) -> None:
        """Send nothing for `seconds` (a budget the headers say is spent)."""
        self._pause(self._clock() + min(max(0.0, seconds), self.max_pause))

    def apply_hint(
        self, limit: int | None, remaining: int | None, reset: float | None, sent_at: float | None = None
    ) -> None:
        """Keep to the budget a reply's headers state: `remaining` units now, all `limit` back in `reset` seconds.

        As OpenAI and Anthropic describe it, the budget refills steadily, at
        (limit - remaining) / reset; with no limit given it comes back at the reset.
        `sent_at` is when that reply's request went: what we sent after it is not in
        the provider's count yet, so it comes off the budget here. A send may go while
        at least one unit is left, whatever it costs.
        """
        if remaining is None or reset is None:
            return
        self._history = MAX_WINDOW
        now = self._clock()
        reset = min(max(0.0, reset), self.max_pause)
        later = 0.0
        if sent_at is not None:
            for t, cost in reversed(self._sends):  # newest first: only what went after `sent_at`
                if t <= sent_at:
                    break
                later += cost
        self._budget = float(remaining - later)
        self._budget_at = now
        self._budget_until = now + reset
        if limit is not None and reset > 0:
            self._refill = max(limit - remaining, 1) / reset
        else:
            self._refill = 0.0
        self._arm()

    def _measured(self, now: float) -> float | None:
        """Units sent and not refused per second over the last window: taken, or in flight (refusals come fast)."""
        span = self.window or MEASURE
        start = max(now - span, self._first_send if self._first_send is not None else now)
        if now - start < MIN_MEASURE:
            return None
        sent = sum(c for t, c in self._sends if t >= start)
        refused = sum(1 for t in self._refused if t >= start)  # requests: only the request pace learns
        return max(0, sent - refused) / (now - start)

    def _cut(self, now: float) -> None:
        if self.rate is None:
            return  # first episode: measured when it ends
        measured = self._measured(now)
        measured = self.rate if measured is None else min(measured, self.rate)
        if self.ceiling is not None and measured >= self.ceiling * (1.0 - SAME_LEVEL):
            self._fails += 1
        else:
            self._fails = 0
        self.ceiling = self._bound(measured)
        self.rate = self._bound(max(CUT * measured, MAX_CUT * self.rate))
        self._step = PROBE_STEP
        self._last_change = now
        self._settled = True

    def _end_episode(self, accepted_at: float, cost: float) -> None:
        first = self._first_send
        if self._rate_episode and self.learn and self.rate is None and first is not None:
            # What the provider took before refusing, over the time until it took one again: it
            # reopened after the last refusal (or at the Retry-After it named) and before this request.
            named = self._named_until if self._named_until <= accepted_at else -math.inf
            reopened = (max(self._last_refused, named) + accepted_at) / 2.0
            elapsed = reopened - first
            before = self._total_accepted - cost
            if elapsed > 0 and before > 0:
                self.ceiling = self._bound(before / elapsed)
                self.rate = self.ceiling
                self._last_change = self._clock()
                if self._streak_since is not None and self._streak_since - first <= MEASURE:
                    # One window's budget went in the opening burst: that is about the window's length.
                    self.window = min(MAX_WINDOW, max(MIN_MEASURE, elapsed))
        self._streak_since = None
        self._rate_episode = False
        self._rounds = 0
        self._probing = False
        self._arm()

    def _maybe_probe(self, now: float) -> None:
        if not self.learn or self.rate is None:
            return
        if self.maximum is not None and self.rate >= self.maximum:
            return
        if now - self._last_bound > BINDING:
            return  # not pacing anyone: no evidence a faster pace would be used
        # A window limit answers up to one window late: once the rate is measured, probe no faster than that.
        window = self.window if self._settled and self.window is not None else 0.0
        interval = max(PROBE_SECONDS * self.time_scale, window) * 2 ** min(self._fails, PROBE_BACKOFF_MAX)
        if now - self._last_change < interval:
            return
        below = self.ceiling is not None and self.rate < self.ceiling
        if self.ceiling is None or self.rate > self.ceiling:
            self.ceiling = self.rate  # it held for a whole interval
        self.rate = self._bound(self.rate * (1.0 + self._step))
        # Back up to the known ceiling in growing steps, and while the rate is a first guess;
        # above a measured ceiling, one small step at a time.
        grow = below or not self._settled
        self._step = min(self._step * 2.0, MAX_PROBE_STEP) if grow else PROBE_STEP
        self._last_change = now
        self._arm()
