"""Learning each provider's capacity: in-flight caps, request paces, rate-limit headers, warm starts.

Everything runs on a fake clock or on the model's virtual-time loop: nothing sleeps for real.
"""

from __future__ import annotations

import asyncio
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hfbatch.capacity import (
    STALE_AFTER,
    Blame,
    ConcurrencyLimit,
    LearnedLimits,
    ProviderCapacity,
    RateHint,
    RateLimit,
    acquire_any,
    dump_learned,
    load_learned,
    parse_duration,
    parse_ratelimit_headers,
)
from hfbatch.capacity.concurrency import PROBE_HOLD, PROBE_ROUNDS
from hfbatch.capacity.evidence import SURE_RUN
from hfbatch.capacity.model import ModelProvider, run_model, run_virtual
from hfbatch.capacity.scenarios import SCENARIOS, run_scenario

NOW = 1_700_000_000.0


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move time forward."""
        self.now += seconds


# --- header parsing ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        pytest.param("1s", 1.0, id="seconds"),
        pytest.param("6m0s", 360.0, id="minutes-and-seconds"),
        pytest.param("20ms", 0.02, id="milliseconds"),
        pytest.param("1.5s", 1.5, id="fraction"),
        pytest.param("1h2m3s", 3723.0, id="hours-minutes-seconds"),
        pytest.param("250us", 0.00025, id="microseconds"),
        pytest.param("7", 7.0, id="plain-seconds"),
        pytest.param("0.5", 0.5, id="plain-fraction"),
        pytest.param(" 2s ", 2.0, id="spaces"),
        pytest.param("2S", 2.0, id="upper-case-unit"),
        pytest.param("", None, id="empty"),
        pytest.param("-1s", None, id="negative"),
        pytest.param("-3", None, id="negative-plain"),
        pytest.param("soon", None, id="garbage"),
        pytest.param("1x", None, id="unknown-unit"),
        pytest.param("1s2", None, id="trailing-number"),
        pytest.param("inf", None, id="inf"),
        pytest.param("nan", None, id="nan"),
        pytest.param("1e400", None, id="overflows-to-inf"),
    ],
)
def test_parse_duration(text: str, seconds: float | None) -> None:
    """Go-style durations and plain seconds are read; anything else is None."""
    got = parse_duration(text)
    if seconds is None:
        assert got is None
    else:
        assert got == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        pytest.param({}, None, id="nothing"),
        pytest.param({"content-type": "application/json"}, None, id="unrelated"),
        pytest.param(
            {
                "x-ratelimit-limit-requests": "60",
                "x-ratelimit-remaining-requests": "59",
                "x-ratelimit-reset-requests": "1s",
                "x-ratelimit-limit-tokens": "150000",
                "x-ratelimit-remaining-tokens": "149984",
                "x-ratelimit-reset-tokens": "6m0s",
            },
            RateHint(60, 59, 1.0, 150000, 149984, 360.0),
            id="openai-full-set",
        ),
        pytest.param(
            {"X-RateLimit-Remaining-Requests": "0", "X-RateLimit-Reset-Requests": "20ms"},
            RateHint(remaining_requests=0, reset_requests=0.02),
            id="case-insensitive-names",
        ),
        pytest.param(
            {"x-ratelimit-limit": "100", "x-ratelimit-remaining": "3", "x-ratelimit-reset": "12"},
            RateHint(100, 3, 12.0),
            id="generic-trio",
        ),
        pytest.param(
            {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(NOW + 30))},
            RateHint(remaining_requests=0, reset_requests=30.0),
            id="reset-as-unix-time",
        ),
        pytest.param(
            {"RateLimit-Limit": "10", "RateLimit-Remaining": "1", "RateLimit-Reset": "4"},
            RateHint(10, 1, 4.0),
            id="ietf-draft",
        ),
        pytest.param({"retry-after-ms": "1500"}, RateHint(retry_after=1.5), id="retry-after-ms"),
        pytest.param({"Retry-After": "7"}, RateHint(retry_after=7.0), id="retry-after"),
        pytest.param(
            {"x-ratelimit-remaining-requests": "many", "x-ratelimit-reset-requests": "later", "Retry-After": "2"},
            RateHint(retry_after=2.0),
            id="garbage-values-dropped",
        ),
        pytest.param({"x-ratelimit-remaining-requests": "-4"}, None, id="negative-count"),
        pytest.param({"x-ratelimit-remaining-tokens": "12.0"}, RateHint(remaining_tokens=12), id="float-count"),
    ],
)
def test_parse_ratelimit_headers(headers: dict[str, str], expected: RateHint | None) -> None:
    """Each header family lands in the right fields; unusable values are left out."""
    assert parse_ratelimit_headers(headers, NOW) == expected


def test_hint_says_which_budget_is_spent() -> None:
    """A hint with nothing left is exhausted for that budget only."""
    hint = RateHint(remaining_requests=0, remaining_tokens=10)
    assert hint.requests_exhausted
    assert not hint.tokens_exhausted
    assert not RateHint().requests_exhausted


# --- the learned in-flight limit ------------------------------------------------------------------


def fill(limit: ConcurrencyLimit) -> None:
    """Take every free place, as busy workers would."""
    while limit.try_acquire() is not None:
        pass


def succeed_at_limit(limit: ConcurrencyLimit, n: int) -> None:
    """`n` successes of requests that took the last place."""
    for _ in range(n):
        limit.on_success(limit.limit, 0.1, limit.limit)


def test_a_429_cuts_to_the_level_below_it_not_to_half() -> None:
    """A refusal at 17 in flight sets the limit to 16 and remembers 16 as the cap."""
    limit = ConcurrencyLimit(64, start=32)
    limit.on_rate_limited(17)
    assert limit.limit == 16
    assert limit.ceiling == 16


def test_refusals_sent_before_a_cut_do_not_cut_again() -> None:
    """A refusal at a level above the ceiling (sent before the cut) leaves the limit where the cut put it."""
    limit = ConcurrencyLimit(64, start=32)
    limit.on_rate_limited(17)
    limit.on_rate_limited(30)
    assert (limit.limit, limit.ceiling) == (16, 16)


def test_the_limit_probes_one_place_above_the_ceiling_only_after_rounds_of_successes() -> None:
    """At the ceiling, one place more comes after PROBE_ROUNDS rounds of successes, not before."""
    limit = ConcurrencyLimit(64, ceiling=16)
    succeed_at_limit(limit, PROBE_ROUNDS * 16 - 1)
    assert limit.limit == 16
    succeed_at_limit(limit, 1)
    assert limit.limit == 17


def test_failed_probes_at_the_same_ceiling_probe_less_often() -> None:
    """Each probe refused just above the ceiling doubles the successes before the next one."""
    limit = ConcurrencyLimit(64, ceiling=16)
    waits = []
    for _ in range(3):
        n = 0
        while limit.limit == 16:
            succeed_at_limit(limit, 1)
            n += 1
        waits.append(n)
        limit.on_rate_limited(17)
    assert waits == [PROBE_ROUNDS * 16, 2 * PROBE_ROUNDS * 16, 4 * PROBE_ROUNDS * 16]
    assert limit.ceiling == 16


def test_a_probe_that_holds_raises_the_ceiling_and_widens_the_next_step() -> None:
    """PROBE_HOLD rounds at the probed limit with no 429 make it the ceiling; the next probe adds two places."""
    limit = ConcurrencyLimit(64, ceiling=16)
    succeed_at_limit(limit, PROBE_ROUNDS * 16)
    assert limit.limit == 17
    succeed_at_limit(limit, PROBE_HOLD * 17 - 1)
    assert limit.ceiling == 16
    succeed_at_limit(limit, 1)
    assert limit.ceiling == 17
    succeed_at_limit(limit, PROBE_ROUNDS * 17)
    assert limit.limit == 19


def test_successes_that_did_not_take_the_last_place_do_not_grow_the_limit() -> None:
    """With places to spare, the limit has no evidence it could be higher."""
    limit = ConcurrencyLimit(64, ceiling=16)
    for _ in range(1000):
        limit.on_success(3, 0.1, 16)
    assert limit.limit == 16


def test_slow_start_doubles_the_limit_every_round() -> None:
    """Before any 429, each success that took the last place adds one: the limit doubles per round."""
    limit = ConcurrencyLimit(64, start=8)
    for _ in range(8):
        limit.on_success(8, 0.1, 8)
    assert limit.limit == 16


def test_warm_start_begins_at_the_learned_ceiling() -> None:
    """A ceiling from a previous run is where the limit starts, and it probes rather than slow-starts."""
    limit = ConcurrencyLimit(64, ceiling=12)
    assert (limit.limit, limit.ceiling) == (12, 12)
    assert ConcurrencyLimit(8, ceiling=12).limit == 8


@given(
    maximum=st.integers(1, 40),
    events=st.lists(st.tuples(st.booleans(), st.integers(1, 80), st.floats(0.001, 10.0)), max_size=300),
)
def test_the_limit_never_leaves_the_users_bounds(maximum: int, events: list[tuple[bool, int, float]]) -> None:
    """Whatever the replies, the limit stays between the minimum and the user's maximum."""
    limit = ConcurrencyLimit(maximum)
    for ok, level, latency in events:
        if ok:
            limit.on_success(level, latency, level)
        else:
            limit.on_rate_limited(level)
        assert 1 <= limit.limit <= maximum
        assert limit.ceiling is None or 1 <= limit.ceiling <= maximum


