"""Trying a request on one provider after another: the one loop both the client and the runner use.

The loop owns the order of events for one request (take a provider with room, send,
classify the failure, retry or move on); a `Scheduler` owns what requests share:
which providers are out or benched, how much each may take now (in flight, per second),
and the stats. The runner's scheduler is `provider_pool.ProviderPool`; the client's
is `BasicScheduler`.

The rules, from the README's failure table:
- a 429 is back-pressure, never a failure of the row: the scheduler learns from it and the
  row goes to whichever provider has room next, for as long as the run goes on (or until
  the row's `deadline`, when the caller set one);
- a transient failure (5xx, timeout, reset, malformed or empty reply) is retried on the same
  provider up to `policy.max_retries` times, then elsewhere; when every live provider has had
  its turn, the row cycles back to them after a backoff; the row fails only when it has met
  `policy.max_attempts` transient failures in all;
- 402/403/404 put the provider out for everyone; 400/422 fail the row; 401 stops the run.
"""

from __future__ import annotations

import asyncio
import collections
import copy
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol, TypeVar, cast

from hfbatch.errors import APIError, ModelNotSupportedError, RateLimitError
from hfbatch.hedging import HedgedRequest
from hfbatch.retry import Action, RetryPolicy, backoff_delay, decide
from hfbatch.wire import ChatResult

__all__ = ["BasicScheduler", "Lease", "Scheduler", "call_with_failover"]

Send = Callable[[str], Awaitable[ChatResult]]


class Lease(Protocol):
    """One attempt's hold on a provider, from `Scheduler.acquire` to `on_success`/`on_failure`/`release`."""

    provider: str


L = TypeVar("L", bound=Lease)


class Scheduler(Protocol[L]):
    """Shared provider state that the fail-over loop consults and informs; `L` is its lease type."""

    def is_out(self, provider: str) -> bool:
        """True when the provider is done for this run (402, model not served, too many breaker trips)."""
        ...

    def why_out(self, provider: str) -> APIError | None:
        """The error that put the provider out, if it is out."""
        ...

    def acquire(self, candidates: Sequence[str], cost: float = 0.0) -> Awaitable[L]:
        """Wait until one of `candidates` (route order, none out) may take a request of `cost` tokens; hold it."""
        ...

    def release(self, lease: L) -> None:
        """Give the place back if no `on_*` call did (idempotent; the loop calls it in `finally`)."""
        ...

    def on_success(self, lease: L, result: ChatResult) -> None:
        """The attempt succeeded."""
        ...

    def on_failure(self, lease: L, error: APIError, latency: float) -> None:
        """The attempt failed (a 429 included: the scheduler learns the provider's capacity from it)."""
        ...

    def on_retry(self, provider: str, delay: float, error: APIError) -> None:
        """The row will be retried after `delay` seconds."""
        ...

    def on_failover(self, provider: str, error: APIError, drop: bool) -> None:
        """The row leaves the provider; with `drop`, so does every other row, for good."""
        ...


class _BasicLease:
    __slots__ = ("provider",)

    def __init__(self, provider: str) -> None:
        self.provider = provider


