"""The router's published prices and metadata, and what the simulated providers billed."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from hfbatch.sim import Fault, SimConfig, SimModel, SimProvider, SimServer, reply_for, request_key

AUTH = {"Authorization": "Bearer hf_sim_token"}
MESSAGES = [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "say three words"}]
REPLY = reply_for(MESSAGES, None)
PRICED = SimProvider(
    "cheap",
    price_in=0.25,
    price_out=0.75,
    context_length=131072,
    supports_tools=False,
    first_token_latency_ms=120.0,
    throughput=85.5,
)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def get_json(session: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    """GET `url`; return (status, decoded JSON)."""
    async with session.get(url) as resp:
        return resp.status, await resp.json()


async def post_chat(session: aiohttp.ClientSession, sim: SimServer, **fields: Any) -> int:
    """POST a chat request (model `o/m` unless given) and read the whole reply; return its status."""
    payload = {"model": "o/m", "messages": MESSAGES, **fields}
    async with session.post(f"{sim.api_base}/chat/completions", json=payload, headers=AUTH) as resp:
        await resp.read()
        return resp.status


# --- /v1/models ------------------------------------------------------------------------------


async def test_models_publish_prices_and_metadata(session: aiohttp.ClientSession) -> None:
    """Each provider lists status, context, pricing (USD per million tokens) and capabilities; unpriced: no pricing."""
    free = SimProvider("free", is_free=True, supports_structured_output=False, status="staging")
    async with SimServer(SimConfig(models=(SimModel("o/m", (PRICED, free)),))) as sim:
        status, data = await get_json(session, f"{sim.api_base}/models")
    assert status == 200
    (model,) = data["data"]
    assert (model["id"], model["object"], model["owned_by"]) == ("o/m", "model", "o")
    assert model["providers"] == [
        {
            "provider": "cheap",
            "status": "live",
            "context_length": 131072,
            "pricing": {"input": 0.25, "output": 0.75},
            "is_free": False,
            "supports_tools": False,
            "supports_structured_output": True,
            "first_token_latency_ms": 120.0,
            "throughput": 85.5,
        },
        {
            "provider": "free",
            "status": "staging",
            "context_length": 32768,
            "is_free": True,
            "supports_tools": True,
            "supports_structured_output": False,
        },
    ]


async def test_one_model_and_unknown_model(session: aiohttp.ClientSession) -> None:
    """`/v1/models/{id}` answers one model as the list has it, or a 404 error object."""
    async with SimServer() as sim:
        _, listing = await get_json(session, f"{sim.api_base}/models")
        status, one = await get_json(session, f"{sim.api_base}/models/hfbatch/sim-vision")
        assert status == 200 and one == listing["data"][1]
        status, missing = await get_json(session, f"{sim.api_base}/models/no/such")
    assert status == 404
    assert missing["error"]["code"] == "model_not_found" and "no/such" in missing["error"]["message"]


async def test_publish_prices_false_is_a_plain_openai_list(session: aiohttp.ClientSession) -> None:
    """`publish_prices = false`: only id, object and owned_by, in the list and for one model."""
    async with SimServer(SimConfig(models=(SimModel("o/m", (PRICED,)),), publish_prices=False)) as sim:
        _, listing = await get_json(session, f"{sim.api_base}/models")
        _, one = await get_json(session, f"{sim.api_base}/models/o/m")
    assert listing == {"object": "list", "data": [{"id": "o/m", "object": "model", "owned_by": "o"}]}
    assert one == listing["data"][0]


# --- billing ---------------------------------------------------------------------------------


def cost(provider: SimProvider, replies: int) -> float:
    """What `replies` answers to MESSAGES cost at `provider`'s prices."""
    assert provider.price_in is not None and provider.price_out is not None
    return replies * (REPLY.prompt_tokens * provider.price_in + REPLY.completion_tokens * provider.price_out) / 1e6