def test_try_acquire_reports_the_level_and_stops_at_the_limit() -> None:
    """Places are numbered as they are taken; past the limit there is none."""
    limit = ConcurrencyLimit(4, start=2)
    assert [limit.try_acquire(), limit.try_acquire(), limit.try_acquire()] == [1, 2, None]


def test_waiters_are_served_in_order_and_a_cancelled_one_leaks_nothing() -> None:
    """The third acquire waits for a release; cancelling a waiter leaves the count as it was."""

    async def main() -> None:
        limit = ConcurrencyLimit(8, start=2)
        await limit.acquire()
        await limit.acquire()
        third = asyncio.ensure_future(limit.acquire())
        fourth = asyncio.ensure_future(limit.acquire())
        await asyncio.sleep(0)
        fourth.cancel()
        limit.release()
        assert await third == 2
        with pytest.raises(asyncio.CancelledError):
            await fourth
        limit.release()
        limit.release()
        assert limit.in_flight == 0

    run_virtual(main)


def test_a_provider_that_queues_instead_of_refusing_stops_slow_start() -> None:
    """When successes per second stop growing, slow start ends near the provider's real capacity."""
    clock = Clock()
    limit = ConcurrencyLimit(128, start=8, clock=clock)
    capacity = 16  # requests served at once; more only wait
    while limit.ceiling is None and limit.limit < 128:
        n = limit.limit
        clock.advance(0.1 * max(1.0, n / capacity))  # a round: everything sent answers, slower past capacity
        for _ in range(n):
            limit.on_success(limit.limit, 0.1 * max(1.0, n / capacity), limit.limit)
    assert limit.ceiling is not None
    assert limit.ceiling <= 2 * capacity


