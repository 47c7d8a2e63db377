"""`HuggingFaceAPI` against the simulated Hub and router, over real loopback HTTP."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from hfbatch import defaults
from hfbatch.client import HuggingFaceAPI
from hfbatch.errors import (
    APIError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    MalformedResponseError,
    ModelNotSupportedError,
    PaymentRequiredError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    TransportError,
)
from hfbatch.hub import ProviderMapping
from hfbatch.messages import Message
from hfbatch.retry import RetryPolicy
from hfbatch.sim import Fault, SimConfig, SimModel, SimProvider, SimServer, reply_for
from hfbatch.wire import ChatResult

# The shapes of conftest's `start_sim` and `make_client` fixtures.
StartSim = Callable[..., Awaitable[SimServer]]
MakeClient = Callable[..., HuggingFaceAPI]

MODEL = "o/m"
MESSAGES: list[Message] = [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "say three words"}]
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32


def config(*providers: SimProvider | str, **settings: Any) -> SimConfig:
    """One model `o/m` served by these providers, in order (a bare name is a healthy provider)."""
    ps = tuple(SimProvider(p) if isinstance(p, str) else p for p in providers)
    return SimConfig(models=(SimModel(MODEL, ps),), **settings)


def faulty(name: str, *faults: Fault) -> SimProvider:
    return SimProvider(name, faults=faults)


def requests_to(sim: SimServer) -> dict[str, int]:
    """Chat requests each provider received."""
    return {name: c["requests"] for name, c in sim.counts().items()}


async def collect(agen: Any) -> tuple[list[str], ChatResult]:
    """Drain a streaming generator: its text chunks and its final ChatResult."""
    texts: list[str] = []
    result: ChatResult | None = None
    async for item in agen:
        if isinstance(item, ChatResult):
            assert result is None, "one ChatResult, last"
            result = item
        else:
            assert result is None, "no text after the ChatResult"
            assert isinstance(item, str)
            texts.append(item)
    assert result is not None
    return texts, result


# --- models and mappings ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "resolved"),
    [
        pytest.param("llama-3.3-70b", "meta-llama/Llama-3.3-70B-Instruct", id="alias"),
        pytest.param("gpt-oss-120b", "openai/gpt-oss-120b", id="alias-default"),
        pytest.param("org/some-model", "org/some-model", id="full-id-passes"),
        pytest.param("not-an-alias", "not-an-alias", id="unknown-passes"),
        pytest.param("", HuggingFaceAPI.default_model, id="empty-is-default"),
    ],
)
def test_get_model(given: str, resolved: str) -> None:
    """Aliases resolve to full ids; any other id passes through unchanged."""
    assert HuggingFaceAPI("hf_x").get_model(given) == resolved


async def test_get_mapping_live_conversational_in_server_order(start_sim: StartSim, make_client: MakeClient) -> None:
    """Only live conversational providers are kept, in the Hub's order, not alphabetical."""
    sim = await start_sim(
        config(
            SimProvider("zeta", provider_id="zeta/model-id"),
            SimProvider("staged", status="staging"),
            SimProvider("broken", status="error"),
            SimProvider("textgen", task="text-generation"),
            "alpha",
        )
    )
    api = make_client(sim)
    mapping = await api.get_mapping(MODEL)
    assert mapping == [
        ProviderMapping("zeta", "zeta/model-id", "live", "conversational"),
        ProviderMapping("alpha", MODEL, "live", "conversational"),
    ]
    assert await api.providers_for(MODEL) == ["zeta", "alpha"]


async def test_get_mapping_is_cached(start_sim: StartSim, make_client: MakeClient) -> None:
    """A second lookup, and concurrent lookups, ask the Hub once."""
    sim = await start_sim(config("a", "b"))
    api = make_client(sim)
    results = await asyncio.gather(*(api.get_mapping(MODEL) for _ in range(5)))
    assert sim.hub_requests == 1
    assert await api.get_mapping(MODEL) == results[0]
    assert await api.providers_for(MODEL) == ["a", "b"]
    assert sim.hub_requests == 1


async def test_get_mapping_failure_is_not_cached(start_sim: StartSim, make_client: MakeClient) -> None:
    """A Hub failure that outlasts the retries raises, and the next lookup asks again and succeeds."""
    sim = await start_sim(config("a", hub_fail_first=3))
    api = make_client(sim, retry=RetryPolicy(max_retries=2, time_scale=0.001))
    with pytest.raises(ServerError) as info:
        await api.get_mapping(MODEL)
    assert (info.value.provider, info.value.status) == ("hub", 500)
    assert sim.hub_requests == 3
    assert [m.provider for m in await api.get_mapping(MODEL)] == ["a"]
    assert sim.hub_requests == 4


