"""The retry policy: reading Retry-After, backoff delays, and what follows each kind of failure."""

from __future__ import annotations

import email.utils
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hfbatch import defaults
from hfbatch.errors import (
    APIError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    EmptyResponseError,
    InvalidOutputError,
    MalformedResponseError,
    ModelNotSupportedError,
    PaymentRequiredError,
    PermissionDeniedError,
    RateLimitError,
    SamplingNotSupportedError,
    ServerError,
    TransportError,
)
from hfbatch.http_errors import error_for_status, parse_retry_after
from hfbatch.retry import Action, Decision, RetryPolicy, backoff_delay, decide

NOW = 1_700_000_000.0
HTTP_DATE_IN_30S = email.utils.formatdate(NOW + 30, usegmt=True)
HTTP_DATE_PAST = email.utils.formatdate(NOW - 30, usegmt=True)


# --- parse_retry_after -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        pytest.param({}, None, id="absent"),
        pytest.param({"Retry-After": "7"}, 7.0, id="seconds"),
        pytest.param({"retry-after": "7"}, 7.0, id="lowercase-name"),
        pytest.param({"Retry-After": " 2.5 "}, 2.5, id="fraction-with-spaces"),
        pytest.param({"Retry-After": "0"}, 0.0, id="zero"),
        pytest.param({"Retry-After": "-3"}, None, id="negative"),
        pytest.param({"Retry-After": "inf"}, None, id="inf"),
        pytest.param({"Retry-After": "nan"}, None, id="nan"),
        pytest.param({"Retry-After": "1e400"}, None, id="overflows-to-inf"),
        pytest.param({"Retry-After": "soon"}, None, id="garbage"),
        pytest.param({"Retry-After": ""}, None, id="empty"),
        pytest.param({"Retry-After": HTTP_DATE_IN_30S}, 30.0, id="http-date"),
        pytest.param({"Retry-After": HTTP_DATE_PAST}, 0.0, id="http-date-in-the-past"),
        pytest.param({"retry-after-ms": "1500", "Retry-After": "9"}, 1.5, id="ms-takes-precedence"),
        pytest.param({"Retry-After-Ms": "250"}, 0.25, id="ms-alone"),
        pytest.param({"retry-after-ms": "junk", "Retry-After": "9"}, 9.0, id="bad-ms-falls-back"),
        pytest.param({"retry-after-ms": "-5", "Retry-After": "9"}, 9.0, id="negative-ms-falls-back"),
        pytest.param({"retry-after-ms": "nan"}, None, id="nan-ms-alone"),
    ],
)
def test_parse_retry_after(headers: dict[str, str], expected: float | None) -> None:
    """Retry-After is read as seconds or an HTTP date, retry-after-ms first; unusable values give None."""
    assert parse_retry_after(headers, now=NOW) == pytest.approx(expected)


def test_parse_retry_after_date_uses_the_clock_by_default() -> None:
    """Without `now`, an HTTP date far in the future gives a large positive delay."""
    far = email.utils.formatdate(4_000_000_000, usegmt=True)
    delay = parse_retry_after({"Retry-After": far})
    assert delay is not None and delay > 1_000_000


# --- backoff_delay ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("retries", "base"),
    [
        pytest.param(0, 0.5, id="first"),
        pytest.param(1, 1.0, id="second"),
        pytest.param(3, 4.0, id="fourth"),
        pytest.param(4, 8.0, id="reaches-cap"),
        pytest.param(10, 8.0, id="capped"),
        pytest.param(-1, 0.5, id="negative-as-zero"),
    ],
)
def test_backoff_delay_bounds(retries: int, base: float) -> None:
    """The delay lies between 75% and 100% of min(initial * 2**n, max)."""
    policy = RetryPolicy()
    assert (policy.initial_delay, policy.max_delay) == (defaults.INITIAL_RETRY_DELAY, defaults.MAX_RETRY_DELAY)
    rng = random.Random(0)
    delays = [backoff_delay(retries, policy, rng) for _ in range(200)]
    assert all(0.75 * base <= d <= base for d in delays)
    assert len(set(delays)) > 1  # jittered


@given(retries=st.integers(min_value=0, max_value=100_000), seed=st.integers(0, 2**32))
def test_backoff_delay_never_exceeds_the_cap(retries: int, seed: int) -> None:
    """However many retries were taken, the delay stays within [0.75 * max, max] once the cap is reached."""
    policy = RetryPolicy()
    delay = backoff_delay(retries, policy, random.Random(seed))
    assert 0 < delay <= policy.max_delay
    if retries >= 4:
        assert delay >= 0.75 * policy.max_delay