# --- the learned request pace --------------------------------------------------------------------


def sends_within(pacer: RateLimit, clock: Clock, seconds: float, step: float = 0.001) -> int:
    """How many sends `try_acquire` allows while the clock runs for `seconds`."""
    n = 0
    end = clock.now + seconds
    while clock.now < end:
        while pacer.try_acquire():
            n += 1
        clock.advance(step)
    return n


def test_a_user_rate_paces_sends_evenly() -> None:
    """--rpm 600 lets ten requests go per second, one every 100 ms."""
    clock = Clock()
    pacer = RateLimit(maximum=10.0, clock=clock)
    assert pacer.try_acquire()
    assert not pacer.try_acquire()
    assert pacer.delay_until_ready() == pytest.approx(0.1)
    assert sends_within(pacer, clock, 10.0) == pytest.approx(100, abs=1)


def test_an_unpaced_limiter_never_holds_anyone_back() -> None:
    """With nothing learned and no user rate, every send may go at once."""
    pacer = RateLimit(clock=Clock())
    assert all(pacer.try_acquire() for _ in range(1000))
    assert pacer.pace is None


def test_retry_after_pauses_every_send_until_it_passes() -> None:
    """A 429 naming Retry-After: 3 holds all sends for three seconds."""
    clock = Clock()
    pacer = RateLimit(maximum=100.0, clock=clock)
    pacer.on_rate_limited(retry_after=3.0, sent_at=clock.now)
    assert pacer.delay_until_ready() == pytest.approx(3.0)
    clock.advance(2.9)
    assert not pacer.try_acquire()
    clock.advance(0.1)
    assert pacer.try_acquire()


def test_retry_after_is_capped() -> None:
    """An absurd Retry-After pauses no longer than max_pause."""
    clock = Clock()
    pacer = RateLimit(max_pause=30.0, clock=clock)
    pacer.on_rate_limited(retry_after=86400.0)
    assert pacer.delay_until_ready() == pytest.approx(30.0)


def test_bare_429s_back_off_and_let_one_request_through_per_pause() -> None:
    """With no Retry-After, pauses double per round (0.25 s, 0.5 s, ...) and only a lone probe goes after each."""
    clock = Clock()
    pacer = RateLimit(clock=clock)
    pauses = []
    for _ in range(4):
        pacer.on_rate_limited(sent_at=clock.now)
        pauses.append(pacer.delay_until_ready())
        clock.advance(pacer.delay_until_ready())
        assert pacer.try_acquire()
        assert not pacer.try_acquire()
    assert pauses == pytest.approx([0.25, 0.5, 1.0, 2.0])
    assert pacer.probing
    pacer.on_success(sent_at=clock.now)
    assert all(pacer.try_acquire() for _ in range(10))  # accepted again: sends flow freely