async def test_get_mapping_retries_a_hub_blip(start_sim: StartSim, make_client: MakeClient) -> None:
    """A Hub that fails twice and then answers gives the mapping in one call."""
    sim = await start_sim(config("a", hub_fail_first=2))
    api = make_client(sim, retry=RetryPolicy(max_retries=3, time_scale=0.001))
    assert [m.provider for m in await api.get_mapping(MODEL)] == ["a"]
    assert sim.hub_requests == 3


async def test_plain_server_gets_aliases_as_given(start_sim: StartSim, make_client: MakeClient) -> None:
    """Against a non-HF server an alias is not rewritten to an HF id, and HF_ENDPOINT does not change that."""
    sim = await start_sim(config("a"))
    api = make_client(sim, hub_url=None)
    assert api.get_model("llama-3") == "llama-3"
    assert not api.uses_hub
    hf = make_client(sim)
    assert hf.get_model("llama-3") == "meta-llama/Llama-3.3-70B-Instruct"


def test_hf_endpoint_alone_does_not_make_another_server_a_router(monkeypatch: pytest.MonkeyPatch) -> None:
    """HF_ENDPOINT moves the Hub for the router; with a custom api_base and no hub_url, no mapping is used."""
    monkeypatch.setenv("HF_ENDPOINT", "https://hub.example")
    plain = HuggingFaceAPI("t", api_base="http://127.0.0.1:9/v1")
    assert not plain.uses_hub
    router = HuggingFaceAPI("t")
    assert router.uses_hub and router.hub_url == "https://hub.example"


async def test_get_mapping_unknown_model(start_sim: StartSim, make_client: MakeClient) -> None:
    """A model the Hub does not know is ModelNotSupportedError, and chat sends nothing."""
    sim = await start_sim(config("a"))
    api = make_client(sim)
    with pytest.raises(ModelNotSupportedError) as info:
        await api.get_mapping("o/unknown")
    assert info.value.status == 404
    with pytest.raises(ModelNotSupportedError):
        await api.chat("o/unknown", MESSAGES)
    assert requests_to(sim) == {"a": 0}


@pytest.mark.parametrize(
    "providers",
    [
        pytest.param((), id="no-providers"),
        pytest.param((SimProvider("s", status="staging"), SimProvider("t", task="text-to-image")), id="none-usable"),
    ],
)
async def test_model_without_live_provider(
    start_sim: StartSim, make_client: MakeClient, providers: tuple[SimProvider, ...]
) -> None:
    """No live provider: an empty mapping, ModelNotSupportedError on chat, and the Hub is asked again next time."""
    sim = await start_sim(config(*providers))
    api = make_client(sim)
    assert await api.get_mapping(MODEL) == []
    with pytest.raises(ModelNotSupportedError, match="no live provider"):
        await api.chat(MODEL, MESSAGES)
    # A missing mapping is not remembered: the provider may go live later.
    assert sim.hub_requests == 2
    assert all(n == 0 for n in requests_to(sim).values())


async def test_get_models_lists_live_models_and_caches(start_sim: StartSim, make_client: MakeClient) -> None:
    """Models with a live conversational provider are listed; the list is cached."""
    sim = await start_sim(
        SimConfig(
            models=(
                SimModel("o/chat", (SimProvider("a"),)),
                SimModel("o/staged", (SimProvider("a", status="staging"),)),
                SimModel("o/none", ()),
                SimModel("o/chat2", (SimProvider("b", task="text-generation"), SimProvider("c"))),
            )
        )
    )
    api = make_client(sim)
    assert await api.get_models() == ["o/chat", "o/chat2"]
    assert await api.get_models() == ["o/chat", "o/chat2"]
    assert sim.hub_requests == 1


async def test_get_models_falls_back_when_the_hub_fails(start_sim: StartSim, make_client: MakeClient) -> None:
    """A Hub that refuses gives the fallback list, which is not cached: a later call asks again."""
    sim = await start_sim(config("a"))
    api = make_client(sim, token="hf_wrong")
    assert await api.get_models() == list(HuggingFaceAPI.fallback_models)
    api.api_key = sim.config.token
    assert await api.get_models() == [MODEL]
    assert sim.hub_requests == 2