def test_backoff_delay_is_scaled() -> None:
    """`time_scale` multiplies the delay, so tests never sleep for real."""
    full = backoff_delay(2, RetryPolicy(), random.Random(1))
    scaled = backoff_delay(2, RetryPolicy(time_scale=0.001), random.Random(1))
    assert scaled == pytest.approx(full * 0.001)


def test_backoff_delay_jitter_extremes() -> None:
    """A draw of 0 gives the full base and a draw near 1 gives 75% of it."""

    class Fixed(random.Random):
        def __init__(self, value: float) -> None:
            super().__init__()
            self.value = value

        def random(self) -> float:
            return self.value

    policy = RetryPolicy()
    assert backoff_delay(1, policy, Fixed(0.0)) == pytest.approx(1.0)
    assert backoff_delay(1, policy, Fixed(0.999999)) == pytest.approx(0.75, abs=1e-5)


# --- decide ----------------------------------------------------------------------------------

POLICY = RetryPolicy(max_retries=2, time_scale=0.001)


def rate_limited(retry_after: float | None = None) -> RateLimitError:
    return RateLimitError("slow down", provider="p", status=429, retry_after=retry_after)


@pytest.mark.parametrize(
    ("error", "other_ready", "action"),
    [
        pytest.param(error_for_status(401, "", provider="p"), False, Action.STOP_RUN, id="401"),
        pytest.param(AuthenticationError("no token"), True, Action.STOP_RUN, id="no-token"),
        pytest.param(error_for_status(402, "", provider="p"), True, Action.DROP_PROVIDER, id="402"),
        pytest.param(error_for_status(402, "", provider="p"), False, Action.DROP_PROVIDER, id="402-alone"),
        pytest.param(error_for_status(403, "", provider="p"), True, Action.DROP_PROVIDER, id="403"),
        pytest.param(error_for_status(404, "", provider="p"), True, Action.DROP_PROVIDER, id="404"),
        pytest.param(
            error_for_status(400, '{"error": {"message": "m", "code": "model_not_supported"}}', provider="p"),
            True,
            Action.DROP_PROVIDER,
            id="400-model-not-supported",
        ),
        pytest.param(error_for_status(400, "", provider="p"), True, Action.FAIL_ROW, id="400"),
        pytest.param(error_for_status(422, "", provider="p"), True, Action.FAIL_ROW, id="422"),
        pytest.param(error_for_status(429, "", provider="p"), True, Action.REQUEUE, id="429-other-ready"),
        pytest.param(rate_limited(retry_after=1.0), True, Action.REQUEUE, id="429-retry-after-other-ready"),
        pytest.param(rate_limited(), False, Action.REQUEUE, id="429-alone"),
        pytest.param(rate_limited(retry_after=1.0), False, Action.REQUEUE, id="429-alone-retry-after"),
        pytest.param(
            rate_limited(retry_after=defaults.MAX_RETRY_AFTER + 1),
            False,
            Action.DROP_PROVIDER,
            id="429-retry-after-over-cap-drops-the-provider",
        ),
        pytest.param(error_for_status(500, "", provider="p"), False, Action.RETRY, id="500"),
        pytest.param(error_for_status(503, "", provider="p"), True, Action.RETRY, id="503-retries-here-first"),
        pytest.param(error_for_status(408, "", provider="p"), False, Action.RETRY, id="408"),
        pytest.param(APITimeoutError("late", provider="p"), False, Action.RETRY, id="timeout"),
        pytest.param(TransportError("reset", provider="p"), False, Action.RETRY, id="connection"),
        pytest.param(MalformedResponseError("bad json", provider="p"), False, Action.RETRY, id="malformed"),
        pytest.param(EmptyResponseError("no text", provider="p"), False, Action.RETRY, id="empty"),
        pytest.param(InvalidOutputError("not JSON", provider="p"), True, Action.RETRY, id="invalid-output"),
        pytest.param(
            SamplingNotSupportedError("n > 1 is not supported", provider="p", status=400),
            True,
            Action.RETRY,
            id="400-n-not-supported",
        ),
    ],
)
def test_decide_first_failure(error: APIError, other_ready: bool, action: Action) -> None:
    """The first failure on a provider leads to the action the README's failure table gives."""
    assert decide(error, 0, POLICY, other_provider_ready=other_ready).action is action


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(ServerError("boom", provider="p", status=500), id="5xx"),
        pytest.param(APITimeoutError("late", provider="p"), id="timeout"),
        pytest.param(TransportError("reset", provider="p"), id="connection"),
        pytest.param(MalformedResponseError("cut", provider="p"), id="malformed"),
        pytest.param(InvalidOutputError("breaks the schema", provider="p"), id="invalid-output"),
    ],
)
def test_decide_retries_until_max_then_fails_over(error: APIError) -> None:
    """Transient failures retry on the same provider `max_retries` times, then fail over."""
    actions = [decide(error, n, POLICY, other_provider_ready=False).action for n in range(POLICY.max_retries + 2)]
    assert actions == [Action.RETRY] * POLICY.max_retries + [Action.FAIL_OVER] * 2


