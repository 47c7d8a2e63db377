"""Per-provider limits, Retry-After pauses and circuit breakers, with a fake clock."""

from __future__ import annotations

import asyncio

import pytest

from hfbatch.errors import PaymentRequiredError, RateLimitError, ServerError, TransportError
from hfbatch.provider_pool import AdaptiveLimiter, ProviderPool
from hfbatch.stats import RunStats
from hfbatch.wire import ChatResult


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def pool(clock: Clock, **kw: object) -> ProviderPool:
    """Two providers, eight in flight each, breaker after 3 failures, at most 2 trips."""
    params: dict[str, object] = {
        "per_provider": 8,
        "clock": clock,
        "breaker_threshold": 3,
        "breaker_cooldown": 10.0,
        "breaker_max_trips": 2,
    }
    params.update(kw)
    return ProviderPool(["a", "b"], RunStats(), **params)  # type: ignore[arg-type]


def ok(provider: str = "a") -> ChatResult:
    """A successful result."""
    return ChatResult("x", "stop", 1, 1, provider, "m", latency=0.01)


async def test_limiter_holds_callers_past_the_limit_until_a_release() -> None:
    """The third acquire on a limit of two waits for a release."""
    limiter = AdaptiveLimiter(2)
    await limiter.acquire()
    await limiter.acquire()
    third = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0)
    assert not third.done()
    limiter.release()
    await asyncio.wait_for(third, 1)
    assert limiter.in_flight == 2


async def test_limiter_shrinks_and_grows_back() -> None:
    """Halving lowers how many may be in flight; successes grow it back to the maximum, not past it."""
    limiter = AdaptiveLimiter(8)
    limiter.decrease()
    limiter.decrease()
    assert int(limiter.limit) == 2
    for _ in range(200):
        limiter.increase()
    assert limiter.limit == 8


async def test_cancelled_waiter_does_not_leak_a_place() -> None:
    """A caller cancelled while waiting leaves the count as it was."""
    limiter = AdaptiveLimiter(1)
    await limiter.acquire()
    waiter = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    limiter.release()
    assert limiter.in_flight == 0
    await asyncio.wait_for(limiter.acquire(), 1)


def test_429_halves_that_providers_limit_once_per_window() -> None:
    """Many 429s from requests sent before the cut lower the limit once, and only for that provider."""
    clock = Clock()
    p = pool(clock)
    for _ in range(6):
        p.on_failure("a", RateLimitError("slow down", provider="a", status=429), latency=0.5)
    assert p._state("a").limiter.limit == 4
    assert p._state("b").limiter.limit == 8
    clock.now += 1.0
    p.on_failure("a", RateLimitError("slow down", provider="a", status=429), latency=0.5)
    assert p._state("a").limiter.limit == 2


def test_retry_after_pauses_only_that_provider() -> None:
    """A Retry-After holds its provider until it passes; the other stays ready."""
    clock = Clock()
    p = pool(clock)
    p.on_failure("a", RateLimitError("wait", provider="a", status=429, retry_after=5.0), latency=0.1)
    assert not p.is_ready("a") and p.is_ready("b")
    clock.now += 5.0
    assert p.is_ready("a")


def test_breaker_benches_after_consecutive_failures_then_puts_out() -> None:
    """Three failures in a row bench the provider; benched twice with no success, it is out."""
    clock = Clock()
    p = pool(clock)
    for _ in range(3):
        p.on_failure("a", ServerError("boom", provider="a", status=500), latency=0.1)
    assert not p.is_ready("a") and not p.is_out("a")
    assert p.stats.provider("a").breaker_trips == 1
    clock.now += 10.0
    assert p.is_ready("a")
    p.on_failure("a", TransportError("reset", provider="a"), latency=0.1)  # half-open: one failure re-trips
    assert p.is_out("a")
    assert "circuit-breaker" in str(p.why_out("a"))
    assert not p.all_out()


def test_a_success_closes_the_breaker() -> None:
    """Failures separated by a success never trip the breaker."""
    clock = Clock()
    p = pool(clock)
    for _ in range(10):
        p.on_failure("a", ServerError("boom", provider="a", status=500), latency=0.1)
        p.on_failure("a", ServerError("boom", provider="a", status=500), latency=0.1)
        p.on_success("a", ok())
    assert p.is_ready("a") and p.stats.provider("a").breaker_trips == 0


def test_dropped_provider_is_out_and_counted() -> None:
    """A 402 drop puts the provider out for everyone and counts a fail-over."""
    p = pool(Clock())
    err = PaymentRequiredError("no credits", provider="a", status=402)
    p.on_failure("a", err, latency=0.1)
    p.on_failover("a", err, drop=True)
    assert p.is_out("a") and p.why_out("a") is err
    s = p.stats.provider("a")
    assert s.requests == 1 and s.failures["402"] == 1 and s.failovers_out == 1


async def test_wait_ready_returns_when_the_pause_ends() -> None:
    """wait_ready sleeps out a (tiny) pause and then returns."""
    p = ProviderPool(["a"], RunStats(), per_provider=2, time_scale=0.001)
    p.on_failure("a", RateLimitError("wait", provider="a", status=429, retry_after=2.0), latency=0.0)
    assert not p.is_ready("a")
    await asyncio.wait_for(p.wait_ready("a"), 1)
    assert p.is_ready("a")