async def test_get_models_falls_back_when_the_hub_is_down(fast_policy: RetryPolicy) -> None:
    """A Hub that cannot be reached gives the fallback list."""
    async with SimServer(config("a")) as gone:
        api_base, hub_url = gone.api_base, gone.hub_url
    # The server is stopped: its port refuses connections from here on.
    async with HuggingFaceAPI("hf_x", api_base=api_base, hub_url=hub_url, retry=fast_policy) as api:
        assert await api.get_models() == list(HuggingFaceAPI.fallback_models)


# --- chat ------------------------------------------------------------------------------------


async def test_chat_returns_the_reply(start_sim: StartSim, make_client: MakeClient) -> None:
    """chat() returns the simulated model's reply with provider, finish reason, usage and attempts."""
    sim = await start_sim(config("a", "b"))
    api = make_client(sim)
    result = await api.chat(MODEL, MESSAGES)
    expected = reply_for(MESSAGES, defaults.DEFAULT_MAX_TOKENS)
    assert result.text == expected.text
    assert (result.finish_reason, result.prompt_tokens, result.completion_tokens) == (
        "stop",
        expected.prompt_tokens,
        expected.completion_tokens,
    )
    assert (result.provider, result.model, result.attempts) == ("a", MODEL, 1)
    assert result.latency > 0
    assert requests_to(sim) == {"a": 1, "b": 0}
    provider, body = sim.requests[-1]
    assert provider == "a"
    assert body["model"] == f"{MODEL}:a"
    assert body["stream"] is False
    assert body["max_tokens"] == defaults.DEFAULT_MAX_TOKENS


async def test_chat_params_reach_the_server(start_sim: StartSim, make_client: MakeClient) -> None:
    """Extra parameters go into the body; max_tokens cuts the reply with finish reason `length`."""
    sim = await start_sim(config("a"))
    api = make_client(sim)
    result = await api.chat(MODEL, MESSAGES, max_tokens=2, temperature=0.5, stream=True)
    assert result.finish_reason == "length"
    assert result.text == reply_for(MESSAGES, 2).text
    body = sim.requests[-1][1]
    assert (body["temperature"], body["max_tokens"], body["stream"]) == (0.5, 2, False)


async def test_chat_with_explicit_providers(start_sim: StartSim, make_client: MakeClient) -> None:
    """Given providers are tried in the given order."""
    sim = await start_sim(config("a", "b"))
    api = make_client(sim)
    result = await api.chat(MODEL, MESSAGES, providers=["b", "a"])
    assert result.provider == "b"
    assert requests_to(sim) == {"a": 0, "b": 1}


async def test_402_fails_over_and_the_provider_stays_out(start_sim: StartSim, make_client: MakeClient) -> None:
    """A provider out of credits is left for the next one, and not tried again by the same client."""
    sim = await start_sim(config(faulty("a", Fault("402")), "b"))
    api = make_client(sim)
    result = await api.chat(MODEL, MESSAGES)
    assert (result.provider, result.attempts) == ("b", 2)
    assert result.text == reply_for(MESSAGES, defaults.DEFAULT_MAX_TOKENS).text
    assert requests_to(sim) == {"a": 1, "b": 1}
    again = await api.chat(MODEL, MESSAGES)
    assert (again.provider, again.attempts) == ("b", 1)
    assert requests_to(sim) == {"a": 1, "b": 2}


async def test_every_provider_out_of_credits(start_sim: StartSim, make_client: MakeClient) -> None:
    """When all providers answer 402 the last 402 is raised; afterwards nothing is tried and the 402 is named."""
    sim = await start_sim(config(faulty("a", Fault("402")), faulty("b", Fault("402"))))
    api = make_client(sim)
    with pytest.raises(PaymentRequiredError) as info:
        await api.chat(MODEL, MESSAGES)
    assert (info.value.provider, info.value.attempts) == ("b", 2)
    with pytest.raises(PaymentRequiredError, match="no provider left to try") as again:
        await api.chat(MODEL, MESSAGES)
    assert again.value.attempts == 0
    assert requests_to(sim) == {"a": 1, "b": 1}


@pytest.mark.parametrize(
    ("fault", "cls"),
    [
        pytest.param(Fault("403"), PermissionDeniedError, id="403"),
        pytest.param(Fault("404"), ModelNotSupportedError, id="404"),
        pytest.param(Fault("model_not_supported"), ModelNotSupportedError, id="model-not-supported"),
    ],
)
async def test_unservable_provider_fails_over_without_retry(
    start_sim: StartSim, make_client: MakeClient, fault: Fault, cls: type[APIError]
) -> None:
    """403, 404 and model_not_supported move to the next provider at once."""
    sim = await start_sim(config(faulty("a", fault), "b"))
    api = make_client(sim)
    assert (await api.chat(MODEL, MESSAGES)).provider == "b"
    assert requests_to(sim) == {"a": 1, "b": 1}
    with pytest.raises(cls):
        await api.complete(MODEL, MESSAGES, provider="a")