def test_decide_n_refusal_is_asked_again_at_once_whatever_the_budget() -> None:
    """A provider refusing n > 1 is asked again at once (one sample per request), even with retries spent."""
    error = SamplingNotSupportedError("n > 1 is not supported", provider="p", status=400)
    assert decide(error, POLICY.max_retries + 5, POLICY, other_provider_ready=True) == Decision(Action.RETRY)


@pytest.mark.parametrize("retries", [0, 3, 50])
def test_decide_429_is_requeued_whatever_the_retries(retries: int) -> None:
    """A 429 never becomes a fail-over or a failure: the row is requeued however often it happened."""
    for error in (rate_limited(), rate_limited(retry_after=1.0)):
        assert decide(error, retries, POLICY, other_provider_ready=False).action is Action.REQUEUE


def test_decide_no_retries_fails_over_at_once() -> None:
    """With max_retries=0 a 5xx fails over on the first failure."""
    policy = RetryPolicy(max_retries=0)
    assert decide(ServerError("x"), 0, policy, other_provider_ready=False) == Decision(Action.FAIL_OVER)


@pytest.mark.parametrize(
    ("retry_after", "delay"),
    [
        pytest.param(0.0, 0.0, id="zero"),
        pytest.param(7.0, 0.007, id="seconds-scaled"),
        pytest.param(defaults.MAX_RETRY_AFTER, defaults.MAX_RETRY_AFTER * 0.001, id="exactly-the-cap"),
    ],
)
def test_decide_429_waits_retry_after_scaled(retry_after: float, delay: float) -> None:
    """A 429 with Retry-After asks for exactly that pause, times the policy's time_scale."""
    decision = decide(rate_limited(retry_after), 0, POLICY, other_provider_ready=False)
    assert decision.action is Action.REQUEUE
    assert decision.delay == pytest.approx(delay)


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(rate_limited(), id="429-without-retry-after"),
        pytest.param(ServerError("boom", status=502), id="5xx"),
    ],
)
@pytest.mark.parametrize("retries", [0, 1])
def test_decide_backoff_delay(error: APIError, retries: int) -> None:
    """Without Retry-After the delay is the scaled, jittered exponential backoff."""
    decision = decide(error, retries, POLICY, other_provider_ready=False, rng=random.Random(3))
    assert decision.action is (Action.REQUEUE if isinstance(error, RateLimitError) else Action.RETRY)
    assert decision.delay == pytest.approx(backoff_delay(retries, POLICY, random.Random(3)))
    base = POLICY.initial_delay * 2**retries * POLICY.time_scale
    assert 0.75 * base <= decision.delay <= base


@pytest.mark.parametrize(
    "action",
    [Action.STOP_RUN, Action.DROP_PROVIDER, Action.FAIL_ROW, Action.FAIL_OVER],
)
def test_decide_non_retry_actions_have_no_delay(action: Action) -> None:
    """Only RETRY and REQUEUE carry a delay."""
    errors: dict[Action, APIError] = {
        Action.STOP_RUN: AuthenticationError("x"),
        Action.DROP_PROVIDER: PaymentRequiredError("x"),
        Action.FAIL_ROW: BadRequestError("x"),
        Action.FAIL_OVER: ServerError("x", status=500),
    }
    retries = POLICY.max_retries if action is Action.FAIL_OVER else 0
    decision = decide(errors[action], retries, POLICY, other_provider_ready=True)
    assert decision == Decision(action, 0.0)


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(PermissionDeniedError("x", status=403), id="403"),
        pytest.param(ModelNotSupportedError("x", status=404), id="404"),
        pytest.param(PaymentRequiredError("x", status=402), id="402"),
    ],
)
def test_decide_drop_ignores_retry_budget(error: APIError) -> None:
    """A provider that cannot serve the model is dropped whatever the retry count."""
    for retries in (0, 5):
        assert decide(error, retries, POLICY, other_provider_ready=False).action is Action.DROP_PROVIDER
