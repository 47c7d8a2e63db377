"""The simulated Hub and router, exercised over real loopback HTTP."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDictProxy

from hfbatch.errors import JobSpecError
from hfbatch.sim import (
    FAULT_KINDS,
    Fault,
    SimConfig,
    SimModel,
    SimProvider,
    SimServer,
    default_sim_config,
    load_sim_config,
    reply_for,
    serve,
    sim_config_from_dict,
)

TOKEN = "hf_sim_token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MESSAGES = [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "say three words"}]
EXPAND = "?expand[]=inferenceProviderMapping"


def one_provider(*faults: Fault, **config: Any) -> SimConfig:
    """A model `o/m` served by provider `p` alone, with the given faults."""
    return SimConfig(models=(SimModel("o/m", (SimProvider("p", faults=faults),)),), **config)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
async def sim() -> AsyncIterator[SimServer]:
    async with SimServer() as server:
        yield server


async def post_chat(
    session: aiohttp.ClientSession,
    sim: SimServer,
    body: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    **fields: Any,
) -> tuple[int, CIMultiDictProxy[str], str]:
    """POST a chat request and return (status, headers, body text)."""
    payload = body if body is not None else {"model": "o/m", "messages": MESSAGES, **fields}
    async with session.post(
        f"{sim.api_base}/chat/completions", json=payload, headers=AUTH if headers is None else headers
    ) as resp:
        return resp.status, resp.headers, await resp.text()


def sse_payloads(text: str, space: bool = True) -> list[str]:
    """The `data` payloads of an SSE body, checking each event's framing."""
    prefix = "data: " if space else "data:"
    events = text.split("\n\n")
    assert events[-1] == ""
    for event in events[:-1]:
        assert event.startswith(prefix) and not event.startswith(prefix + " "), event
    return [event[len(prefix) :] for event in events[:-1]]


# --- Hub -----------------------------------------------------------------------------------


async def test_mapping_dict_form_in_config_order(sim: SimServer, session: aiohttp.ClientSession) -> None:
    """The mapping is a dict keyed by provider, in config order, with either expand spelling."""
    for query in (EXPAND, "?expand=inferenceProviderMapping"):
        async with session.get(f"{sim.hub_url}/api/models/hfbatch/sim-chat{query}") as resp:
            assert resp.status == 200
            data = await resp.json()
        assert data["id"] == "hfbatch/sim-chat" and isinstance(data["_id"], str)
        mapping = data["inferenceProviderMapping"]
        assert list(mapping) == ["alpha", "beta", "gamma"]
        assert mapping["gamma"] == {
            "status": "live",
            "providerId": "hfbatch/sim-chat",
            "task": "conversational",
            "isModelAuthor": False,
        }
    assert sim.hub_requests == 2


async def test_mapping_only_when_expanded(sim: SimServer, session: aiohttp.ClientSession) -> None:
    """Without `expand`, the model info carries no mapping, as on the real Hub."""
    async with session.get(f"{sim.hub_url}/api/models/hfbatch/sim-chat") as resp:
        data = await resp.json()
    assert "inferenceProviderMapping" not in data


async def test_mapping_uses_provider_id_and_status(session: aiohttp.ClientSession) -> None:
    """`provider_id`, `status` and `task` appear as configured."""
    provider = SimProvider("q", provider_id="m-on-q", status="staging", task="text-generation")
    async with SimServer(SimConfig(models=(SimModel("o/m", (provider,)),))) as sim:
        async with session.get(f"{sim.hub_url}/api/models/o/m{EXPAND}") as resp:
            mapping = (await resp.json())["inferenceProviderMapping"]
    assert mapping == {
        "q": {"status": "staging", "providerId": "m-on-q", "task": "text-generation", "isModelAuthor": False}
    }


async def test_unknown_model_is_404_with_error_code(sim: SimServer, session: aiohttp.ClientSession) -> None:
    """An unknown repo answers 404 `Repository not found` with `X-Error-Code: RepoNotFound`."""
    async with session.get(f"{sim.hub_url}/api/models/nobody/nothing{EXPAND}") as resp:
        assert resp.status == 404
        assert resp.headers["X-Error-Code"] == "RepoNotFound"
        assert await resp.json() == {"error": "Repository not found"}


