"""The simulated server's hostile behaviours: echoed tokens, odd content, deep nesting, slow replies."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDictProxy

from hfbatch.sim import Fault, SimConfig, SimModel, SimProvider, SimServer, reply_for
from hfbatch.sim.completions import DEEP_FIELD

TOKEN = "hf_sim_token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MESSAGES = [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "say three words"}]


def one_provider(*faults: Fault, **config: Any) -> SimConfig:
    """A model `o/m` served by provider `p` alone, with the given faults."""
    return SimConfig(models=(SimModel("o/m", (SimProvider("p", faults=faults),)),), **config)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def post_chat(
    session: aiohttp.ClientSession, sim: SimServer, **fields: Any
) -> tuple[int, CIMultiDictProxy[str], bytes]:
    """POST a chat request for `o/m` and return (status, headers, raw body)."""
    payload = {"model": "o/m", "messages": MESSAGES, **fields}
    async with session.post(f"{sim.api_base}/chat/completions", json=payload, headers=AUTH) as resp:
        return resp.status, resp.headers, await resp.read()


def sse_payloads(raw: bytes) -> list[str]:
    """The `data` payloads of an SSE body."""
    return [event.removeprefix("data: ") for event in raw.decode().split("\n\n") if event]


def straddles_300(message: str) -> bool:
    """Whether the token sits across character 300 of `message`, so a 300-character cut splits it."""
    start = message.index(TOKEN)
    return start < 300 < start + len(TOKEN)


# --- echoed Authorization --------------------------------------------------------------------


async def test_echo_is_a_500_quoting_the_token_across_character_300(session: aiohttp.ClientSession) -> None:
    """`echo`: a 500 JSON error whose message carries the token astride character 300."""
    async with SimServer(one_provider(Fault("echo"))) as sim:
        status, _, raw = await post_chat(session, sim)
        assert sim.counts()["p"]["by_outcome"] == {"500": 1}
    assert status == 500
    message = json.loads(raw)["error"]
    assert f"Authorization: Bearer {TOKEN}" in message
    assert straddles_300(message)
    assert TOKEN not in message[:300]


async def test_echo_malformed_is_a_200_that_is_not_json(session: aiohttp.ClientSession) -> None:
    """`echo_malformed`: 200 with a body (or SSE payload) that is not JSON and quotes the token."""
    async with SimServer(one_provider(Fault("echo_malformed"))) as sim:
        status, headers, raw = await post_chat(session, sim)
        assert status == 200 and headers["Content-Type"].startswith("application/json")
        with pytest.raises(ValueError):
            json.loads(raw)
        assert straddles_300(raw.decode())
        status, headers, raw = await post_chat(session, sim, stream=True)
        assert status == 200 and headers["Content-Type"].startswith("text/event-stream")
        (payload,) = sse_payloads(raw)
        assert straddles_300(payload)
        assert sim.counts()["p"]["by_outcome"] == {"malformed": 2}
        assert sim.billing()["total"]["replies"] == 0


async def test_echo_stream_ends_with_an_error_event(session: aiohttp.ClientSession) -> None:
    """`echo_stream`: a content chunk, then an SSE error event quoting the token; unstreamed, a 500."""
    async with SimServer(one_provider(Fault("echo_stream"))) as sim:
        status, _, raw = await post_chat(session, sim, stream=True)
        assert status == 200
        first, last = (json.loads(p) for p in sse_payloads(raw))
        assert first["choices"][0]["delta"]["role"] == "assistant"
        assert last["error"]["code"] == 500 and straddles_300(last["error"]["message"])
        status, _, raw = await post_chat(session, sim)
        assert status == 500 and straddles_300(json.loads(raw)["error"])
        assert sim.counts()["p"]["by_outcome"] == {"500": 1, "stream_error": 1}
        assert sim.billing()["total"]["replies"] == 0


# --- content faults --------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
async def test_surrogate_is_valid_json_with_a_lone_surrogate(session: aiohttp.ClientSession, stream: bool) -> None:
    """`surrogate`: valid JSON whose content holds an escaped lone surrogate that UTF-8 cannot carry."""
    async with SimServer(one_provider(Fault("surrogate"))) as sim:
        status, _, raw = await post_chat(session, sim, stream=stream)
        assert sim.billing()["total"]["replies"] == 1
    assert status == 200
    assert b"\\udc80" in raw
    if stream:
        content = "".join(json.loads(p)["choices"][0]["delta"].get("content", "") for p in sse_payloads(raw)[:-1] if p)
    else:
        content = json.loads(raw)["choices"][0]["message"]["content"]
    assert content == reply_for(MESSAGES, None).text + " \udc80"
    with pytest.raises(UnicodeEncodeError):
        content.encode("utf-8")


def decode_on_a_shallow_stack(raw: bytes) -> Any:
    """json.loads run in a fresh thread, whose stack is nearly empty."""
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(json.loads(raw)))
    thread.start()
    thread.join()
    assert result, "json.loads failed even on a shallow stack"
    return result[0]


def nesting(value: Any) -> int:
    """How many objects deep `value` goes along its first key (counted without recursion)."""
    depth = 0
    while isinstance(value, dict):
        value = next(iter(value.values()))
        depth += 1
    return depth


async def test_deep_decodes_shallow_but_not_deeper(session: aiohttp.ClientSession) -> None:
    """`deep` (980 levels): json.loads copes on a shallow stack; from a test's stack decoding and re-encoding fail."""
    async with SimServer(one_provider(Fault("deep", first=1))) as sim:
        status, _, raw = await post_chat(session, sim)
        _, _, normal = await post_chat(session, sim, stream=True)
        assert sim.billing()["total"]["replies"] == 2
    assert status == 200
    data = decode_on_a_shallow_stack(raw)
    assert data["choices"][0]["message"]["content"] == reply_for(MESSAGES, None).text
    assert nesting(data[DEEP_FIELD]) == 980
    # pytest and asyncio put ~40 frames under this test: past CPython's limit of 1000 with 980 more.
    with pytest.raises(RecursionError):
        json.dumps(data)
    with pytest.raises(RecursionError):
        json.loads(raw)
    assert DEEP_FIELD.encode() not in normal  # `first = 1`: only the first reply is deep


