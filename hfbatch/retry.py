"""Retry policy: pure functions over named constants, no I/O.

What to do after an attempt fails is `decide(error, ...)`; how long to wait is
`backoff_delay` or the server's `Retry-After` (read by `hfbatch.http_errors.parse_retry_after`).
"""

from __future__ import annotations

import enum
import math
import os
import random
from dataclasses import dataclass

from hfbatch import defaults
from hfbatch.errors import (
    APIError,
    AuthenticationError,
    BadRequestError,
    ModelNotSupportedError,
    PaymentRequiredError,
    PermissionDeniedError,
    RateLimitError,
    SamplingNotSupportedError,
)

__all__ = ["Action", "Decision", "RetryPolicy", "backoff_delay", "decide", "env_time_scale"]


class Action(enum.Enum):
    """What the caller does after a failed attempt."""

    RETRY = "retry"  # same provider, after `delay`
    REQUEUE = "requeue"  # no capacity (429): the next provider with room takes the row; spends no retries
    FAIL_OVER = "fail_over"  # next provider; this one is kept for other rows
    DROP_PROVIDER = "drop_provider"  # next provider; this one is out for the rest of the run
    FAIL_ROW = "fail_row"  # the request is wrong: no provider would take it
    STOP_RUN = "stop_run"  # the token is wrong: nothing will succeed


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how long to retry: on one provider before failing over, and for a row in all."""

    max_retries: int = defaults.DEFAULT_MAX_RETRIES
    #: Transient failures (5xx, timeouts, resets, malformed or empty replies) a row may meet across
    #: every provider, cycling back to providers already tried, before it fails. 429s never count.
    max_attempts: int = defaults.DEFAULT_ROW_ATTEMPTS
    initial_delay: float = defaults.INITIAL_RETRY_DELAY
    max_delay: float = defaults.MAX_RETRY_DELAY
    max_retry_after: float = defaults.MAX_RETRY_AFTER
    #: Multiplies every delay; tests set it tiny so they never sleep for real.
    time_scale: float = 1.0


@dataclass(frozen=True, slots=True)
class Decision:
    """The action to take and, for RETRY, the delay in seconds."""

    action: Action
    delay: float = 0.0


def env_time_scale() -> float:
    """The delay multiplier from HFBATCH_TIME_SCALE (tests make every wait tiny); 1 when unset or invalid."""
    raw = os.environ.get(defaults.TIME_SCALE_ENV)
    try:
        scale = float(raw) if raw else 1.0
    except ValueError:
        return 1.0
    return scale if math.isfinite(scale) and scale >= 0 else 1.0


def backoff_delay(retries_taken: int, policy: RetryPolicy, rng: random.Random | None = None) -> float:
    """Exponential backoff with jitter: between 75% and 100% of min(initial * 2**n, max)."""
    try:
        base = min(policy.initial_delay * 2.0 ** max(0, retries_taken), policy.max_delay)
    except OverflowError:  # 2.0 ** 1024 and up: long past the cap (max_retries has no upper bound)
        base = policy.max_delay
    jitter = 1.0 - 0.25 * (rng.random() if rng is not None else random.random())
    return base * jitter * policy.time_scale


def decide(
    error: APIError,
    retries_taken: int,
    policy: RetryPolicy,
    *,
    other_provider_ready: bool,
    rng: random.Random | None = None,
) -> Decision:
    """Decide what follows a failed attempt on one provider (the README's failure table).

    `retries_taken` counts earlier retries of this row on this provider;
    `other_provider_ready` says whether an untried provider is available now (kept for callers
    that weigh it; capacity, not this function, decides where a rate-limited row goes).
    """
    if isinstance(error, AuthenticationError):
        return Decision(Action.STOP_RUN)
    if isinstance(error, PaymentRequiredError | ModelNotSupportedError | PermissionDeniedError):
        return Decision(Action.DROP_PROVIDER)
    if isinstance(error, SamplingNotSupportedError):
        # The provider refused n > 1 and is now asked one sample at a time (hfbatch.samples): again at once.
        return Decision(Action.RETRY)
    if isinstance(error, BadRequestError):
        return Decision(Action.FAIL_ROW)
    if isinstance(error, RateLimitError):
        # Back-pressure, never a failure of the row: the provider is paused (for `delay` when no
        # scheduler learns its pace) and the row goes to whichever provider has room next.
        ra = error.retry_after
        if ra is not None:
            # A pause longer than the cap is the provider saying "not today": out for this run.
            if ra > policy.max_retry_after:
                return Decision(Action.DROP_PROVIDER)
            return Decision(Action.REQUEUE, ra * policy.time_scale)
        return Decision(Action.REQUEUE, backoff_delay(retries_taken, policy, rng))
    # 5xx, timeouts, transport and malformed replies: transient, retry here first.
    if retries_taken >= policy.max_retries:
        return Decision(Action.FAIL_OVER)
    return Decision(Action.RETRY, backoff_delay(retries_taken, policy, rng))
