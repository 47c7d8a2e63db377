"""The runner's scheduler: spill-over across providers, learned limits, pauses, breakers, on a fake clock."""

from __future__ import annotations

import asyncio
import heapq

import pytest

from hfbatch.errors import PaymentRequiredError, RateLimitError, ServerError, TransportError
from hfbatch.provider_pool import Lease, ProviderLimits, ProviderPool
from hfbatch.stats import RunStats
from hfbatch.wire import ChatResult


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def pool(clock: Clock, concurrency: int = 8, **kw: object) -> ProviderPool:
    """Two providers, `concurrency` in flight each, breaker after 3 failures, at most 2 trips."""
    params: dict[str, object] = {
        "clock": clock,
        "breaker_threshold": 3,
        "breaker_cooldown": 10.0,
        "breaker_max_trips": 2,
    }
    params.update(kw)
    limits = dict.fromkeys(["a", "b"], ProviderLimits(concurrency=concurrency))
    return ProviderPool(["a", "b"], RunStats(), limits=limits, **params)  # type: ignore[arg-type]


def ok(provider: str = "a") -> ChatResult:
    """A successful result."""
    return ChatResult("x", "stop", 1, 1, provider, "m", latency=0.01)


def rate_limited(provider: str = "a", retry_after: float | None = None) -> RateLimitError:
    """A 429 from `provider`."""
    return RateLimitError("slow down", provider=provider, status=429, retry_after=retry_after)


async def test_rows_spill_over_to_the_next_provider_when_the_first_is_full() -> None:
    """With the first provider at its limit, the next row goes to the second at once, not after a 429."""
    p = pool(Clock(), concurrency=2)
    leases = [await p.acquire(["a", "b"]) for _ in range(4)]
    assert [lease.provider for lease in leases] == ["a", "a", "b", "b"]
    fifth = asyncio.create_task(p.acquire(["a", "b"]))
    await asyncio.sleep(0)
    assert not fifth.done()
    p.on_success(leases[1], ok("a"))
    assert (await asyncio.wait_for(fifth, 1)).provider == "a"


async def served(p: ProviderPool, clock: Clock, provider: str, n: int) -> None:
    """`n` requests to `provider`, one at a time, all answered."""
    for _ in range(n):
        lease = await p.acquire([provider])
        clock.now += 0.01
        p.on_success(lease, ok(provider))


async def test_refusals_above_four_in_flight_lower_that_providers_limit_only() -> None:
    """The fourth request refused again and again sets that limit to three, not half; the other keeps its own."""
    clock = Clock()
    p = pool(clock, concurrency=8)
    await served(p, clock, "a", 20)
    leases = [await p.acquire(["a"]) for _ in range(3)]
    for _ in range(10):
        lease = await p.acquire(["a"])
        p.on_failure(lease, rate_limited(), latency=0.01)
        if p.capacity("a").concurrency.limit == 3:
            break
    assert p.capacity("a").concurrency.limit == 3
    assert p.capacity("b").concurrency.limit > 3
    assert len(leases) == 3


async def test_a_lone_429_pauses_nothing_even_with_retry_after() -> None:
    """One refusal amid successes is chance (shared load): the next row may go to the same provider at once."""
    clock = Clock()
    p = pool(clock)
    await served(p, clock, "a", 20)
    lease = await p.acquire(["a", "b"])
    p.on_failure(lease, rate_limited(retry_after=5.0), latency=0.01)
    assert (await p.acquire(["a", "b"])).provider == "a"


async def test_a_provider_refusing_every_row_with_retry_after_is_paused_and_rows_go_elsewhere() -> None:
    """Refused again and again, the provider honours its Retry-After: rows go to the other meanwhile."""
    clock = Clock()
    p = pool(clock)
    await served(p, clock, "a", 20)
    for _ in range(10):
        lease = await p.acquire(["a", "b"])
        if lease.provider == "b":
            break
        p.on_failure(lease, rate_limited(retry_after=5.0), latency=0.01)
    assert lease.provider == "b"
    assert p.capacity("a").requests.delay_until_ready() == pytest.approx(5.0)


async def test_the_pools_time_scale_shrinks_the_capacitys_own_backoffs() -> None:
    """With HFBATCH_TIME_SCALE 0.001, a provider refusing everything without Retry-After pauses 0.25 ms, not 0.25 s."""
    clock = Clock()
    p = pool(clock, time_scale=0.001)
    await served(p, clock, "a", 20)
    while p.capacity("a").requests.delay_until_ready() == 0:
        p.on_failure(await p.acquire(["a"]), rate_limited(), latency=0.01)
    assert p.capacity("a").requests.delay_until_ready() == pytest.approx(0.00025)


def breaker_failure(p: ProviderPool, provider: str, error: Exception) -> None:
    """Count a failure on `provider` as if an attempt had been made (a lease without a real slot)."""
    slot = p.capacity(provider).try_acquire()
    assert slot is not None
    p.on_failure(Lease(provider, slot, 0.0), error, latency=0.1)  # type: ignore[arg-type]