def test_refusals_of_requests_sent_before_the_pause_do_not_lengthen_it() -> None:
    """A burst refused all at once is one round: one pause, not one per refusal."""
    clock = Clock()
    pacer = RateLimit(clock=clock)
    sent = clock.now
    clock.advance(0.01)
    for _ in range(14):
        pacer.on_rate_limited(sent_at=sent)
    assert pacer.delay_until_ready() == pytest.approx(0.25)


def test_the_first_episode_learns_the_rate_and_the_window() -> None:
    """50 accepted at once, refusals until the window reopens 5 s later: 10 per second, a 5 s window."""
    clock = Clock()
    pacer = RateLimit(clock=clock)
    start = clock.now
    for _ in range(60):
        assert pacer.try_acquire()
    clock.advance(0.005)
    for _ in range(10):
        pacer.on_rate_limited(retry_after=5.0, sent_at=start)
    clock.advance(0.095)
    for _ in range(50):
        pacer.on_success(sent_at=start)
    clock.advance(pacer.delay_until_ready())
    sent = clock.now
    assert pacer.try_acquire()
    clock.advance(0.1)
    pacer.on_success(sent_at=sent)
    assert pacer.rate == pytest.approx(10.0, rel=0.02)
    assert pacer.window == pytest.approx(5.0, rel=0.02)


def test_an_episode_cuts_the_pace_to_what_the_window_took() -> None:
    """Paced at 10/s, then 12/s, against 50 per 5 s: the first 429 drops the pace just under 10/s."""
    clock = Clock()
    pacer = RateLimit(start=10.0, clock=clock)
    pacer.window = 5.0
    accepted: list[float] = []
    for _ in range(100):
        clock.advance(0.1)
        assert pacer.try_acquire()
        accepted.append(clock.now)
    pacer.rate = 12.0
    while True:
        clock.advance(pacer.delay_until_ready() or 1 / 12)
        assert pacer.try_acquire()
        accepted = [t for t in accepted if t > clock.now - 5.0]
        if len(accepted) >= 50:
            pacer.on_rate_limited(sent_at=clock.now)
            break
        accepted.append(clock.now)
    assert pacer.ceiling == pytest.approx(10.0, rel=0.05)
    assert pacer.rate == pytest.approx(9.5, rel=0.05)


def test_the_pace_probes_upward_only_while_it_binds() -> None:
    """A pace nobody waits for stays put; one that holds callers back rises."""
    clock = Clock()
    idle = RateLimit(start=10.0, clock=clock)
    busy = RateLimit(start=10.0, clock=clock)
    for _ in range(100):
        clock.advance(0.1)
        assert idle.try_acquire()
        idle.on_success(sent_at=clock.now)
        busy.try_acquire()
        busy.try_acquire()  # a second caller held back
        busy.on_success(sent_at=clock.now)
    assert idle.rate == 10.0
    assert busy.rate is not None and busy.rate > 10.0


def test_learning_never_passes_the_users_rate() -> None:
    """With --rpm set, probing stops at it and warm starts are cut to it."""
    clock = Clock()
    pacer = RateLimit(maximum=5.0, start=4.9, clock=clock)
    for _ in range(2000):
        clock.advance(0.05)
        pacer.try_acquire()
        pacer.try_acquire()
        pacer.on_success(sent_at=clock.now)
    assert pacer.rate is not None and pacer.rate <= 5.0
    assert RateLimit(maximum=5.0, start=50.0, clock=clock).rate == 5.0


def test_headers_pause_sends_before_any_429() -> None:
    """A reply saying no request is left, all 60 back in 6 s, holds sends until one has refilled (0.1 s)."""
    clock = Clock()
    pacer = RateLimit(clock=clock)
    pacer.apply_hint(limit=60, remaining=0, reset=6.0)
    assert not pacer.try_acquire()
    assert pacer.delay_until_ready() == pytest.approx(0.1)
    clock.advance(0.1)
    assert pacer.try_acquire()


def test_headers_budget_counts_what_was_sent_since_the_reply() -> None:
    """Remaining 3 on a reply to a request sent before two others leaves room for one more."""
    clock = Clock()
    pacer = RateLimit(clock=clock)
    first = clock.now
    assert pacer.try_acquire()
    clock.advance(0.01)
    assert pacer.try_acquire()
    assert pacer.try_acquire()
    pacer.apply_hint(limit=None, remaining=3, reset=10.0, sent_at=first)
    assert pacer.try_acquire()
    assert not pacer.try_acquire()
    clock.advance(10.0)
    assert pacer.try_acquire()