@pytest.mark.parametrize(
    ("kind", "cls", "status"),
    [
        pytest.param("400", BadRequestError, 400, id="400"),
        pytest.param("422", BadRequestError, 422, id="422"),
    ],
)
async def test_bad_request_fails_at_once(
    start_sim: StartSim, make_client: MakeClient, kind: str, cls: type[APIError], status: int
) -> None:
    """A bad request is not retried nor failed over: it would fail everywhere."""
    sim = await start_sim(config(faulty("a", Fault(kind)), "b"))
    api = make_client(sim)
    with pytest.raises(cls) as info:
        await api.chat(MODEL, MESSAGES)
    assert (info.value.status, info.value.provider, info.value.attempts) == (status, "a", 1)
    assert requests_to(sim) == {"a": 1, "b": 0}


FAULTS = [
    pytest.param(Fault("402"), PaymentRequiredError, 402, id="402"),
    pytest.param(Fault("403"), PermissionDeniedError, 403, id="403"),
    pytest.param(Fault("404"), ModelNotSupportedError, 404, id="404"),
    pytest.param(Fault("model_not_supported"), ModelNotSupportedError, 400, id="model-not-supported"),
    pytest.param(Fault("400"), BadRequestError, 400, id="400"),
    pytest.param(Fault("422"), BadRequestError, 422, id="422"),
    pytest.param(Fault("401"), AuthenticationError, 401, id="401"),
    pytest.param(Fault("429"), RateLimitError, 429, id="429"),
    pytest.param(Fault("500"), ServerError, 500, id="500"),
    pytest.param(Fault("502"), ServerError, 502, id="502-html"),
    pytest.param(Fault("503"), ServerError, 503, id="503"),
    pytest.param(Fault("malformed"), MalformedResponseError, None, id="malformed"),
    pytest.param(Fault("truncate"), MalformedResponseError, None, id="truncate"),
    pytest.param(Fault("reset"), TransportError, None, id="reset"),
    pytest.param(Fault("down"), TransportError, None, id="down"),
]


@pytest.mark.parametrize(("fault", "cls", "status"), FAULTS)
async def test_fault_maps_to_error_class(
    start_sim: StartSim, make_client: MakeClient, fault: Fault, cls: type[APIError], status: int | None
) -> None:
    """One attempt on a faulty provider raises the error class the failure table expects."""
    sim = await start_sim(config(faulty("a", fault)))
    api = make_client(sim)
    with pytest.raises(APIError) as info:
        await api.complete(MODEL, MESSAGES, provider="a")
    assert type(info.value) is cls
    assert (info.value.provider, info.value.status) == ("a", status)
    assert requests_to(sim) == {"a": 1}


@pytest.mark.parametrize(("fault", "cls", "status"), FAULTS)
async def test_fault_maps_to_error_class_streaming(
    start_sim: StartSim, make_client: MakeClient, fault: Fault, cls: type[APIError], status: int | None
) -> None:
    """A streamed attempt on a faulty provider raises the same classes."""
    sim = await start_sim(config(faulty("a", fault)))
    api = make_client(sim)
    with pytest.raises(APIError) as info:
        await collect(api.stream(MODEL, MESSAGES, provider="a"))
    assert type(info.value) is cls
    assert (info.value.provider, info.value.status) == ("a", status)


@pytest.mark.parametrize(
    ("retry_after", "expected"),
    [
        pytest.param(None, None, id="without-retry-after"),
        pytest.param("7", 7.0, id="with-retry-after"),
    ],
)
async def test_429_carries_retry_after(
    start_sim: StartSim, make_client: MakeClient, retry_after: str | None, expected: float | None
) -> None:
    """A 429 raises RateLimitError with the server's Retry-After, if it sent one."""
    sim = await start_sim(config(faulty("a", Fault("429", retry_after=retry_after))))
    api = make_client(sim)
    with pytest.raises(RateLimitError) as info:
        await api.complete(MODEL, MESSAGES, provider="a")
    assert info.value.retry_after == expected