async def test_hub_rejects_a_wrong_token(sim: SimServer, session: aiohttp.ClientSession) -> None:
    """A present but wrong token gets 401 on the Hub; the right one is accepted."""
    url = f"{sim.hub_url}/api/models/hfbatch/sim-chat{EXPAND}"
    async with session.get(url, headers={"Authorization": "Bearer hf_wrong"}) as resp:
        assert resp.status == 401
        assert await resp.json() == {"error": "Invalid username or password."}
    async with session.get(url, headers=AUTH) as resp:
        assert resp.status == 200


async def test_model_list_form(sim: SimServer, session: aiohttp.ClientSession) -> None:
    """`/api/models` lists every model with its mapping in list form."""
    async with session.get(f"{sim.hub_url}/api/models?inference=warm&expand[]=inferenceProviderMapping") as resp:
        data = await resp.json()
    assert [m["id"] for m in data] == ["hfbatch/sim-chat", "hfbatch/sim-vision"]
    assert data[0]["inferenceProviderMapping"][1] == {
        "provider": "beta",
        "providerId": "hfbatch/sim-chat",
        "status": "live",
        "task": "conversational",
    }
    assert [p["provider"] for p in data[1]["inferenceProviderMapping"]] == ["gamma"]
    assert sim.hub_requests == 1


async def test_router_model_list(sim: SimServer, session: aiohttp.ClientSession) -> None:
    """`/v1/models` is the OpenAI-style list with per-provider status."""
    async with session.get(f"{sim.api_base}/models") as resp:
        data = await resp.json()
    assert data["object"] == "list"
    first = data["data"][0]
    assert first["id"] == "hfbatch/sim-chat" and first["object"] == "model" and first["owned_by"] == "hfbatch"
    assert [{k: p[k] for k in ("provider", "status")} for p in first["providers"]] == [
        {"provider": "alpha", "status": "live"},
        {"provider": "beta", "status": "live"},
        {"provider": "gamma", "status": "live"},
    ]


async def test_hub_fail_first(session: aiohttp.ClientSession) -> None:
    """The first `hub_fail_first` mapping requests answer 500, later ones succeed."""
    async with SimServer(one_provider(hub_fail_first=2)) as sim:
        statuses = []
        for _ in range(3):
            async with session.get(f"{sim.hub_url}/api/models/o/m{EXPAND}") as resp:
                statuses.append(resp.status)
                if resp.status == 500:
                    assert await resp.json() == {"error": "Internal Error"}
        assert statuses == [500, 500, 200]
        assert sim.hub_requests == 3


# --- auth and routing ----------------------------------------------------------------------


async def test_chat_without_token_is_401_html(sim: SimServer, session: aiohttp.ClientSession) -> None:
    """No Authorization header: 401 with an HTML body."""
    status, headers, text = await post_chat(session, sim, headers={}, model="hfbatch/sim-chat")
    assert status == 401
    assert headers["Content-Type"].startswith("text/html")
    assert "401" in text


async def test_chat_wrong_token_is_401_json(sim: SimServer, session: aiohttp.ClientSession) -> None:
    """A wrong token: 401 JSON with `www-authenticate`, checked before the model."""
    status, headers, text = await post_chat(
        session, sim, headers={"Authorization": "Bearer hf_nope"}, model="no/such-model"
    )
    assert status == 401
    assert json.loads(text) == {"error": "Invalid username or password."}
    assert headers["www-authenticate"] == 'Bearer realm="Authentication required"'
    assert sim.counts()["gamma"]["requests"] == 0


async def test_provider_suffix_pins_the_provider(sim: SimServer, session: aiohttp.ClientSession) -> None:
    """`model:provider` goes to that provider, named in `x-inference-provider`."""
    status, headers, _ = await post_chat(session, sim, model="hfbatch/sim-chat:alpha")
    assert status == 402
    assert headers["x-inference-provider"] == "alpha"
    assert headers["x-request-id"].startswith("Root=1-")
    assert sim.counts()["alpha"] == {"requests": 1, "by_outcome": {"402": 1}}