def test_token_pace_books_estimates_and_corrects_them_from_usage() -> None:
    """600 tokens per second: a 300-token estimate waits half a second; usage of 900 pushes the next turn on."""
    clock = Clock()
    tokens = RateLimit(maximum=600.0, learn=False, clock=clock)
    assert tokens.try_acquire(300)
    assert tokens.delay_until_ready() == pytest.approx(0.5)
    tokens.correct(300, 900)
    assert tokens.delay_until_ready() == pytest.approx(1.5)
    tokens.correct(900, 0)
    assert tokens.delay_until_ready() == 0.0


def test_waiters_take_turns_in_order_at_the_pace() -> None:
    """Callers queued in `wait` go one per interval, first come first served."""

    async def main() -> list[tuple[int, float]]:
        loop = asyncio.get_running_loop()
        pacer = RateLimit(maximum=10.0, clock=loop.time)
        order: list[tuple[int, float]] = []

        async def caller(i: int) -> None:
            await pacer.wait()
            order.append((i, round(loop.time(), 6)))

        async with asyncio.TaskGroup() as tg:
            for i in range(5):
                tg.create_task(caller(i))
        return order

    assert run_virtual(main) == [(0, 0.0), (1, 0.1), (2, 0.2), (3, 0.3), (4, 0.4)]


def test_a_pause_arriving_while_callers_wait_holds_them_too() -> None:
    """A Retry-After that comes in while callers are queued moves their turns past it."""

    async def main() -> float:
        loop = asyncio.get_running_loop()
        pacer = RateLimit(maximum=10.0, clock=loop.time)
        assert pacer.try_acquire()
        waiter = asyncio.ensure_future(pacer.wait())
        await asyncio.sleep(0.05)
        pacer.on_rate_limited(retry_after=2.0, sent_at=0.0)
        await waiter
        return loop.time()

    assert run_virtual(main) == pytest.approx(2.05)


def test_a_cancelled_waiter_gives_its_turn_back() -> None:
    """The next caller gets the turn a cancelled one was queued for."""

    async def main() -> float:
        loop = asyncio.get_running_loop()
        pacer = RateLimit(maximum=1.0, clock=loop.time)
        assert pacer.try_acquire()
        doomed = asyncio.ensure_future(pacer.wait())
        await asyncio.sleep(0.5)
        doomed.cancel()
        await pacer.wait()
        return loop.time()

    assert run_virtual(main) == pytest.approx(1.0)


# --- one provider's capacity: who a 429 blames ----------------------------------------------------


def served(cap: ProviderCapacity, clock: Clock, n: int) -> None:
    """`n` requests sent one at a time and answered."""
    for _ in range(n):
        slot = cap.try_acquire()
        assert slot is not None
        clock.advance(0.01)
        cap.on_success(slot)


def refuse_until_blamed(cap: ProviderCapacity, clock: Clock, most: int = 50, **kw: object) -> tuple[int, Blame]:
    """Send one more request at a time and have it refused, until a 429 is put down to a limit."""
    for n in range(1, most + 1):
        slot = cap.try_acquire()
        assert slot is not None
        clock.advance(0.001)
        blame = cap.on_rate_limited(slot, **kw)  # type: ignore[arg-type]
        if blame is not Blame.CHANCE:
            return n, blame
    return most, Blame.CHANCE


def test_a_lone_429_among_successes_is_chance_and_changes_nothing() -> None:
    """One refusal amid successes cuts no limit, learns no pace and, even with Retry-After, pauses nothing."""
    clock = Clock()
    cap = ProviderCapacity(ConcurrencyLimit(64, start=32), clock=clock)
    slots = [cap.try_acquire() for _ in range(20)]
    clock.advance(0.1)
    for s in slots[:-1]:
        assert s is not None
        cap.on_success(s)
    last = slots[-1]
    assert last is not None
    assert cap.on_rate_limited(last, retry_after=5.0) is Blame.CHANCE
    assert (cap.concurrency.limit, cap.concurrency.ceiling) == (32, None)
    assert cap.requests.rate is None
    assert cap.has_room()


def test_a_run_of_refusals_with_nothing_else_in_flight_is_about_the_rate() -> None:
    """After 50 requests taken, lone requests refused one after another soon blame the pace: a cap below one is none."""
    clock = Clock()
    cap = ProviderCapacity.build(64, clock=clock)
    served(cap, clock, 50)
    n, blame = refuse_until_blamed(cap, clock)
    assert blame is Blame.REQUESTS
    assert 2 <= n <= 5
    assert cap.concurrency.ceiling is None
    assert cap.concurrency.in_flight == 0


def test_a_provider_refusing_everything_from_the_start_is_held() -> None:
    """With no success to compare with, a run of SURE_RUN refusals is still a limit: the provider is paused."""
    clock = Clock()
    cap = ProviderCapacity.build(64, clock=clock)
    n, blame = refuse_until_blamed(cap, clock)
    assert (n, blame) == (SURE_RUN, Blame.REQUESTS)
    assert cap.requests.delay_until_ready() > 0