async def test_billing_counts_whole_replies_at_their_prices(session: aiohttp.ClientSession) -> None:
    """Whole 200s (streamed or not) are billed per provider at its prices; errors are not; unpriced cost 0."""
    config = SimConfig(
        models=(SimModel("o/m", (PRICED, SimProvider("unpriced"), SimProvider("broke", faults=(Fault("402"),)))),)
    )
    async with SimServer(config) as sim:
        for model, stream in [("o/m:cheap", False), ("o/m:cheap", True), ("o/m:unpriced", False), ("o/m:broke", False)]:
            await post_chat(session, sim, model=model, stream=stream)
        bill = sim.billing()
        twice, keys = sim.paid_twice(), sim.paid_keys()
        json.dumps(bill)
    assert bill["providers"]["cheap"] == {
        "replies": 2,
        "prompt_tokens": 2 * REPLY.prompt_tokens,
        "completion_tokens": 2 * REPLY.completion_tokens,
        "cost_usd": pytest.approx(cost(PRICED, 2)),
        "priced": True,
    }
    assert bill["providers"]["unpriced"] == {
        "replies": 1,
        "prompt_tokens": REPLY.prompt_tokens,
        "completion_tokens": REPLY.completion_tokens,
        "cost_usd": 0.0,
        "priced": False,
    }
    assert bill["providers"]["broke"]["replies"] == 0
    assert bill["total"] == {
        "replies": 3,
        "prompt_tokens": 3 * REPLY.prompt_tokens,
        "completion_tokens": 3 * REPLY.completion_tokens,
        "cost_usd": pytest.approx(cost(PRICED, 2)),
    }
    assert (twice, keys) == (2, 1)  # one row, paid three times: across providers and stream modes


@pytest.mark.parametrize("kind", ["truncate", "malformed", "reset", "500", "429", "echo_malformed"])
@pytest.mark.parametrize("stream", [False, True])
async def test_broken_replies_are_not_billed(session: aiohttp.ClientSession, kind: str, stream: bool) -> None:
    """A truncated, malformed, dropped or error reply bills nothing."""
    config = SimConfig(models=(SimModel("o/m", (SimProvider("p", price_in=1, price_out=1, faults=(Fault(kind),)),)),))
    async with SimServer(config) as sim:
        try:
            await post_chat(session, sim, stream=stream)
        except aiohttp.ClientError:
            pass  # truncate and reset break the connection
        assert sim.billing()["total"] == {"replies": 0, "prompt_tokens": 0, "completion_tokens": 0, "cost_usd": 0.0}
        assert (sim.paid_twice(), sim.paid_keys()) == (0, 0)


async def test_request_key_names_the_row(session: aiohttp.ClientSession) -> None:
    """messages, n, seed and response_format make a distinct request; the provider suffix and stream do not."""
    async with SimServer() as sim:
        await post_chat(session, sim, model="hfbatch/sim-chat:gamma")
        await post_chat(session, sim, model="hfbatch/sim-chat:gamma", stream=True)
        await post_chat(session, sim, model="hfbatch/sim-chat:gamma", seed=1)
        await post_chat(session, sim, model="hfbatch/sim-chat:gamma", n=2)
        await post_chat(session, sim, model="hfbatch/sim-chat:gamma", response_format={"type": "json_object"})
        await post_chat(session, sim, model="hfbatch/sim-chat:gamma", messages=[{"role": "user", "content": "x"}])
        assert (sim.paid_keys(), sim.paid_twice()) == (5, 1)
        assert sim.billing()["providers"]["gamma"]["replies"] == 6
        sim.reset_counts()
        assert (sim.paid_keys(), sim.paid_twice(), sim.billing()["total"]["replies"]) == (0, 0, 0)
    body = {"messages": MESSAGES, "model": "a:b", "stream": True}
    assert request_key(body) == request_key({"messages": MESSAGES, "n": 1})
    assert request_key(body) != request_key({"messages": MESSAGES, "n": 2})


async def test_billing_counts_n_and_reasoning_tokens(session: aiohttp.ClientSession) -> None:
    """A reply's billed completion tokens are its usage: every choice, reasoning included."""
    provider = SimProvider("p", price_in=1.0, price_out=2.0, reasoning=True)
    async with SimServer(SimConfig(models=(SimModel("o/m", (provider,)),))) as sim:
        async with session.post(
            f"{sim.api_base}/chat/completions", json={"model": "o/m", "messages": MESSAGES, "n": 2}, headers=AUTH
        ) as resp:
            usage = (await resp.json())["usage"]
        account = sim.billing()["providers"]["p"]
    assert account["completion_tokens"] == usage["completion_tokens"] > 2 * REPLY.completion_tokens
    assert account["cost_usd"] == pytest.approx((usage["prompt_tokens"] + 2 * usage["completion_tokens"]) / 1e6)