async def test_default_routing_picks_first_live_conversational(session: aiohttp.ClientSession) -> None:
    """A bare id or a policy suffix goes to the first live conversational provider."""
    providers = (
        SimProvider("staged", status="staging"),
        SimProvider("textgen", task="text-generation"),
        SimProvider("ok"),
        SimProvider("later"),
    )
    async with SimServer(SimConfig(models=(SimModel("o/m", providers),))) as sim:
        for model in ("o/m", "o/m:fastest", "o/m:cheapest", "o/m:preferred"):
            status, headers, text = await post_chat(session, sim, model=model)
            assert status == 200
            assert headers["x-inference-provider"] == "ok"
            assert json.loads(text)["model"] == model
        assert sim.counts()["ok"]["requests"] == 4


@pytest.mark.parametrize("model", ["no/such-model", "hfbatch/sim-chat:delta", "o/m:staged", "o/m:textgen"])
async def test_model_not_supported_envelope(session: aiohttp.ClientSession, model: str) -> None:
    """Unknown model or provider, or a provider not live/conversational: the 400 envelope."""
    providers = (SimProvider("staged", status="staging"), SimProvider("textgen", task="text-generation"))
    models = (*default_sim_config().models, SimModel("o/m", providers))
    async with SimServer(SimConfig(models=models)) as sim:
        status, _, text = await post_chat(session, sim, model=model)
    assert status == 400
    assert json.loads(text) == {
        "error": {
            "message": f"The requested model '{model}' is not supported by any provider you have enabled.",
            "type": "invalid_request_error",
            "param": "model",
            "code": "model_not_supported",
        }
    }


@pytest.mark.parametrize(
    "body",
    [
        "{not json",
        json.dumps({"model": "o/m"}),
        json.dumps({"model": "o/m", "messages": []}),
        json.dumps({"model": "o/m", "messages": [{"content": "no role"}]}),
        json.dumps({"model": "o/m", "messages": MESSAGES, "max_tokens": "ten"}),
    ],
)
async def test_invalid_body_is_422(session: aiohttp.ClientSession, body: str) -> None:
    """A body that is not JSON or lacks valid `messages` gets the TGI 422 shape, uncounted."""
    async with SimServer(one_provider()) as sim:
        async with session.post(f"{sim.api_base}/chat/completions", data=body, headers=AUTH) as resp:
            assert resp.status == 422
            data = await resp.json()
        assert data["error"].startswith("Input validation error: ")
        assert data["error_type"] == "validation"
        assert sim.counts()["p"]["requests"] == 0


# --- replies -------------------------------------------------------------------------------


def test_reply_for_rules() -> None:
    """The echo word, the last message's words, image count, and usage follow the rule."""
    messages = [
        {"role": "system", "content": "Be terse."},
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                {"type": "text", "text": "What is"},
                {"type": "text", "text": "in the picture?"},
            ],
        },
    ]
    reply = reply_for(messages, None)
    words = reply.text.split(" ")
    assert words[0].startswith("echo-") and len(words[0]) == len("echo-") + 12
    assert words[1:] == ["What", "is", "in", "the", "picture?", "[images:1]"]
    assert reply.finish_reason == "stop"
    assert reply.completion_tokens == 7
    assert reply.prompt_tokens == (2 + 4) + (5 + 4)
    assert reply_for(messages, None) == reply
    assert reply_for([{"role": "user", "content": "other"}], None).text.split()[0] != words[0]


def test_reply_for_max_tokens_cuts_with_length() -> None:
    """More words than `max_tokens`: the first max_tokens words and finish_reason `length`."""
    reply = reply_for([{"role": "user", "content": "one two three four"}], 3)
    assert reply.text.split(" ")[1:] == ["one", "two"]
    assert reply.finish_reason == "length"
    assert reply.completion_tokens == 3
    assert reply_for([{"role": "user", "content": "one two"}], 3).finish_reason == "stop"


async def test_non_stream_reply_matches_reply_for(sim: SimServer, session: aiohttp.ClientSession) -> None:
    """A non-streaming completion carries reply_for()'s text, finish reason and usage."""
    status, headers, text = await post_chat(session, sim, model="hfbatch/sim-chat:gamma", max_tokens=3)
    assert status == 200
    assert headers["Content-Type"].startswith("application/json")
    data = json.loads(text)
    expected = reply_for(MESSAGES, 3)
    assert data["id"].startswith("chatcmpl-") and data["object"] == "chat.completion"
    assert isinstance(data["created"], int) and data["model"] == "hfbatch/sim-chat:gamma"
    assert data["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": expected.text},
            "logprobs": None,
            "finish_reason": "length",
        }
    ]
    assert data["usage"] == {
        "prompt_tokens": expected.prompt_tokens,
        "completion_tokens": 3,
        "total_tokens": expected.prompt_tokens + 3,
    }