def test_refusals_above_every_level_the_provider_took_are_about_places() -> None:
    """Eight in flight taken, the ninth refused again and again: the limit becomes 8, after a few 429s, not one."""
    clock = Clock()
    cap = ProviderCapacity(ConcurrencyLimit(64, start=32), clock=clock)
    held = [cap.try_acquire() for _ in range(8)]
    assert all(s is not None for s in held)
    served(cap, clock, 20)  # at the ninth place, one at a time: the provider took nine then
    clock.advance(1.0)
    n, blame = refuse_until_blamed(cap, clock)
    assert blame is Blame.CONCURRENCY
    assert 2 <= n <= 8
    assert (cap.concurrency.limit, cap.concurrency.ceiling) == (8, 8)


def test_refusals_below_a_level_the_provider_just_took_are_about_the_rate() -> None:
    """After 20 at once were all accepted, a run of refusals at 5 in flight is a rate limit, not a cap of 4."""
    clock = Clock()
    cap = ProviderCapacity(ConcurrencyLimit(64, start=32), clock=clock)
    slots = [cap.try_acquire() for _ in range(20)]
    clock.advance(0.1)
    for s in slots:
        assert s is not None
        cap.on_success(s)
    held = [cap.try_acquire() for _ in range(4)]
    assert all(s is not None for s in held)
    n, blame = refuse_until_blamed(cap, clock)
    assert blame is Blame.REQUESTS
    assert n <= 8
    assert cap.concurrency.limit == 32


def test_a_refused_probe_above_the_ceiling_fails_at_once() -> None:
    """Probing one place above a learned cap of 16, with nothing else refused, the first 429 there ends the probe."""
    clock = Clock()
    cap = ProviderCapacity(ConcurrencyLimit(64, ceiling=16), clock=clock)
    held = [cap.try_acquire() for _ in range(16)]
    while cap.concurrency.limit == 16:  # rounds of successes at the cap, each place refilled at once
        slot = held.pop(0)
        assert slot is not None
        clock.advance(0.01)
        cap.on_success(slot)
        held.append(cap.try_acquire())
    probe = cap.try_acquire()
    assert probe is not None and probe.seen == 17
    assert cap.on_rate_limited(probe) is Blame.CONCURRENCY
    assert (cap.concurrency.limit, cap.concurrency.ceiling) == (16, 16)


def test_headers_saying_the_budget_is_spent_blame_the_rate() -> None:
    """A 429 whose headers say no request is left is about the rate whatever the level, at once."""
    clock = Clock()
    cap = ProviderCapacity(ConcurrencyLimit(64, start=32), clock=clock)
    slots = [cap.try_acquire() for _ in range(9)]
    last = slots[-1]
    assert last is not None
    assert cap.on_rate_limited(last, hint=RateHint(remaining_requests=0, reset_requests=1.0)) is Blame.REQUESTS
    assert cap.concurrency.ceiling is None


def test_a_run_with_retry_after_pauses_the_provider_until_then() -> None:
    """Refusals that make a run honour their Retry-After: no send until it passes."""
    clock = Clock()
    cap = ProviderCapacity.build(64, clock=clock)
    served(cap, clock, 50)
    _, blame = refuse_until_blamed(cap, clock, retry_after=3.0)
    assert blame is Blame.REQUESTS
    assert cap.requests.delay_until_ready() == pytest.approx(3.0)


def test_refusals_after_a_cut_hold_the_provider() -> None:
    """Refused again by requests sent after the cut: the provider pauses instead of churning 429s."""
    clock = Clock()
    cap = ProviderCapacity(ConcurrencyLimit(64, start=32), clock=clock)
    served(cap, clock, 30)
    slots = [cap.try_acquire() for _ in range(11)]
    clock.advance(0.01)
    _, blame = refuse_until_blamed(cap, clock)
    assert blame is Blame.CONCURRENCY
    assert cap.concurrency.limit == 11
    assert cap.has_room() is False
    for s in slots[:3]:
        assert s is not None
        cap.on_dropped(s)
    again = cap.try_acquire()
    assert again is not None
    clock.advance(0.01)
    assert cap.on_rate_limited(again) is Blame.CONCURRENCY
    assert cap.requests.delay_until_ready() > 0
    assert cap.requests.probing


def test_every_outcome_gives_the_place_back_once() -> None:
    """Success, 429 and other endings each release the slot; releasing again changes nothing."""
    cap = ProviderCapacity.build(4, clock=Clock())
    a, b, c = cap.try_acquire(), cap.try_acquire(), cap.try_acquire()
    assert a is not None and b is not None and c is not None
    cap.on_success(a)
    cap.on_rate_limited(b)
    cap.on_dropped(c)
    cap.release(c)
    assert cap.concurrency.in_flight == 0