async def test_429_fails_over_when_another_provider_is_ready(start_sim: StartSim, make_client: MakeClient) -> None:
    """A rate-limited provider hands the request to the next one instead of waiting."""
    sim = await start_sim(config(faulty("a", Fault("429", retry_after="60")), "b"))
    api = make_client(sim)
    result = await api.chat(MODEL, MESSAGES)
    assert (result.provider, result.attempts) == ("b", 2)
    assert requests_to(sim) == {"a": 1, "b": 1}


async def test_429_alone_waits_and_retries(start_sim: StartSim, make_client: MakeClient) -> None:
    """With no other provider, a 429 is retried on the same provider after its (scaled) Retry-After."""
    sim = await start_sim(config(faulty("a", Fault("429", first=2, retry_after="1"))))
    api = make_client(sim)
    result = await api.chat(MODEL, MESSAGES)
    assert (result.provider, result.attempts) == ("a", 3)


async def test_500_is_retried_then_succeeds(start_sim: StartSim, make_client: MakeClient) -> None:
    """Two 500s then a success on the same provider: three attempts, no fail-over."""
    sim = await start_sim(config(faulty("a", Fault("500", first=2)), "b"))
    api = make_client(sim)
    result = await api.chat(MODEL, MESSAGES)
    assert (result.provider, result.attempts) == ("a", 3)
    assert requests_to(sim) == {"a": 3, "b": 0}


@pytest.mark.parametrize("kind", ["503", "malformed", "truncate", "reset", "down"])
async def test_transient_failures_exhaust_retries_then_fail_over(
    start_sim: StartSim, make_client: MakeClient, fast_policy: RetryPolicy, kind: str
) -> None:
    """A provider that keeps failing transiently gets max_retries retries, then the next provider serves."""
    sim = await start_sim(config(faulty("a", Fault(kind)), "b"))
    api = make_client(sim)
    result = await api.chat(MODEL, MESSAGES)
    tries = 1 + fast_policy.max_retries
    assert (result.provider, result.attempts) == ("b", tries + 1)
    assert requests_to(sim) == {"a": tries, "b": 1}


async def test_transient_failure_on_the_only_provider_is_raised(start_sim: StartSim, make_client: MakeClient) -> None:
    """With one provider failing every time, the last error is raised with the attempts made."""
    sim = await start_sim(config(faulty("a", Fault("500"))))
    api = make_client(sim, retry=RetryPolicy(max_retries=2, max_attempts=5, time_scale=0.001))
    with pytest.raises(ServerError) as info:
        await api.chat(MODEL, MESSAGES)
    # Three tries, a pause, then back to the same provider until the row's five attempts are spent.
    assert info.value.attempts == 5
    assert requests_to(sim) == {"a": 5}


# --- tokens ----------------------------------------------------------------------------------


async def test_wrong_token_is_authentication_error(start_sim: StartSim, make_client: MakeClient) -> None:
    """A wrong token raises AuthenticationError, and the token appears in no message."""
    token = "hf_WrongTokenThatMustNotLeak42"
    sim = await start_sim(config("a", "b"))
    api = make_client(sim, token=token)
    for call in (
        api.chat(MODEL, MESSAGES),
        api.chat(MODEL, MESSAGES, providers=["a", "b"]),
        api.complete(MODEL, MESSAGES, provider="a"),
        collect(api.stream(MODEL, MESSAGES, provider="a")),
        collect(api.create_async_generator(MODEL, MESSAGES)),
    ):
        with pytest.raises(AuthenticationError) as info:
            await call
        assert info.value.status == 401
        for text in (str(info.value), repr(info.value), info.value.message, info.value.body or ""):
            assert token not in text
    # The router's 401 stops at once: no retry, no fail-over.
    assert requests_to(sim) == {"a": 0, "b": 0}


async def test_401_from_a_provider_stops_at_once(start_sim: StartSim, make_client: MakeClient) -> None:
    """A 401 on the first provider is raised without trying the next."""
    sim = await start_sim(config(faulty("a", Fault("401")), "b"))
    api = make_client(sim)
    with pytest.raises(AuthenticationError):
        await api.chat(MODEL, MESSAGES)
    assert requests_to(sim) == {"a": 1, "b": 0}


async def test_missing_token_fails_before_any_request(start_sim: StartSim, make_client: MakeClient) -> None:
    """Without a token, every chat call raises AuthenticationError naming the variable, and nothing is sent."""
    sim = await start_sim(config("a"))
    api = make_client(sim, token=None)
    for call in (
        api.chat(MODEL, MESSAGES),
        api.complete(MODEL, MESSAGES, provider="a"),
        collect(api.stream(MODEL, MESSAGES, provider="a")),
        collect(api.create_async_generator(MODEL, MESSAGES)),
    ):
        with pytest.raises(AuthenticationError, match="HF_TOKEN") as info:
            await call
        assert info.value.status is None
    assert sim.hub_requests == 0
    assert requests_to(sim) == {"a": 0}