async def test_reply_does_not_depend_on_provider(session: aiohttp.ClientSession) -> None:
    """Two providers answer the same request with the same text."""
    config = SimConfig(models=(SimModel("o/m", (SimProvider("p"), SimProvider("q"))),))
    async with SimServer(config) as sim:
        texts = set()
        for model in ("o/m:p", "o/m:q"):
            _, _, text = await post_chat(session, sim, model=model)
            texts.add(json.loads(text)["choices"][0]["message"]["content"])
    assert texts == {reply_for(MESSAGES, None).text}


async def test_stream_concatenates_to_the_reply(sim: SimServer, session: aiohttp.ClientSession) -> None:
    """Streamed deltas join to reply_for()'s text; a finish chunk and [DONE] end the stream."""
    status, headers, text = await post_chat(session, sim, model="hfbatch/sim-chat:gamma", stream=True)
    assert status == 200
    assert headers["Content-Type"].startswith("text/event-stream")
    assert headers["x-inference-provider"] == "gamma"
    payloads = sse_payloads(text)
    assert payloads[-1] == "[DONE]"
    chunks = [json.loads(p) for p in payloads[:-1]]
    assert all(c["object"] == "chat.completion.chunk" and "usage" not in c for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert all("role" not in c["choices"][0]["delta"] for c in chunks[1:])
    expected = reply_for(MESSAGES, None)
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == expected.text
    assert len(chunks) == expected.completion_tokens + 1
    assert chunks[-1]["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}
    assert sim.counts()["gamma"]["by_outcome"] == {"200": 1}


async def test_stream_include_usage(sim: SimServer, session: aiohttp.ClientSession) -> None:
    """With include_usage, a usage-only chunk follows the finish chunk; others carry null usage."""
    _, _, text = await post_chat(
        session,
        sim,
        model="hfbatch/sim-chat:gamma",
        stream=True,
        stream_options={"include_usage": True},
    )
    payloads = sse_payloads(text)
    chunks = [json.loads(p) for p in payloads[:-1]]
    finish, usage = chunks[-2], chunks[-1]
    assert finish["choices"][0]["finish_reason"] == "stop" and finish["usage"] is None
    expected = reply_for(MESSAGES, None)
    assert usage["choices"] == []
    assert usage["usage"] == {
        "prompt_tokens": expected.prompt_tokens,
        "completion_tokens": expected.completion_tokens,
        "total_tokens": expected.total_tokens,
    }
    assert all(c["usage"] is None for c in chunks[:-1])


async def test_usage_in_finish_chunk(session: aiohttp.ClientSession) -> None:
    """`usage_in_finish_chunk` puts usage in the finish chunk and sends no usage-only chunk."""
    async with SimServer(one_provider(usage_in_finish_chunk=True)) as sim:
        _, _, text = await post_chat(session, sim, stream=True, stream_options={"include_usage": True})
    chunks = [json.loads(p) for p in sse_payloads(text)[:-1]]
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["usage"]["completion_tokens"] == reply_for(MESSAGES, None).completion_tokens
    assert all(c["choices"] for c in chunks)


async def test_sse_without_space_or_done(session: aiohttp.ClientSession) -> None:
    """`sse_space=False` writes `data:{...}`; `sse_done=False` ends without [DONE]."""
    async with SimServer(one_provider(sse_space=False, sse_done=False)) as sim:
        _, _, text = await post_chat(session, sim, stream=True)
    payloads = sse_payloads(text, space=False)
    assert "[DONE]" not in payloads
    assert json.loads(payloads[-1])["choices"][0]["finish_reason"] == "stop"


async def test_latency_is_applied(session: aiohttp.ClientSession) -> None:
    """A provider's latency delays its replies."""
    config = SimConfig(models=(SimModel("o/m", (SimProvider("p", latency=0.05),)),))
    async with SimServer(config) as sim:
        started = time.monotonic()
        status, _, _ = await post_chat(session, sim)
        assert status == 200
        assert time.monotonic() - started >= 0.05


# --- faults --------------------------------------------------------------------------------

_JSON_FAULT_BODIES: dict[str, Any] = {
    "400": {"error": "Bad request: invalid parameter"},
    "401": {"error": "Invalid username or password."},
    "402": {
        "error": "You have exceeded your monthly included credits for Inference Providers. "
        "Subscribe to PRO to get 20x more monthly included credits."
    },
    "403": {"error": "You cannot access this model."},
    "429": {"error": "Rate limit reached. Please retry later."},
    "500": {"error": "Internal server error"},
    "503": {"error": "Service Unavailable"},
}


@pytest.mark.parametrize("kind", sorted(_JSON_FAULT_BODIES))
async def test_json_status_faults(session: aiohttp.ClientSession, kind: str) -> None:
    """Each status fault answers its status and documented JSON body, and is counted."""
    async with SimServer(one_provider(Fault(kind))) as sim:
        status, headers, text = await post_chat(session, sim)
        assert status == int(kind)
        assert json.loads(text) == _JSON_FAULT_BODIES[kind]
        assert headers["x-inference-provider"] == "p"
        assert sim.counts()["p"] == {"requests": 1, "by_outcome": {kind: 1}}


async def test_other_status_faults(session: aiohttp.ClientSession) -> None:
    """422, 404, 502 and model_not_supported have their own shapes."""
    faults = {
        "422": (422, "application/json"),
        "404": (404, "text/plain"),
        "502": (502, "text/html"),
        "model_not_supported": (400, "application/json"),
    }
    for kind, (code, content_type) in faults.items():
        async with SimServer(one_provider(Fault(kind))) as sim:
            status, headers, text = await post_chat(session, sim)
        assert status == code and headers["Content-Type"].startswith(content_type), kind
        if kind == "422":
            assert json.loads(text)["error_type"] == "validation"
        elif kind == "404":
            assert text == "Not Found"
        elif kind == "model_not_supported":
            assert json.loads(text)["error"]["code"] == "model_not_supported"
    async with SimServer(one_provider(Fault("401"))) as sim:
        _, headers, _ = await post_chat(session, sim)
    assert headers["www-authenticate"] == 'Bearer realm="Authentication required"'


async def test_429_retry_after(session: aiohttp.ClientSession) -> None:
    """A 429 carries Retry-After only when the fault sets it."""
    async with SimServer(one_provider(Fault("429", retry_after="1"))) as sim:
        _, headers, _ = await post_chat(session, sim)
    assert headers["Retry-After"] == "1"
    async with SimServer(one_provider(Fault("429"))) as sim:
        _, headers, _ = await post_chat(session, sim)
    assert "Retry-After" not in headers


async def test_hang_is_cut_by_client_timeout_and_stop_is_prompt(session: aiohttp.ClientSession) -> None:
    """A hanging request outlasts a 0.2 s client timeout, and stopping the server ends it at once."""
    sim = SimServer(one_provider(Fault("hang")))
    await sim.start()
    try:
        with pytest.raises(TimeoutError):
            async with session.post(
                f"{sim.api_base}/chat/completions",
                json={"model": "o/m", "messages": MESSAGES},
                headers=AUTH,
                timeout=aiohttp.ClientTimeout(total=0.2),
            ) as resp:
                await resp.read()
        pending = asyncio.create_task(post_chat(session, sim))
        # The server offers nothing to await, so poll its counters until the request is in.
        while sim.counts()["p"]["requests"] < 2:  # noqa: ASYNC110
            await asyncio.sleep(0.005)
    finally:
        started = time.monotonic()
        await sim.stop()
        elapsed = time.monotonic() - started
    assert elapsed < 1.0
    with pytest.raises(aiohttp.ClientConnectionError):
        await pending
    assert sim.counts()["p"]["by_outcome"] == {"hang": 2}


@pytest.mark.parametrize("kind", ["reset", "down"])
@pytest.mark.parametrize("stream", [False, True])
async def test_dropped_connections(session: aiohttp.ClientSession, kind: str, stream: bool) -> None:
    """`reset` and `down` drop the connection: the client sees a connection error."""
    async with SimServer(one_provider(Fault(kind))) as sim:
        with pytest.raises(aiohttp.ClientConnectionError):
            await post_chat(session, sim, stream=stream)
        assert sim.counts()["p"]["by_outcome"] == {kind: 1}


async def test_malformed_is_invalid_json(session: aiohttp.ClientSession) -> None:
    """`malformed` answers 200 with a body (or SSE payload) that is not valid JSON."""
    async with SimServer(one_provider(Fault("malformed"))) as sim:
        status, headers, text = await post_chat(session, sim)
        assert status == 200 and headers["Content-Type"].startswith("application/json")
        with pytest.raises(ValueError):
            json.loads(text)
        status, headers, text = await post_chat(session, sim, stream=True)
        assert status == 200 and headers["Content-Type"].startswith("text/event-stream")
        (payload,) = sse_payloads(text)
        with pytest.raises(ValueError):
            json.loads(payload)
        assert sim.counts()["p"]["by_outcome"] == {"malformed": 2}


async def test_truncate_non_stream_is_a_payload_error(session: aiohttp.ClientSession) -> None:
    """A truncated JSON reply promises more bytes than it sends: ClientPayloadError."""
    async with SimServer(one_provider(Fault("truncate"))) as sim:
        with pytest.raises(aiohttp.ClientPayloadError):
            await post_chat(session, sim)
        assert sim.counts()["p"]["by_outcome"] == {"truncate": 1}


async def test_truncate_stream_is_cut(session: aiohttp.ClientSession) -> None:
    """A truncated stream sends half the word chunks, then no finish chunk and no [DONE]."""
    async with SimServer(one_provider(Fault("truncate"))) as sim:
        async with session.post(
            f"{sim.api_base}/chat/completions",
            json={"model": "o/m", "messages": MESSAGES, "stream": True},
            headers=AUTH,
        ) as resp:
            assert resp.status == 200
            lines: list[bytes] = []
            with pytest.raises(aiohttp.ClientPayloadError):
                async for line in resp.content:
                    lines.append(line)
    payloads = [line.decode()[len("data: ") :].strip() for line in lines if line.startswith(b"data:")]
    n_words = reply_for(MESSAGES, None).completion_tokens
    assert len(payloads) == n_words // 2
    assert all(json.loads(p)["choices"][0]["finish_reason"] is None for p in payloads)


async def outcomes(session: aiohttp.ClientSession, sim: SimServer, n: int) -> list[int]:
    """Statuses of `n` sequential requests."""
    return [(await post_chat(session, sim))[0] for _ in range(n)]


async def test_first_and_after(session: aiohttp.ClientSession) -> None:
    """`first` limits a fault to the first N requests; `after` skips the first N."""
    async with SimServer(one_provider(Fault("500", first=2))) as sim:
        assert await outcomes(session, sim, 4) == [500, 500, 200, 200]
    async with SimServer(one_provider(Fault("503", after=2))) as sim:
        assert await outcomes(session, sim, 4) == [200, 200, 503, 503]
    async with SimServer(one_provider(Fault("503", after=1, first=2))) as sim:
        assert await outcomes(session, sim, 3) == [200, 503, 200]


async def test_first_matching_fault_wins(session: aiohttp.ClientSession) -> None:
    """When several faults apply, the first listed is used."""
    async with SimServer(one_provider(Fault("429", first=1), Fault("500", first=2))) as sim:
        assert await outcomes(session, sim, 3) == [429, 500, 200]


async def test_rate_is_deterministic_for_a_seed(session: aiohttp.ClientSession) -> None:
    """The same seed gives the same hit pattern; another seed a different one; reset restarts it."""
    runs = []
    for seed in (7, 7, 8):
        async with SimServer(one_provider(Fault("500", rate=0.5), seed=seed)) as sim:
            runs.append(await outcomes(session, sim, 30))
            if seed == 8:
                sim.reset_counts()
                assert await outcomes(session, sim, 30) == runs[-1]
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]
    assert 5 <= runs[0].count(500) <= 25
    async with SimServer(one_provider(Fault("500", rate=0.0))) as sim:
        assert set(await outcomes(session, sim, 5)) == {200}


async def test_down_ignores_rate(session: aiohttp.ClientSession) -> None:
    """A `down` provider drops every request it applies to, whatever its rate."""
    async with SimServer(one_provider(Fault("down", rate=0.0, first=2))) as sim:
        for _ in range(2):
            with pytest.raises(aiohttp.ClientConnectionError):
                await post_chat(session, sim)
        assert (await post_chat(session, sim))[0] == 200


# --- counting ------------------------------------------------------------------------------


async def test_counts_per_provider(sim: SimServer, session: aiohttp.ClientSession) -> None:
    """Requests and outcomes are counted per provider, bodies logged, and reset_counts zeroes them."""
    for model in ("hfbatch/sim-chat:alpha", "hfbatch/sim-chat:gamma", "hfbatch/sim-vision"):
        await post_chat(session, sim, model=model)
    assert sim.counts() == {
        "alpha": {"requests": 1, "by_outcome": {"402": 1}},
        "beta": {"requests": 0, "by_outcome": {}},
        "gamma": {"requests": 2, "by_outcome": {"200": 2}},
    }
    assert sim.stats["gamma"].by_outcome[200] == 2
    assert [(p, b["model"]) for p, b in sim.requests] == [
        ("alpha", "hfbatch/sim-chat:alpha"),
        ("gamma", "hfbatch/sim-chat:gamma"),
        ("gamma", "hfbatch/sim-vision"),
    ]
    json.dumps(sim.counts())
    sim.reset_counts()
    assert sim.counts()["gamma"] == {"requests": 0, "by_outcome": {}}
    assert not sim.requests


def test_in_thread_serves_sync_callers() -> None:
    """`in_thread` serves from a background loop; counts are readable from the caller."""
    with SimServer(one_provider()).in_thread() as sim:
        request = urllib.request.Request(
            f"{sim.api_base}/chat/completions",
            data=json.dumps({"model": "o/m", "messages": MESSAGES}).encode(),
            headers={**AUTH, "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=5) as resp:
            data = json.loads(resp.read())
        assert data["choices"][0]["message"]["content"] == reply_for(MESSAGES, None).text
        assert sim.counts()["p"]["requests"] == 1
        url = sim.url
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{url}/v1/models", timeout=1)


async def test_serve_runs_until_cancelled(session: aiohttp.ClientSession) -> None:
    """`serve` calls `ready` with the running server and stops when cancelled."""
    ready: asyncio.Queue[SimServer] = asyncio.Queue()
    task = asyncio.create_task(serve(one_provider(), "127.0.0.1", 0, ready.put_nowait))
    sim = await asyncio.wait_for(ready.get(), 5)
    async with session.get(f"{sim.api_base}/models") as resp:
        assert resp.status == 200
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


# --- configuration -------------------------------------------------------------------------


def test_default_sim_config() -> None:
    """The default setup: alpha out of credits, beta flaky, gamma healthy, plus a vision model."""
    config = default_sim_config()
    chat, vision = config.models
    assert chat.id == "hfbatch/sim-chat" and vision.id == "hfbatch/sim-vision"
    alpha, beta, gamma = chat.providers
    assert alpha.faults == (Fault("402"),)
    assert beta.faults == (Fault("429", rate=0.05, retry_after="0"), Fault("500", rate=0.05))
    assert gamma.faults == ()
    assert {p.latency for p in chat.providers} == {0.02}
    assert [p.name for p in vision.providers] == ["gamma"]


def test_config_from_dict() -> None:
    """A TOML-shaped dict builds the config; missing `models` means the default models."""
    config = sim_config_from_dict(
        {
            "token": "hf_x",
            "seed": 3,
            "sse_space": False,
            "models": [
                {
                    "id": "o/m",
                    "providers": [
                        {"name": "p", "latency": 0.01, "faults": [{"kind": "429", "rate": 0.1, "retry_after": "1"}]},
                        {"name": "q", "provider_id": "m", "status": "error"},
                    ],
                }
            ],
        },
        "jobs/x.toml",
    )
    assert config.token == "hf_x" and config.seed == 3 and config.sse_space is False
    p, q = config.models[0].providers
    assert p == SimProvider("p", latency=0.01, faults=(Fault("429", rate=0.1, retry_after="1"),))
    assert q == SimProvider("q", provider_id="m", status="error")
    assert sim_config_from_dict({}, "x").models == default_sim_config().models


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"bogus": 1}, "jobs/x.toml: sim.bogus: unknown key"),
        ({"seed": "1"}, "jobs/x.toml: sim.seed: expected an integer"),
        ({"sse_done": 1}, "jobs/x.toml: sim.sse_done: expected true or false"),
        ({"models": {"id": "o/m"}}, "jobs/x.toml: sim.models: expected an array"),
        ({"models": [{"id": "o/m", "providers": [{"name": "p", "latency": -1}]}]}, "providers[0].latency"),
        (
            {"models": [{"id": "o/m", "providers": [{"name": "p"}, {"name": "q", "faults": [{"kind": "boom"}]}]}]},
            "jobs/x.toml: sim.models[0].providers[1].faults[0].kind: unknown fault 'boom' (expected one of ",
        ),
        (
            {"models": [{"id": "o/m", "providers": [{"name": "p", "faults": [{"kind": "429", "rate": 2}]}]}]},
            "sim.models[0].providers[0].faults[0].rate: must be between 0 and 1",
        ),
        ({"models": [{"id": "o/m", "providers": [{"name": "p", "extra": 1}]}]}, "providers[0].extra: unknown key"),
        ({"models": [{"id": "o/m", "providers": [{"name": "p"}, {"name": "p"}]}]}, "providers[1].name: provider"),
        ({"models": [{"providers": []}]}, "sim.models[0].id: missing"),
        ({"models": [{"id": "o/m", "providers": [{"name": "p", "status": "dead"}]}]}, "providers[0].status"),
    ],
)
def test_config_errors_name_source_and_key(data: dict[str, Any], expected: str) -> None:
    """Unknown keys, wrong types and bad fault kinds raise JobSpecError naming the file and key."""
    with pytest.raises(JobSpecError) as info:
        sim_config_from_dict(data, "jobs/x.toml")
    assert str(info.value).startswith("jobs/x.toml: ")
    assert expected in str(info.value)