def test_build_applies_user_caps_and_a_warm_start() -> None:
    """--provider-concurrency bounds the limit, --rpm/--tpm become paces, learned values are the start."""
    cap = ProviderCapacity.build(
        10, rpm=120, tpm=60_000, learned=LearnedLimits(concurrency=24, rate=5.0, token_rate=800.0, learned_at=NOW)
    )
    assert cap.concurrency.limit == 10
    assert cap.requests.pace == 2.0
    assert cap.tokens is not None and cap.tokens.pace == 1000.0 * 0.8
    warm = ProviderCapacity.build(64, learned=LearnedLimits(concurrency=24, rate=5.0, learned_at=NOW))
    assert (warm.concurrency.limit, warm.requests.pace) == (24, 5.0)


def test_learned_reports_the_ceilings() -> None:
    """What a run learned is its ceilings, stamped with the wall time given."""
    cap = ProviderCapacity.build(64, clock=Clock())
    cap.concurrency.on_rate_limited(13)
    assert cap.learned(wall_time=NOW) == LearnedLimits(concurrency=12, rate=None, token_rate=None, learned_at=NOW)


def test_acquire_any_prefers_the_first_provider_with_room() -> None:
    """Route order wins while the first provider has room; then the next one is used."""

    async def main() -> list[int]:
        caps = [ProviderCapacity.build(2), ProviderCapacity.build(2)]
        return [(await acquire_any(caps))[0] for _ in range(4)]

    assert run_virtual(main) == [0, 0, 1, 1]


def test_acquire_any_takes_whichever_provider_frees_a_place_first() -> None:
    """With both full, the provider that finishes a request first gets the waiting row."""

    async def main() -> int:
        caps = [ProviderCapacity.build(1), ProviderCapacity.build(1)]
        slot_a = (await acquire_any(caps))[1]
        slot_b = (await acquire_any(caps))[1]
        waiting = asyncio.ensure_future(acquire_any(caps))
        await asyncio.sleep(0.1)
        caps[1].on_success(slot_b)
        index, slot = await waiting
        caps[0].on_success(slot_a)
        caps[index].on_success(slot)
        assert all(c.concurrency.in_flight == 0 for c in caps)
        return index

    assert run_virtual(main) == 1


def test_acquire_any_also_waits_for_a_pace_and_cancelling_leaves_nothing_held() -> None:
    """A paced provider with a free place is waited for; a cancelled wait holds no place and no turn."""

    async def main() -> float:
        loop = asyncio.get_running_loop()
        paced = ProviderCapacity.build(8, rpm=60, clock=loop.time)
        full = ProviderCapacity.build(1, clock=loop.time)
        caps = [full, paced]
        kept = await acquire_any(caps)
        first = await acquire_any(caps)
        assert (kept[0], first[0]) == (0, 1)
        doomed = asyncio.ensure_future(acquire_any(caps))
        await asyncio.sleep(0.5)
        doomed.cancel()
        with pytest.raises(asyncio.CancelledError):
            await doomed
        assert (full.concurrency.in_flight, paced.concurrency.in_flight) == (1, 1)
        index, slot = await acquire_any(caps)
        assert index == 1
        for i, s in (kept, first, (index, slot)):
            caps[i].on_success(s)
        return loop.time()

    assert run_virtual(main) == pytest.approx(1.0)


# --- learned limits between runs ------------------------------------------------------------------


def test_learned_limits_round_trip_and_go_stale() -> None:
    """What is dumped loads back while fresh; a day later it is ignored."""
    limits = {"m:a": LearnedLimits(16, 9.5, None, NOW), "m:b": LearnedLimits(None, None, 1200.0, NOW - 10)}
    data = dump_learned(limits)
    assert load_learned(data, NOW + 60) == limits
    assert load_learned(data, NOW + STALE_AFTER + 1) == {}
    assert LearnedLimits.from_dict(limits["m:a"].to_dict()) == limits["m:a"]


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(None, id="not-a-dict"),
        pytest.param({"version": 99, "providers": {}}, id="other-version"),
        pytest.param({"version": 1, "providers": []}, id="providers-not-a-dict"),
        pytest.param({"version": 1, "providers": {"a": {"concurrency": 0, "learned_at": NOW}}}, id="zero-cap"),
        pytest.param({"version": 1, "providers": {"a": {"concurrency": True, "learned_at": NOW}}}, id="bool-cap"),
        pytest.param({"version": 1, "providers": {"a": {"rate": "fast", "learned_at": NOW}}}, id="text-rate"),
        pytest.param({"version": 1, "providers": {"a": {"rate": math.inf, "learned_at": NOW}}}, id="inf-rate"),
        pytest.param({"version": 1, "providers": {"a": {"concurrency": 4}}}, id="no-time"),
        pytest.param({"version": 1, "providers": {"a": {"learned_at": NOW + 3600}}}, id="from-the-future"),
        pytest.param({"version": 1, "providers": {"a": "16"}}, id="entry-not-a-dict"),
    ],
)
def test_a_damaged_state_file_is_ignored_not_fatal(data: object) -> None:
    """Malformed, foreign or future entries are skipped."""
    assert load_learned(data, NOW) == {}