async def test_breaker_benches_after_consecutive_failures_then_puts_out() -> None:
    """Three failures in a row bench the provider; benched twice with no success, it is out."""
    clock = Clock()
    p = pool(clock)
    for _ in range(3):
        breaker_failure(p, "a", ServerError("boom", provider="a", status=500))
    assert not p.is_out("a")
    assert (await p.acquire(["a", "b"])).provider == "b"  # benched: skipped
    assert p.stats.provider("a").breaker_trips == 1
    clock.now += 10.0
    assert (await p.acquire(["a", "b"])).provider == "a"
    breaker_failure(p, "a", TransportError("reset", provider="a"))  # half-open: one failure re-trips
    assert p.is_out("a")
    assert "circuit-breaker" in str(p.why_out("a"))
    assert not p.all_out()


async def test_a_success_closes_the_breaker() -> None:
    """Failures separated by a success never trip the breaker."""
    p = pool(Clock())
    for _ in range(10):
        breaker_failure(p, "a", ServerError("boom", provider="a", status=500))
        breaker_failure(p, "a", ServerError("boom", provider="a", status=500))
        p.on_success(await p.acquire(["a"]), ok())
    assert p.stats.provider("a").breaker_trips == 0


async def test_dropped_provider_is_out_and_counted() -> None:
    """A 402 drop puts the provider out for everyone and counts a fail-over."""
    p = pool(Clock())
    err = PaymentRequiredError("no credits", provider="a", status=402)
    breaker_failure(p, "a", err)
    p.on_failover("a", err, drop=True)
    assert p.is_out("a") and p.why_out("a") is err
    s = p.stats.provider("a")
    assert s.requests == 1 and s.failures["402"] == 1 and s.failovers_out == 1


async def test_a_retry_after_beyond_the_cap_puts_the_provider_out_saying_why() -> None:
    """Retry-After: 999999 does not pause the run for eleven days: the provider is out, with the reason."""
    p = pool(Clock(), max_pause=120.0)
    lease = await p.acquire(["a", "b"])
    p.on_failure(lease, rate_limited(retry_after=999_999.0), latency=0.1)
    assert p.is_out("a") and "longer than the 120s" in str(p.why_out("a"))
    assert (await p.acquire(["a", "b"])).provider == "b"


async def test_stop_waiting_wakes_every_row_waiting_for_capacity_at_once() -> None:
    """On SIGTERM, rows waiting for a place (nothing in flight) stop now, not after the grace period."""
    p = pool(Clock(), concurrency=1)
    await p.acquire(["a"])
    waiter = asyncio.create_task(p.acquire(["a"]))
    sleeper = asyncio.create_task(p.sleep(3600))
    await asyncio.sleep(0)
    p.stop_waiting()
    for task in (waiter, sleeper):
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 1)
    with pytest.raises(asyncio.CancelledError):
        await p.acquire(["a"])


async def test_the_run_wide_rpm_spaces_requests_out() -> None:
    """--rpm bounds the whole run: at 6000 per minute, 5 requests take at least 40 ms across providers."""
    limits = dict.fromkeys(["a", "b"], ProviderLimits(concurrency=8))
    p = ProviderPool(["a", "b"], RunStats(), limits=limits, run_rpm=6000)
    loop = asyncio.get_running_loop()
    started = loop.time()
    for _ in range(5):
        await p.acquire(["a", "b"])
    assert loop.time() - started >= 0.035


@pytest.mark.parametrize(("providers", "holds_back"), [(["a"], False), (["a", "b"], True)])
def test_latency_holds_places_back_only_where_rows_can_spill_over(providers: list[str], holds_back: bool) -> None:
    """A provider that queues past 16 stops slow start when others can take rows; alone it gets --concurrency."""
    clock = Clock()
    limits = dict.fromkeys(providers, ProviderLimits(concurrency=128))
    p = ProviderPool(providers, RunStats(), limits=limits, clock=clock)
    capacity = 16  # requests the provider serves at once; more only wait in its queue
    in_flight: list[tuple[float, int, Lease]] = []  # (answered at, send order, lease)
    sent = 0
    while sent < 3000:
        while (lease := p.try_acquire(["a"])) is not None:
            sent += 1
            latency = 0.1 * max(1.0, (len(in_flight) + 1) / capacity)
            heapq.heappush(in_flight, (clock.now + latency, sent, lease))
        answered_at, _, lease = heapq.heappop(in_flight)
        clock.now = answered_at
        p.on_success(lease, ChatResult("x", "stop", 1, 1, "a", "m", latency=answered_at - lease.slot.sent_at))
    limit = p.capacity("a").concurrency.limit
    if holds_back:
        assert limit <= 2 * capacity
    else:
        assert limit == 128  # nothing refused: what the user allows