def test_fault_kinds_all_accepted() -> None:
    """Every documented fault kind validates, and an integer kind is read as its status."""
    for kind in FAULT_KINDS:
        sim_config_from_dict({"models": [{"id": "o/m", "providers": [{"name": "p", "faults": [{"kind": kind}]}]}]}, "x")
    config = sim_config_from_dict(
        {"models": [{"id": "o/m", "providers": [{"name": "p", "faults": [{"kind": 429}]}]}]}, "x"
    )
    assert config.models[0].providers[0].faults[0].kind == "429"


def test_fault_built_in_code_is_checked() -> None:
    """A Fault with an unknown kind or a rate outside [0, 1] is refused at construction."""
    with pytest.raises(ValueError, match="unknown fault 'boom'"):
        Fault("boom")
    with pytest.raises(ValueError, match="between 0 and 1"):
        Fault("500", rate=1.5)


def test_load_sim_config(tmp_path: Path) -> None:
    """A TOML file is read whole, or its [sim] table when it has one; errors name the file."""
    plain = tmp_path / "sim.toml"
    plain.write_text('seed = 5\n[[models]]\nid = "o/m"\n[[models.providers]]\nname = "p"\n')
    config = load_sim_config(plain)
    assert config.seed == 5 and config.models[0].providers[0].name == "p"
    job = tmp_path / "job.toml"
    job.write_text('input = "rows.jsonl"\n[sim]\nhub_fail_first = 1\n')
    assert load_sim_config(job).hub_fail_first == 1
    bad = tmp_path / "bad.toml"
    bad.write_text("[sim]\nhang_seconds = 'long'\n")
    with pytest.raises(JobSpecError, match=r"bad\.toml: sim\.hang_seconds: expected a number"):
        load_sim_config(bad)
    broken = tmp_path / "broken.toml"
    broken.write_text("seed = \n")
    with pytest.raises(JobSpecError, match=r"broken\.toml: not valid TOML"):
        load_sim_config(broken)
    with pytest.raises(JobSpecError, match=r"missing\.toml"):
        load_sim_config(tmp_path / "missing.toml")
