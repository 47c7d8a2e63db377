"""The simulated providers' capacity limits, over real loopback HTTP, with a hand-stepped clock."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDictProxy

from hfbatch.sim import Fault, SimConfig, SimModel, SimProvider, SimServer, reply_for
from hfbatch.sim.capacity import format_reset

AUTH = {"Authorization": "Bearer hf_sim_token"}
MESSAGES = [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "say three words"}]
# What one request with MESSAGES costs against a token limit: prompt plus completion.
REQUEST_TOKENS = reply_for(MESSAGES, None).total_tokens


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def limited(**fields: Any) -> SimConfig:
    """A model `o/m` served by provider `p` alone, with the given SimProvider fields."""
    return SimConfig(models=(SimModel("o/m", (SimProvider("p", **fields),)),))


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def post_chat(
    session: aiohttp.ClientSession, sim: SimServer, **fields: Any
) -> tuple[int, CIMultiDictProxy[str], str]:
    """POST a chat request for `o/m` and return (status, headers, body text)."""
    payload = {"model": "o/m", "messages": MESSAGES, **fields}
    async with session.post(f"{sim.api_base}/chat/completions", json=payload, headers=AUTH) as resp:
        return resp.status, resp.headers, await resp.text()


async def wait_in_flight(sim: SimServer, n: int) -> None:
    """Until provider `p` holds exactly `n` requests in flight."""
    # The server offers nothing to await, so poll its counters.
    while sim.state.in_flight()["p"] != n:  # noqa: ASYNC110
        await asyncio.sleep(0.005)


async def test_max_concurrency_refuses_the_excess_at_once(session: aiohttp.ClientSession) -> None:
    """Past max_concurrency in flight a request gets 429 at once; it is not in flight; freed slots serve again."""
    config = limited(max_concurrency=2, faults=(Fault("hang", first=2),))
    async with SimServer(config) as sim:
        held = [asyncio.create_task(post_chat(session, sim)) for _ in range(2)]
        await wait_in_flight(sim, 2)
        status, headers, text = await post_chat(session, sim)
        assert status == 429
        assert "Retry-After" not in headers
        assert json.loads(text)["error"]["code"] == "rate_limit_exceeded"
        assert json.loads(text)["error"]["type"] == "concurrency"
        assert sim.state.in_flight()["p"] == 2
        for task in held:
            task.cancel()
        await asyncio.gather(*held, return_exceptions=True)
        await wait_in_flight(sim, 0)
        assert (await post_chat(session, sim))[0] == 200
        counts = sim.counts()["p"]
    assert counts["requests"] == 4
    assert counts["by_outcome"] == {"200": 1, "429": 1, "hang": 2}
    assert counts["max_in_flight"] == 2


async def test_max_in_flight_is_counted_for_every_provider(session: aiohttp.ClientSession) -> None:
    """max_in_flight() reports the peak even without limits; counts() shows it only for limited providers."""
    async with SimServer(limited(faults=(Fault("hang", first=3),))) as sim:
        held = [asyncio.create_task(post_chat(session, sim)) for _ in range(3)]
        await wait_in_flight(sim, 3)
        for task in held:
            task.cancel()
        await asyncio.gather(*held, return_exceptions=True)
        await wait_in_flight(sim, 0)
        assert (await post_chat(session, sim))[0] == 200
        assert sim.max_in_flight() == {"p": 3}
        assert "max_in_flight" not in sim.counts()["p"]
        sim.reset_counts()
        assert sim.max_in_flight() == {"p": 0}


async def test_rate_limit_sliding_window_with_exact_retry_after(session: aiohttp.ClientSession) -> None:
    """Past N requests in the window: 429 with Retry-After (rounded up) and retry-after-ms until the oldest leaves."""
    clock = FakeClock()
    config = limited(rate_limit=(3, 10.0), limit_retry_after="exact")
    async with SimServer(config, clock=clock) as sim:
        assert [(await post_chat(session, sim))[0] for _ in range(3)] == [200, 200, 200]
        status, headers, text = await post_chat(session, sim)
        assert status == 429
        assert (headers["Retry-After"], headers["retry-after-ms"]) == ("10", "10000")
        assert json.loads(text)["error"]["type"] == "requests"
        clock.now += 4.5
        status, headers, _ = await post_chat(session, sim)
        assert status == 429
        assert (headers["Retry-After"], headers["retry-after-ms"]) == ("6", "5500")
        clock.now += 5.5
        assert (await post_chat(session, sim))[0] == 200
        counts = sim.counts()["p"]
    assert counts == {"requests": 6, "by_outcome": {"200": 4, "429": 2}, "max_in_flight": 1}


async def test_refused_requests_do_not_fill_the_window(session: aiohttp.ClientSession) -> None:
    """Only accepted requests count: hammering a full window does not push the reset further out."""
    clock = FakeClock()
    async with SimServer(limited(rate_limit=(1, 2.0)), clock=clock) as sim:
        assert (await post_chat(session, sim))[0] == 200
        for _ in range(5):
            clock.now += 0.25
            assert (await post_chat(session, sim))[0] == 429
        clock.now += 0.75
        assert (await post_chat(session, sim))[0] == 200


async def test_token_limit(session: aiohttp.ClientSession) -> None:
    """Prompt + completion tokens of accepted requests count; one that would pass the limit gets 429."""
    clock = FakeClock()
    config = limited(token_limit=(2 * REQUEST_TOKENS + 1, 60.0), limit_retry_after="exact")
    async with SimServer(config, clock=clock) as sim:
        assert (await post_chat(session, sim))[0] == 200
        clock.now += 10
        assert (await post_chat(session, sim))[0] == 200
        status, headers, text = await post_chat(session, sim)
        assert status == 429
        assert json.loads(text)["error"]["type"] == "tokens"
        assert headers["Retry-After"] == "50"  # the first request leaves the window at t+60
        clock.now += 50
        assert (await post_chat(session, sim))[0] == 200


@pytest.mark.parametrize(("policy", "expected"), [("none", None), ("7", "7"), ("999999", "999999")])
async def test_limit_retry_after_policies(session: aiohttp.ClientSession, policy: str, expected: str | None) -> None:
    """`none` sends no Retry-After; any other string is sent as it is."""
    async with SimServer(limited(rate_limit=(1, 60.0), limit_retry_after=policy), clock=FakeClock()) as sim:
        await post_chat(session, sim)
        status, headers, _ = await post_chat(session, sim)
    assert status == 429
    assert headers.get("Retry-After") == expected
    assert "retry-after-ms" not in headers


async def test_ratelimit_headers_on_every_reply(session: aiohttp.ClientSession) -> None:
    """x-ratelimit-* headers count down on 200s, read 0 on the 429, and name the reset delay."""
    clock = FakeClock()
    config = limited(
        rate_limit=(2, 1.5), token_limit=(1000, 60.0), ratelimit_headers=True, faults=(Fault("500", first=1),)
    )
    async with SimServer(config, clock=clock) as sim:
        replies = []
        for step in (0.0, 0.25, 0.0):
            clock.now += step
            replies.append(await post_chat(session, sim))
    statuses = [status for status, _, _ in replies]
    assert statuses == [500, 200, 429]
    remaining = [h["x-ratelimit-remaining-requests"] for _, h, _ in replies]
    assert remaining == ["1", "0", "0"]
    assert {h["x-ratelimit-limit-requests"] for _, h, _ in replies} == {"2"}
    assert [h["x-ratelimit-reset-requests"] for _, h, _ in replies] == ["1.5s", "1.25s", "1.25s"]
    assert replies[0][1]["x-ratelimit-limit-tokens"] == "1000"
    assert replies[0][1]["x-ratelimit-remaining-tokens"] == str(1000 - REQUEST_TOKENS)
    assert replies[1][1]["x-ratelimit-remaining-tokens"] == str(1000 - 2 * REQUEST_TOKENS)
    assert replies[0][1]["x-ratelimit-reset-tokens"] == "60s"


async def test_no_ratelimit_headers_unless_asked(session: aiohttp.ClientSession) -> None:
    """Without `ratelimit_headers` a limited provider's replies carry no x-ratelimit-* header."""
    async with SimServer(limited(rate_limit=(5, 1.0))) as sim:
        _, headers, _ = await post_chat(session, sim)
    assert not [h for h in headers if h.lower().startswith("x-ratelimit")]


def test_format_reset() -> None:
    """Reset delays read like OpenAI's: whole and fractional seconds, milliseconds below one second."""
    assert [format_reset(s) for s in (0, -1, 0.0201, 0.25, 1, 1.5, 61.25)] == [
        "0s",
        "0s",
        "21ms",
        "250ms",
        "1s",
        "1.5s",
        "61.25s",
    ]


def test_limits_built_in_code_are_checked() -> None:
    """A provider with a zero limit, a bad window or half a price is refused at construction."""
    bad: list[dict[str, Any]] = [
        {"max_concurrency": 0},
        {"rate_limit": (0, 1.0)},
        {"token_limit": (10, 0.0)},
        {"limit_retry_after": ""},
        {"price_in": 1.0},
        {"price_in": -1.0, "price_out": 1.0},
        {"max_n": 0},
    ]
    for fields in bad:
        with pytest.raises(ValueError):
            SimProvider("p", **fields)