class BasicScheduler:
    """The client's scheduler: no limits; it remembers providers that are out and pauses one that said 429."""

    def __init__(self, policy: RetryPolicy | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.out: dict[str, APIError] = {}
        self.policy = policy or RetryPolicy()
        self._clock = clock
        self._paused: dict[str, float] = {}
        self._pauses: collections.Counter[str] = collections.Counter()

    def is_out(self, provider: str) -> bool:
        """True once a provider answered 402, 403 or model-not-supported."""
        return provider in self.out

    def why_out(self, provider: str) -> APIError | None:
        """The error that put the provider out, if it is out."""
        return self.out.get(provider)

    async def acquire(self, candidates: Sequence[str], cost: float = 0.0) -> _BasicLease:
        """The first candidate not paused by a 429; else wait for the one whose pause ends first."""
        now = self._clock()
        for p in candidates:
            if self._paused.get(p, 0.0) <= now:
                return _BasicLease(p)
        first = min(candidates, key=lambda p: self._paused[p])
        await asyncio.sleep(self._paused[first] - now)
        return _BasicLease(first)

    def release(self, lease: _BasicLease) -> None:
        """Nothing to give back."""

    def on_success(self, lease: _BasicLease, result: ChatResult) -> None:
        """A success ends the provider's 429 backoff."""
        self._pauses.pop(lease.provider, None)

    def on_failure(self, lease: _BasicLease, error: APIError, latency: float) -> None:
        """A 429 pauses the provider for its Retry-After, or a growing backoff."""
        if isinstance(error, RateLimitError):
            p = lease.provider
            decision = decide(error, self._pauses[p], self.policy, other_provider_ready=False)
            self._pauses[p] += 1
            self._paused[p] = self._clock() + decision.delay

    def on_retry(self, provider: str, delay: float, error: APIError) -> None:
        """Nothing to record."""

    def on_failover(self, provider: str, error: APIError, drop: bool) -> None:
        """Remember a dropped provider."""
        if drop:
            self.out[provider] = error


async def call_with_failover(
    send: Send,
    providers: Sequence[str],
    policy: RetryPolicy,
    scheduler: Scheduler[L],
    *,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    rng: random.Random | None = None,
    deadline: float | None = None,
    clock: Callable[[], float] = time.monotonic,
    cost: float = 0.0,
    patient: bool = True,
    flight: HedgedRequest | None = None,
) -> ChatResult:
    """Send on the providers (in route order, by capacity) until one succeeds; the module's rules apply.

    Raises at once for errors no provider would answer differently (a bad request, a
    wrong token); the last transient error when the row's budget is spent; a RateLimitError
    when `deadline` (a `clock()` time) passes while the row waits for capacity; and, when no
    provider is left, an error of the class of what put the first one out. Not `patient`
    (a one-off request, as the client's `chat`), 429s count against `policy.max_attempts` too.
    With a `flight` (the worker's hedging record), a request still in flight late in the run's tail may be
    answered by a hedge.
    """
    attempts = 0
    transient = 0
    cycles = 0
    last_error: APIError | None = None
    retries: dict[str, int] = {}  # on each provider, since the row came to it
    tried: set[str] = set()  # providers whose retries this row has spent, this cycle
    is_out = scheduler.is_out
    while True:
        # Most rows meet no provider that is out: the route as given, without building a list.
        live = [p for p in providers if not is_out(p)] if any(map(is_out, providers)) else providers
        if not live:
            if last_error is not None and not isinstance(last_error, RateLimitError):
                raise last_error
            raise _all_out(providers, scheduler)
        candidates = [p for p in live if p not in tried] if tried else live
        if not candidates:
            # Every live provider has had its retries: come back to them after a pause.
            delay = backoff_delay(cycles, policy, rng)
            cycles += 1
            tried.clear()
            retries.clear()
            await sleep(delay)
            continue
        if deadline is not None:
            lease = await _acquire_by(scheduler, candidates, cost, deadline, clock, last_error)
        else:
            lease = await scheduler.acquire(candidates, cost)
        provider = lease.provider
        attempts += 1
        started = time.monotonic()
        # With a flight, the request is noted so a hedge may answer for it (hfbatch.hedging).
        # Inline rather than a helper coroutine: this runs for every request.
        if flight is not None:
            flight.begin(cast(Any, lease), live, send)  # the pool's lease
        try:
            try:
                result = await send(provider)
            except asyncio.CancelledError:
                won = None if flight is None else flight.result()
                if won is None:
                    raise
                won.attempts = attempts + 1  # the hedge counted and answered for the pool
                return won
            except APIError as exc:
                rescued = None if flight is None else await flight.rescue()
                if rescued is None:
                    raise
                # The first request failed and its hedge answered: the failure is counted, the row is done.
                exc.attempts = attempts
                scheduler.on_failure(lease, exc, time.monotonic() - started)
                rescued.attempts = attempts + 1
                return rescued
            finally:
                if flight is not None:
                    flight.end()
        except APIError as exc:
            error = exc
            error.attempts = attempts
            scheduler.on_failure(lease, error, time.monotonic() - started)
        else:
            result.attempts = attempts
            result.latency = time.monotonic() - started
            scheduler.on_success(lease, result)
            return result
        finally:
            scheduler.release(lease)
        last_error = error
        decision = decide(error, retries.get(provider, 0), policy, other_provider_ready=False, rng=rng)
        if decision.action in (Action.STOP_RUN, Action.FAIL_ROW):
            raise error
        if decision.action is Action.REQUEUE:
            if not patient:
                transient += 1
                if transient >= policy.max_attempts:
                    raise error
            continue  # capacity, not the row: the scheduler decides who takes it next
        if decision.action is Action.DROP_PROVIDER:
            scheduler.on_failover(provider, error, True)
            continue
        transient += 1
        if transient >= policy.max_attempts:
            raise error
        if decision.action is Action.FAIL_OVER:
            scheduler.on_failover(provider, error, False)
            tried.add(provider)
            continue
        scheduler.on_retry(provider, decision.delay, error)
        retries[provider] = retries.get(provider, 0) + 1
        await sleep(decision.delay)


async def _acquire_by(
    scheduler: Scheduler[L],
    candidates: Sequence[str],
    cost: float,
    deadline: float,
    clock: Callable[[], float],
    last_error: APIError | None,
) -> L:
    """`scheduler.acquire`, given up when `deadline` passes: the row's wait for capacity is over."""
    try:
        async with asyncio.timeout(max(0.0, deadline - clock())):
            return await scheduler.acquire(candidates, cost)
    except TimeoutError:
        waited = RateLimitError(
            "no provider had room for this row before its deadline (--max-wait); rerun to retry it",
            provider=last_error.provider if last_error is not None else None,
        )
        raise waited from None


def _all_out(providers: Sequence[str], scheduler: Scheduler[Any]) -> APIError:
    """The error for a request no provider was left to try: of the class of what put the first one out."""
    for provider in providers:
        cause = scheduler.why_out(provider)
        if cause is not None:
            error = copy.copy(cause)
            error.rewrite(f"no provider left to try; {provider} is out for this run: {cause.message}", cause.body)
            error.attempts = 0
            return error
    names = ", ".join(providers) or "none"
    return ModelNotSupportedError(f"no provider left to try (providers: {names})")