async def test_deep_depth_and_stream(session: aiohttp.ClientSession) -> None:
    """`depth` sets the nesting; a streamed reply carries the field in its first chunk."""
    async with SimServer(one_provider(Fault("deep", depth=50))) as sim:
        _, _, raw = await post_chat(session, sim, stream=True)
    first = json.loads(sse_payloads(raw)[0])
    assert nesting(first[DEEP_FIELD]) == 50
    json.dumps(first)


async def test_empty_alternates_empty_string_and_null(session: aiohttp.ClientSession) -> None:
    """`empty`: content "" then null, finish_reason stop; streamed, no content piece but the empty one."""
    async with SimServer(one_provider(Fault("empty"))) as sim:
        choices = [json.loads((await post_chat(session, sim))[2])["choices"][0] for _ in range(3)]
        _, _, raw = await post_chat(session, sim, stream=True)
        assert sim.billing()["providers"]["p"]["completion_tokens"] == 0
    assert [c["message"]["content"] for c in choices] == ["", None, ""]
    assert {c["finish_reason"] for c in choices} == {"stop"}
    chunks = [json.loads(p) for p in sse_payloads(raw)[:-1]]
    assert [c["choices"][0]["delta"] for c in chunks] == [{"role": "assistant", "content": None}, {}]


async def test_no_usage_then_usage(session: aiohttp.ClientSession) -> None:
    """`no_usage` with `first = 1`: the first reply lacks `usage`, the next has it; streams send none."""
    async with SimServer(one_provider(Fault("no_usage", first=2))) as sim:
        first = json.loads((await post_chat(session, sim))[2])
        _, _, raw = await post_chat(session, sim, stream=True, stream_options={"include_usage": True})
        third = json.loads((await post_chat(session, sim))[2])
        assert sim.billing()["total"]["replies"] == 3
    assert "usage" not in first and first["choices"][0]["message"]["content"] == reply_for(MESSAGES, None).text
    chunks = [json.loads(p) for p in sse_payloads(raw)[:-1]]
    assert all("usage" not in c and c["choices"] for c in chunks)
    assert third["usage"]["completion_tokens"] == reply_for(MESSAGES, None).completion_tokens


async def test_slow_and_delay(session: aiohttp.ClientSession) -> None:
    """`slow` answers normally after `delay`; `delay` on another kind delays that fault's reply."""
    async with SimServer(one_provider(Fault("slow", first=1, delay=0.1), Fault("500", first=2, delay=0.1))) as sim:
        timings = []
        for _ in range(3):
            started = time.monotonic()
            status, _, _ = await post_chat(session, sim)
            timings.append((status, time.monotonic() - started))
        assert sim.counts()["p"]["by_outcome"] == {"200": 2, "500": 1}
    assert [s for s, _ in timings] == [200, 500, 200]
    assert timings[0][1] >= 0.1 and timings[1][1] >= 0.1


async def test_huge_retry_after_is_sent_as_is(session: aiohttp.ClientSession) -> None:
    """A 429 fault with retry_after = "999999" sends exactly that."""
    async with SimServer(one_provider(Fault("429", retry_after="999999"))) as sim:
        status, headers, _ = await post_chat(session, sim)
    assert status == 429 and headers["Retry-After"] == "999999"


async def test_slow_reply_abandoned_by_the_client_is_not_billed(session: aiohttp.ClientSession) -> None:
    """A hedging client that gives up on a slow reply pays nothing for it; the fast duplicate is billed once."""
    async with SimServer(one_provider(Fault("slow", first=1, delay=60))) as sim:
        slow = asyncio.create_task(post_chat(session, sim))
        # The server offers nothing to await, so poll its counters until the slow request is in.
        while sim.state.in_flight()["p"] != 1:  # noqa: ASYNC110
            await asyncio.sleep(0.005)
        assert (await post_chat(session, sim))[0] == 200
        slow.cancel()
        await asyncio.gather(slow, return_exceptions=True)
        while sim.state.in_flight()["p"] != 0:  # noqa: ASYNC110
            await asyncio.sleep(0.005)
        assert sim.billing()["total"]["replies"] == 1
        assert (sim.paid_keys(), sim.paid_twice()) == (1, 0)
        assert sim.counts()["p"] == {"requests": 2, "by_outcome": {"200": 1}}
