"""`call_with_failover` on its own: a scripted `send`, a fake scheduler and a fake sleep, no server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
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

POLICY = RetryPolicy(max_retries=2, max_attempts=6, initial_delay=1.0, max_delay=8.0, time_scale=1.0)


@dataclass
class FakeLease:
    """A lease on one provider."""

    provider: str


@dataclass
class FakeScheduler:
    """Records every call the loop makes; `out` providers are out, `busy` ones must be waited for once.

    A 429 makes its provider busy, as a real scheduler pauses it; `blocked` ones never get room.
    """

    out: dict[str, APIError] = field(default_factory=dict)
    busy: set[str] = field(default_factory=set)
    blocked: set[str] = field(default_factory=set)
    events: list[tuple[str, str]] = field(default_factory=list)
    in_flight: int = 0

    def is_out(self, provider: str) -> bool:
        return provider in self.out

    def why_out(self, provider: str) -> APIError | None:
        return self.out.get(provider)

    async def acquire(self, candidates: Sequence[str], cost: float = 0.0) -> FakeLease:
        free = [p for p in candidates if p not in self.busy and p not in self.blocked]
        if free:
            provider = free[0]
        else:
            waitable = [p for p in candidates if p not in self.blocked]
            if not waitable:
                await asyncio.Event().wait()  # no room, ever
            provider = waitable[0]
            self.events.append(("wait", provider))
            self.busy.discard(provider)
        self.in_flight += 1
        self.events.append(("acquire", provider))
        return FakeLease(provider)

    def release(self, lease: FakeLease) -> None:
        if lease.provider != "":
            self.in_flight -= 1
            lease.provider = ""  # released once

    def on_success(self, lease: FakeLease, result: ChatResult) -> None:
        self.events.append(("success", lease.provider))

    def on_failure(self, lease: FakeLease, error: APIError, latency: float) -> None:
        self.events.append(("failure", lease.provider))
        if isinstance(error, RateLimitError):
            self.busy.add(lease.provider)

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
            [("success", "b")],
            id="429-goes-to-the-provider-with-room-at-once",
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


async def test_429s_never_fail_a_row_nor_spend_its_budget() -> None:
    """A lone provider answering 429 twenty times: the row waits (in the scheduler) and is then served."""
    sleeps = Sleeps()
    script: list[APIError | None] = [RateLimitError("later", status=429, retry_after=3.0) for _ in range(20)]
    send, calls = scripted({"a": [*script, None]})
    result = await call_with_failover(send, ["a"], POLICY, FakeScheduler(), sleep=sleeps)
    assert result.attempts == 21 and calls == ["a"] * 21 and sleeps == []


async def test_a_one_off_request_gives_up_on_429s_after_its_budget() -> None:
    """Not patient (the client's chat), 429s count against the row's attempts."""
    send, calls = scripted({"a": [RateLimitError("later", status=429) for _ in range(20)]})
    with pytest.raises(RateLimitError):
        await call_with_failover(send, ["a"], POLICY, FakeScheduler(), sleep=Sleeps(), patient=False)
    assert len(calls) == POLICY.max_attempts


async def test_a_row_waiting_past_its_deadline_fails_as_429() -> None:
    """With --max-wait, a row that finds no room in time fails with a 429-class error saying so."""
    send, calls = scripted({"a": [None]})
    sched = FakeScheduler(blocked={"a"})
    with pytest.raises(RateLimitError, match="max-wait"):
        await call_with_failover(send, ["a"], POLICY, sched, sleep=Sleeps(), deadline=time.monotonic() + 0.05)
    assert calls == []


async def test_a_lone_provider_is_tried_again_after_a_pause_until_the_row_budget_is_spent() -> None:
    """Retries spent on every provider, the row comes back to them after a backoff, up to max_attempts."""
    sleeps = Sleeps()
    send, calls = scripted({"a": [e500()] * 5 + [None]})
    policy = RetryPolicy(max_retries=1, max_attempts=6, initial_delay=1.0, max_delay=8.0)
    result = await call_with_failover(send, ["a"], policy, FakeScheduler(), sleep=sleeps)
    assert calls == ["a"] * 6 and result.attempts == 6
    assert len(sleeps) == 5  # a retry delay or a cycle's pause before every attempt after the first


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
    send, _ = scripted({"a": [e500()] * POLICY.max_attempts})
    with pytest.raises(ServerError):
        await call_with_failover(send, ["a"], POLICY, sched, sleep=Sleeps())
    assert sched.in_flight == 0
