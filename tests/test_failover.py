"""`call_with_failover` on its own: a scripted `send`, a fake scheduler and a fake sleep, no server."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import pytest

from hfbatch.errors import (
    APIError,
    AuthenticationError,
    BadRequestError,
    PaymentRequiredError,
    RateLimitError,
    ServerError,
)
from hfbatch.failover import call_with_failover
from hfbatch.retry import RetryPolicy
from hfbatch.wire import ChatResult

POLICY = RetryPolicy(max_retries=2, initial_delay=1.0, max_delay=8.0, time_scale=1.0)


@dataclass
class FakeScheduler:
    """Records every call the loop makes; providers in `out` are out, those in `busy` not ready until waited for."""

    out: dict[str, APIError] = field(default_factory=dict)
    busy: set[str] = field(default_factory=set)
    events: list[tuple[str, str]] = field(default_factory=list)
    in_flight: int = 0

    def is_out(self, provider: str) -> bool:
        return provider in self.out

    def why_out(self, provider: str) -> APIError | None:
        return self.out.get(provider)

    def is_ready(self, provider: str) -> bool:
        return provider not in self.out and provider not in self.busy

    async def wait_ready(self, provider: str) -> None:
        self.events.append(("wait", provider))
        self.busy.discard(provider)

    async def acquire(self, provider: str) -> None:
        self.in_flight += 1
        self.events.append(("acquire", provider))

    def release(self, provider: str) -> None:
        self.in_flight -= 1

    def on_success(self, provider: str, result: ChatResult) -> None:
        self.events.append(("success", provider))

    def on_failure(self, provider: str, error: APIError, latency: float) -> None:
        self.events.append(("failure", provider))

    def on_retry(self, provider: str, delay: float, error: APIError) -> None:
        self.events.append(("retry", provider))

    def on_failover(self, provider: str, error: APIError, drop: bool) -> None:
        self.events.append(("drop" if drop else "failover", provider))
        if drop:
            self.out[provider] = error


def scripted(replies: dict[str, list[APIError | None]]) -> tuple[Callable[[str], Awaitable[ChatResult]], list[str]]:
    """A `send` that answers each provider's attempts from its script (None: success); and the attempts made."""
    calls: list[str] = []

    async def send(provider: str) -> ChatResult:
        calls.append(provider)
        script = replies[provider]
        reply = script.pop(0) if script else None
        if reply is not None:
            raise reply
        return ChatResult("ok", "stop", 1, 1, provider, "m")

    return send, calls


class Sleeps(list[float]):
    """A fake sleep that records the delays asked for."""

    async def __call__(self, delay: float) -> None:
        self.append(delay)


def e500() -> ServerError:
    """A 5xx from a provider."""
    return ServerError("boom", status=500)


async def test_first_provider_serves_at_once() -> None:
    """A success on the first try: one attempt, nothing slept, the place given back."""
    sched, sleeps = FakeScheduler(), Sleeps()
    send, calls = scripted({"a": [None], "b": []})
    result = await call_with_failover(send, ["a", "b"], POLICY, sched, sleep=sleeps)
    assert (result.provider, result.attempts, calls, sleeps) == ("a", 1, ["a"], [])
    assert sched.in_flight == 0 and ("success", "a") in sched.events


@pytest.mark.parametrize(
    ("script_a", "calls", "slept", "events"),
    [
        pytest.param([e500(), None], ["a", "a"], 1, [("retry", "a"), ("success", "a")], id="5xx-then-ok"),
        pytest.param(
            [e500(), e500(), e500()],
            ["a", "a", "a", "b"],
            2,
            [("retry", "a"), ("retry", "a"), ("failover", "a"), ("success", "b")],
            id="5xx-until-budget-then-next",
        ),
        pytest.param(
            [PaymentRequiredError("no credits", status=402)],
            ["a", "b"],
            0,
            [("drop", "a"), ("success", "b")],
            id="402-drops-provider",
        ),
        pytest.param(
            [RateLimitError("slow down", status=429)],
            ["a", "b"],
            0,
            [("failover", "a"), ("success", "b")],
            id="429-with-other-ready-fails-over-at-once",
        ),
    ],
)
async def test_failure_table(
    script_a: list[APIError | None], calls: list[str], slept: int, events: list[tuple[str, str]]
) -> None:
    """Each failure leads to the retry, fail-over or drop the README's table gives, in that order."""
    sched, sleeps = FakeScheduler(), Sleeps()
    send, made = scripted({"a": script_a, "b": [None]})
    result = await call_with_failover(send, ["a", "b"], POLICY, sched, sleep=sleeps)
    assert made == calls
    assert result.attempts == len(calls)
    assert len(sleeps) == slept
    assert [e for e in sched.events if e[0] in ("retry", "failover", "drop", "success")] == events
    assert sched.in_flight == 0