# --- the model: convergence targets ---------------------------------------------------------------


def test_virtual_time_does_not_sleep() -> None:
    """An hour of virtual sleeping passes at once."""

    async def main() -> float:
        await asyncio.sleep(3600)
        return asyncio.get_running_loop().time()

    assert run_virtual(main) == 3600.0


#: Steady caps settle in seconds: 20 virtual seconds of them are enough and keep the suite quick.
SHORT = {"cap16": 20.0, "cap8": 20.0, "caps-16-16-8": 20.0, "cap16-spread": 20.0, "queue16+cap16": 20.0}
SHORT |= {name: 20.0 for name, s in SCENARIOS.items() if s.chance}


@pytest.mark.parametrize("name", [n for n, s in SCENARIOS.items() if s.target] + ["cap16-spread", "queue16+cap16"])
def test_the_learners_reach_capacity_with_few_429s(name: str) -> None:
    """Goodput >= 90% of capacity (less random 429s), 429s within the bar, and no row refused four times by a limit."""
    scenario = SCENARIOS[name]
    result = run_scenario(scenario, duration=SHORT.get(name))
    assert result.share >= scenario.min_share, result.share
    assert result.refused_share <= scenario.max_refused, result.refused_share
    if not scenario.chance:  # random 429s refuse a row as often as chance has it
        assert result.max_refusals_per_row <= 3


def test_random_429s_cut_nothing_and_pause_nothing() -> None:
    """At 5% or 50% random 429s (with Retry-After: 1 or none), the provider keeps all 64 places and no pace."""
    for name in ("chance5", "chance50-ra"):
        result = run_scenario(SCENARIOS[name], duration=5.0)
        assert all(limit == 64 and pace is None for _, limit, pace in result.providers[0].limits[1:]), name


def test_three_providers_learn_their_own_caps() -> None:
    """16/16/8 in flight are learned per provider."""
    result = run_scenario(SCENARIOS["caps-16-16-8"], duration=10.0)
    assert [p.learned.concurrency if p.learned else None for p in result.providers] == [16, 16, 8]


def test_the_users_caps_are_never_exceeded() -> None:
    """--provider-concurrency 4 keeps the provider at 4 in flight; --rpm 300 keeps it at 5 requests per second."""
    capped = run_model([ModelProvider(caps=((0.0, 16),))], duration=10.0, max_concurrency=4)
    assert capped.providers[0].peak_in_flight == 4
    paced = run_model([ModelProvider(window=50, window_seconds=5.0)], duration=20.0, rpm=300)
    assert paced.rate_limited == 0
    assert paced.goodput == pytest.approx(5.0, abs=0.1)


def test_a_warm_start_skips_the_opening_429s() -> None:
    """Starting at the cap learned last time, the opening burst of refusals is gone."""
    cold = run_scenario(SCENARIOS["cap16"], duration=5.0)
    warm = run_scenario(SCENARIOS["cap16-warm"], duration=5.0)
    assert warm.rate_limited < cold.rate_limited
    assert warm.successes >= cold.successes


def test_token_budget_from_headers_counts_tokens_sent_since() -> None:
    """1000 tokens left on a reply to a request before 700 more were booked: 300 may go, then nothing."""
    clock = Clock()
    tokens = RateLimit(learn=False, clock=clock)
    first = clock.now
    assert tokens.try_acquire(100)
    clock.advance(0.01)
    assert tokens.try_acquire(700)
    tokens.apply_hint(limit=None, remaining=1000, reset=60.0, sent_at=first)
    assert tokens.try_acquire(300)
    assert not tokens.try_acquire(400)


def test_refusals_that_never_end_keep_the_backoff_at_its_cap() -> None:
    """Thousands of 429s in a row (a provider that refuses everything) leave the pause at BACKOFF_MAX."""
    clock = Clock()
    pacer = RateLimit(clock=clock)
    for _ in range(3000):
        clock.now += 0.01
        pacer.on_rate_limited(retry_after=0.01, sent_at=clock.now)
        pacer.on_rate_limited(sent_at=clock.now)
    assert pacer.paused_until - clock.now <= 2.0