async def test_token_passed_per_call(start_sim: StartSim, make_client: MakeClient) -> None:
    """A client without a token works when each call brings one."""
    sim = await start_sim(config("a"))
    api = make_client(sim, token=None)
    result = await api.chat(MODEL, MESSAGES, api_key=sim.config.token)
    assert result.provider == "a"


# --- deadlines -------------------------------------------------------------------------------


async def test_hanging_provider_is_cut_by_the_timeout(start_sim: StartSim, make_client: MakeClient) -> None:
    """A provider that never answers raises APITimeoutError once the client's timeout passes."""
    sim = await start_sim(config(faulty("a", Fault("hang"))))
    api = make_client(sim, timeout=0.2)
    with pytest.raises(APITimeoutError) as info:
        await api.complete(MODEL, MESSAGES, provider="a")
    assert info.value.provider == "a"
    with pytest.raises(APITimeoutError):
        await collect(api.stream(MODEL, MESSAGES, provider="a"))


async def test_hanging_provider_fails_over(start_sim: StartSim, make_client: MakeClient) -> None:
    """With max_retries=0, a hanging first provider gives way to the second after one timeout."""
    sim = await start_sim(config(faulty("a", Fault("hang")), "b"))
    api = make_client(sim, timeout=0.2, retry=RetryPolicy(max_retries=0, time_scale=0.001))
    result = await api.chat(MODEL, MESSAGES)
    assert (result.provider, result.attempts) == ("b", 2)
    assert requests_to(sim) == {"a": 1, "b": 1}


async def test_slow_stream_consumer_never_sees_a_stray_cancellation(
    start_sim: StartSim, make_client: MakeClient
) -> None:
    """A caller slower than the deadline between chunks gets the reply or APITimeoutError, never a cancellation."""
    sim = await start_sim(config("a"))
    api = make_client(sim, timeout=0.05)
    items: list[str | ChatResult] = []
    with contextlib.suppress(APITimeoutError):
        async for item in api.stream(MODEL, MESSAGES, provider="a"):
            items.append(item)
            await asyncio.sleep(0.03)  # together, longer than the deadline
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0
    if items and isinstance(items[-1], ChatResult):
        assert items[-1].text == reply_for(MESSAGES, defaults.DEFAULT_MAX_TOKENS).text


# --- streaming -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "settings",
    [
        pytest.param({}, id="router-default"),
        pytest.param({"sse_space": False}, id="no-space-after-data"),
        pytest.param({"sse_done": False}, id="no-done"),
        pytest.param({"usage_in_finish_chunk": True}, id="usage-in-finish-chunk"),
        pytest.param({"sse_space": False, "sse_done": False, "usage_in_finish_chunk": True}, id="all-variants"),
    ],
)
async def test_stream_yields_text_then_result(
    start_sim: StartSim, make_client: MakeClient, settings: dict[str, Any]
) -> None:
    """Streamed text chunks concatenate to the reply; the ChatResult comes last with usage."""
    sim = await start_sim(config("a", **settings))
    api = make_client(sim)
    texts, result = await collect(api.create_async_generator(MODEL, MESSAGES))
    expected = reply_for(MESSAGES, defaults.DEFAULT_MAX_TOKENS)
    assert len(texts) == len(expected.words) > 1
    assert "".join(texts) == expected.text == result.text
    assert (result.finish_reason, result.prompt_tokens, result.completion_tokens) == (
        "stop",
        expected.prompt_tokens,
        expected.completion_tokens,
    )
    assert (result.provider, result.attempts) == ("a", 1)
    body = sim.requests[-1][1]
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["model"] == f"{MODEL}:a"


async def test_stream_fails_over_before_text(start_sim: StartSim, make_client: MakeClient) -> None:
    """A stream that fails before any text (a 402, then a truncated stream) moves to the next provider."""
    sim = await start_sim(config(faulty("a", Fault("402")), faulty("b", Fault("truncate")), "c"))
    api = make_client(sim, retry=RetryPolicy(max_retries=0, time_scale=0.001))
    # With max_tokens=0 the reply is empty, so the truncated stream is cut before any text.
    texts, result = await collect(api.create_async_generator(MODEL, MESSAGES, max_tokens=0))
    assert texts == []
    assert (result.provider, result.attempts, result.finish_reason) == ("c", 3, "length")
    assert requests_to(sim) == {"a": 1, "b": 1, "c": 1}
    assert sim.counts()["b"]["by_outcome"] == {"truncate": 1}