async def test_backoff_grows_and_stays_within_the_policy() -> None:
    """Retries on one provider wait 75-100% of 1 s, then 2 s: exponential backoff with jitter."""
    sleeps = Sleeps()
    send, _ = scripted({"a": [e500(), e500(), None]})
    await call_with_failover(send, ["a"], POLICY, FakeScheduler(), sleep=sleeps)
    assert 0.75 <= sleeps[0] <= 1.0 and 1.5 <= sleeps[1] <= 2.0


async def test_lone_provider_429_waits_its_retry_after() -> None:
    """With no other provider, a 429 waits the server's Retry-After on the same provider."""
    sleeps = Sleeps()
    send, calls = scripted({"a": [RateLimitError("later", status=429, retry_after=3.0), None]})
    result = await call_with_failover(send, ["a"], POLICY, FakeScheduler(), sleep=sleeps)
    assert (calls, sleeps, result.attempts) == (["a", "a"], [3.0], 2)


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(BadRequestError("bad body", status=422), id="422-fails-row"),
        pytest.param(AuthenticationError("bad token", status=401), id="401-stops"),
    ],
)
async def test_errors_no_provider_would_answer_differently_end_at_once(error: APIError) -> None:
    """A bad request or a wrong token is raised after one attempt; the next provider is never asked."""
    send, calls = scripted({"a": [error], "b": [None]})
    with pytest.raises(type(error)) as raised:
        await call_with_failover(send, ["a", "b"], POLICY, FakeScheduler(), sleep=Sleeps())
    assert calls == ["a"] and raised.value.attempts == 1


async def test_every_provider_failing_raises_the_last_error_with_all_attempts() -> None:
    """When each provider spends its budget, the last error is raised and counts every attempt."""
    send, calls = scripted({"a": [e500()] * 3, "b": [e500()] * 3})
    with pytest.raises(ServerError) as raised:
        await call_with_failover(send, ["a", "b"], POLICY, FakeScheduler(), sleep=Sleeps())
    assert calls == ["a"] * 3 + ["b"] * 3 and raised.value.attempts == 6


async def test_no_provider_left_raises_the_class_of_what_put_them_out() -> None:
    """Providers already out: no attempt, and the error is of the class that put the first one out."""
    sched = FakeScheduler(out={"a": PaymentRequiredError("no credits", provider="a", status=402)})
    send, calls = scripted({"a": []})
    with pytest.raises(PaymentRequiredError, match="no provider left") as raised:
        await call_with_failover(send, ["a"], POLICY, sched, sleep=Sleeps())
    assert calls == [] and raised.value.attempts == 0


async def test_a_provider_not_ready_is_waited_for_before_the_attempt() -> None:
    """A paused or benched provider is awaited with wait_ready, then tried."""
    sched = FakeScheduler(busy={"a"})
    send, calls = scripted({"a": [None]})
    await call_with_failover(send, ["a"], POLICY, sched, sleep=Sleeps())
    assert sched.events[:2] == [("wait", "a"), ("acquire", "a")] and calls == ["a"]


async def test_the_place_is_given_back_when_send_raises() -> None:
    """Acquire and release stay balanced through failures."""
    sched = FakeScheduler()
    send, _ = scripted({"a": [e500(), e500(), e500()]})
    with pytest.raises(ServerError):
        await call_with_failover(send, ["a"], POLICY, sched, sleep=Sleeps())
    assert sched.in_flight == 0
