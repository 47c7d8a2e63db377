"""Trying a request on one provider after another: the one loop both the client and the runner use.

The loop owns the order of events (attempt, classify, retry or move on); a
`Scheduler` owns the shared state across requests: which providers are out,
benched or paused, how many requests each may have in flight, and the stats.
"""

from __future__ import annotations

import asyncio
import copy
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from hfbatch.errors import APIError, ModelNotSupportedError
from hfbatch.retry import Action, RetryPolicy, decide
from hfbatch.wire import ChatResult

__all__ = ["BasicScheduler", "Scheduler", "call_with_failover"]

Send = Callable[[str], Awaitable[ChatResult]]


class Scheduler(Protocol):
    """Shared provider state that the fail-over loop consults and informs."""

    def is_out(self, provider: str) -> bool:
        """True when the provider is done for this run (402, model not served, down)."""
        ...

    def why_out(self, provider: str) -> APIError | None:
        """The error that put the provider out, if it is out."""
        ...

    def is_ready(self, provider: str) -> bool:
        """True when the provider would take a request now (not out, benched or paused)."""
        ...

    async def wait_ready(self, provider: str) -> None:
        """Return once the provider is ready or out."""
        ...

    def acquire(self, provider: str) -> Awaitable[None]:
        """Wait for one of the provider's in-flight places (the attempt gives it back with `release`)."""
        ...

    def release(self, provider: str) -> None:
        """Give back the place taken by `acquire`."""
        ...

    def on_success(self, provider: str, result: ChatResult) -> None:
        """An attempt succeeded."""
        ...

    def on_failure(self, provider: str, error: APIError, latency: float) -> None:
        """An attempt failed."""
        ...

    def on_retry(self, provider: str, delay: float, error: APIError) -> None:
        """The row will be retried on the same provider after `delay` seconds."""
        ...

    def on_failover(self, provider: str, error: APIError, drop: bool) -> None:
        """The row leaves the provider; with `drop`, so does every other row, for good."""
        ...


class BasicScheduler:
    """A scheduler with no limits: it only remembers providers that are out (for the client)."""

    def __init__(self) -> None:
        self.out: dict[str, APIError] = {}

    def is_out(self, provider: str) -> bool:
        """True once a provider answered 402, 403 or model-not-supported."""
        return provider in self.out

    def why_out(self, provider: str) -> APIError | None:
        """The error that put the provider out, if it is out."""
        return self.out.get(provider)

    def is_ready(self, provider: str) -> bool:
        """Any provider not out is ready."""
        return provider not in self.out

    async def wait_ready(self, provider: str) -> None:
        """Nothing to wait for."""

    async def acquire(self, provider: str) -> None:
        """No per-provider bound."""

    def release(self, provider: str) -> None:
        """Nothing to give back."""

    def on_success(self, provider: str, result: ChatResult) -> None:
        """Nothing to record."""

    def on_failure(self, provider: str, error: APIError, latency: float) -> None:
        """Nothing to record."""

    def on_retry(self, provider: str, delay: float, error: APIError) -> None:
        """Nothing to record."""

    def on_failover(self, provider: str, error: APIError, drop: bool) -> None:
        """Remember a dropped provider."""
        if drop:
            self.out[provider] = error


def _next_provider(remaining: list[str], scheduler: Scheduler) -> str | None:
    """The first provider ready now, else the first one not out (the caller will wait for it)."""
    for p in remaining:
        if scheduler.is_ready(p):
            return p
    remaining[:] = [p for p in remaining if not scheduler.is_out(p)]
    return remaining[0] if remaining else None


async def call_with_failover(
    send: Send,
    providers: Sequence[str],
    policy: RetryPolicy,
    scheduler: Scheduler,
    *,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    rng: random.Random | None = None,
) -> ChatResult:
    """Send on each provider in turn, retrying per `policy`, until one succeeds.

    Raises the last error when every provider failed, at once for errors that no
    provider would answer differently (a bad request, a wrong token); when no
    provider was left to try, an error of the class of what put the first one out.
    """
    attempts = 0
    last_error: APIError | None = None
    remaining = list(providers)
    while (provider := _next_provider(remaining, scheduler)) is not None:
        remaining.remove(provider)
        retries = 0
        while True:
            if not scheduler.is_ready(provider):
                await scheduler.wait_ready(provider)
                if scheduler.is_out(provider):
                    break
            attempts += 1
            await scheduler.acquire(provider)
            started = time.monotonic()
            try:
                result = await send(provider)
            except APIError as exc:
                error = exc
                error.attempts = attempts
            else:
                result.attempts = attempts
                result.latency = time.monotonic() - started
                scheduler.on_success(provider, result)
                return result
            finally:
                scheduler.release(provider)
            scheduler.on_failure(provider, error, time.monotonic() - started)
            last_error = error
            decision = decide(
                error,
                retries,
                policy,
                other_provider_ready=any(scheduler.is_ready(p) for p in remaining),
                rng=rng,
            )
            if decision.action in (Action.STOP_RUN, Action.FAIL_ROW):
                raise error
            if decision.action in (Action.FAIL_OVER, Action.DROP_PROVIDER):
                scheduler.on_failover(provider, error, decision.action is Action.DROP_PROVIDER)
                break
            scheduler.on_retry(provider, decision.delay, error)
            retries += 1
            await sleep(decision.delay)
    if last_error is not None:
        raise last_error
    raise _all_out(providers, scheduler)


def _all_out(providers: Sequence[str], scheduler: Scheduler) -> APIError:
    """The error for a request no provider was left to try: of the class of what put the first one out."""
    for provider in providers:
        cause = scheduler.why_out(provider)
        if cause is not None:
            error = copy.copy(cause)
            error.message = f"no provider left to try; {provider} is out for this run: {cause.message}"
            error.args = (error._render(),)
            error.attempts = 0
            return error
    names = ", ".join(providers) or "none"
    return ModelNotSupportedError(f"no provider left to try (providers: {names})")