async def test_stream_truncated_before_text_on_the_only_provider(
    start_sim: StartSim, make_client: MakeClient, fast_policy: RetryPolicy
) -> None:
    """With one provider, a stream cut before any text is retried, then raised as malformed."""
    sim = await start_sim(config(faulty("a", Fault("truncate"))))
    api = make_client(sim)
    with pytest.raises(MalformedResponseError) as info:
        await collect(api.create_async_generator(MODEL, MESSAGES, max_tokens=0))
    # Retried on the provider, then (alone) come back to after a pause, until the row's budget is spent.
    assert info.value.attempts == fast_policy.max_attempts
    assert requests_to(sim) == {"a": fast_policy.max_attempts}


async def test_stream_broken_after_text_is_raised_not_failed_over(start_sim: StartSim, make_client: MakeClient) -> None:
    """Once text was shown, a broken stream is raised: another provider's reply would not continue it."""
    sim = await start_sim(config(faulty("a", Fault("truncate")), "b"))
    api = make_client(sim)
    texts: list[str] = []
    with pytest.raises(MalformedResponseError):
        async for item in api.create_async_generator(MODEL, MESSAGES):
            assert isinstance(item, str)
            texts.append(item)
    assert texts
    assert reply_for(MESSAGES, defaults.DEFAULT_MAX_TOKENS).text.startswith("".join(texts))
    assert requests_to(sim) == {"a": 1, "b": 0}


async def test_stream_broken_after_retries_counts_every_attempt(start_sim: StartSim, make_client: MakeClient) -> None:
    """A stream broken after text, on a second attempt, reports both attempts."""
    sim = await start_sim(config(faulty("a", Fault("500", first=1), Fault("truncate", after=1))))
    api = make_client(sim)
    with pytest.raises(MalformedResponseError) as info:
        await collect(api.create_async_generator(MODEL, MESSAGES))
    assert (info.value.provider, info.value.attempts) == ("a", 2)
    assert sim.counts()["a"] == {"requests": 2, "by_outcome": {"500": 1, "truncate": 1}}


async def test_stream_consumer_may_stop_early(start_sim: StartSim, make_client: MakeClient) -> None:
    """Closing the generator after the first chunk ends the request cleanly; the client stays usable."""
    sim = await start_sim(config(SimProvider("a", latency=0.01)))
    api = make_client(sim)
    agen = api.create_async_generator(MODEL, MESSAGES)
    first = await anext(agen)
    assert isinstance(first, str) and first
    await agen.aclose()
    assert (await api.chat(MODEL, MESSAGES)).provider == "a"


async def test_stream_retries_on_5xx(start_sim: StartSim, make_client: MakeClient) -> None:
    """A 500 before the stream starts is retried on the same provider."""
    sim = await start_sim(config(faulty("a", Fault("500", first=1))))
    api = make_client(sim)
    texts, result = await collect(api.create_async_generator(MODEL, MESSAGES))
    assert "".join(texts) == result.text
    assert (result.provider, result.attempts) == ("a", 2)


# --- what the server receives ----------------------------------------------------------------


async def test_max_input_length_trims_what_is_sent(start_sim: StartSim, make_client: MakeClient) -> None:
    """Old messages are dropped before sending; system and last messages stay; the caller's list is unchanged."""
    sim = await start_sim(config("a"))
    api = make_client(sim)
    messages: list[Message] = [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": "old question " * 20},
        {"role": "assistant", "content": "old answer " * 20},
        {"role": "user", "content": "new question"},
    ]
    before = copy.deepcopy(messages)
    budget = api.calculate_length([messages[0], messages[-1]]) + 10
    result = await api.chat(MODEL, messages, max_input_length=budget)
    sent = sim.requests[-1][1]["messages"]
    assert sent == [before[0], before[-1]]
    assert messages == before
    assert result.text == reply_for(sent, defaults.DEFAULT_MAX_TOKENS).text
    # No trimming when the budget is off.
    await api.chat(MODEL, messages, max_input_length=None)
    assert sim.requests[-1][1]["messages"] == before


async def test_media_is_sent_as_image_url_data_uri(
    start_sim: StartSim, make_client: MakeClient, tmp_path: Path
) -> None:
    """An allowed local PNG reaches the server as an image_url part with a data URI, before the text."""
    sim = await start_sim(config("a"))
    api = make_client(sim)
    image = tmp_path / "cat.png"
    image.write_bytes(PNG)
    messages: list[Message] = [{"role": "user", "content": "What is in the picture?"}]
    before = copy.deepcopy(messages)
    result = await api.chat(MODEL, messages, media=[image, "https://example.com/dog.jpg"], local_images=tmp_path)
    sent = sim.requests[-1][1]["messages"]
    assert sent[-1]["content"] == [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64," + base64.b64encode(PNG).decode()}},
        {"type": "image_url", "image_url": {"url": "https://example.com/dog.jpg"}},
        {"type": "text", "text": "What is in the picture?"},
    ]
    assert messages == before
    assert result.text.endswith("[images:2]")


async def test_many_concurrent_requests_share_one_client(start_sim: StartSim, make_client: MakeClient) -> None:
    """Concurrent chats on one client each get their own reply."""
    sim = await start_sim(config(SimProvider("a", latency=0.005)))
    api = make_client(sim)
    prompts = [[{"role": "user", "content": f"prompt {i}"}] for i in range(30)]
    results = await asyncio.gather(*(api.chat(MODEL, p) for p in prompts))
    assert [r.text for r in results] == [reply_for(p, defaults.DEFAULT_MAX_TOKENS).text for p in prompts]
    assert sim.hub_requests == 1
    assert requests_to(sim) == {"a": 30}


# --- plain OpenAI-compatible servers ---------------------------------------------------------


async def test_plain_openai_mode(start_sim: StartSim, make_client: MakeClient) -> None:
    """With no Hub named, no mapping is asked for and the model is sent as given."""
    sim = await start_sim(config(SimProvider("s", status="staging"), "a", "b"))
    api = make_client(sim, hub_url=None)
    assert not api.uses_hub
    result = await api.chat(MODEL, MESSAGES)
    assert result.text == reply_for(MESSAGES, defaults.DEFAULT_MAX_TOKENS).text
    assert result.provider == api.provider_label == sim.api_base.split("/")[2]
    texts, streamed = await collect(api.create_async_generator(MODEL, MESSAGES))
    assert "".join(texts) == streamed.text == result.text
    assert [body["model"] for _, body in sim.requests] == [MODEL, MODEL]
    assert requests_to(sim) == {"s": 0, "a": 2, "b": 0}
    assert sim.hub_requests == 0


async def test_plain_openai_mode_lists_server_models(start_sim: StartSim, make_client: MakeClient) -> None:
    """get_models() on a plain server reads its /v1/models, not the Hub."""
    sim = await start_sim(config("a"))
    api = make_client(sim, hub_url=None)
    assert await api.get_models() == [MODEL]
    assert sim.hub_requests == 0


async def test_plain_openai_mode_model_list_not_openai_shaped(start_sim: StartSim, make_client: MakeClient) -> None:
    """A server whose /models answers something other than an OpenAI list gives the fallback list."""
    sim = await start_sim(config("a"))
    # {sim}/api/models is the Hub's listing: a JSON array, not {"data": [...]}.
    api = make_client(sim, api_base=f"{sim.url}/api", hub_url=None)
    assert await api.get_models() == list(HuggingFaceAPI.fallback_models)


async def test_plain_openai_mode_without_token_still_sends(start_sim: StartSim, make_client: MakeClient) -> None:
    """A plain server may need no token: the request is sent, and here the server itself answers 401."""
    sim = await start_sim(config("a"))
    api = make_client(sim, token=None, hub_url=None)
    with pytest.raises(AuthenticationError) as info:
        await api.chat(MODEL, MESSAGES)
    assert info.value.status == 401  # the server's answer, not the client refusing to send
    assert sim.hub_requests == 0


def test_sim_in_thread_serves_a_client_in_another_loop(sim_in_thread: Callable[..., SimServer]) -> None:
    """A sim served from a thread (as CLI tests use it) answers a client running its own event loop."""
    sim = sim_in_thread(config("a"))

    async def go() -> ChatResult:
        async with HuggingFaceAPI(sim.config.token, api_base=sim.api_base, hub_url=sim.hub_url) as api:
            return await api.chat(MODEL, MESSAGES)

    result = asyncio.run(go())
    assert result.text == reply_for(MESSAGES, defaults.DEFAULT_MAX_TOKENS).text
    assert requests_to(sim) == {"a": 1}
