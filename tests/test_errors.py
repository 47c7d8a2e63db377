"""Errors: the status picks the class, every body shape gives a readable message, the token never shows."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from hfbatch.client import HuggingFaceAPI
from hfbatch.errors import (
    APIError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    HfbatchError,
    MalformedResponseError,
    ModelNotSupportedError,
    PaymentRequiredError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
)
from hfbatch.http_errors import error_for_status, redact
from hfbatch.retry import RetryPolicy
from hfbatch.sim.wire import BAD_GATEWAY_HTML, CREDITS_MESSAGE, NO_TOKEN_HTML, TGI_VALIDATION
from hfbatch.wire import ChatResult

TOKEN = "hf_SecretTokenValue0123456789"


@pytest.mark.parametrize(
    ("status", "cls", "kind"),
    [
        pytest.param(400, BadRequestError, "4xx", id="400"),
        pytest.param(401, AuthenticationError, "401", id="401"),
        pytest.param(402, PaymentRequiredError, "402", id="402"),
        pytest.param(403, PermissionDeniedError, "4xx", id="403"),
        pytest.param(404, ModelNotSupportedError, "4xx", id="404"),
        pytest.param(408, APITimeoutError, "timeout", id="408"),
        pytest.param(409, BadRequestError, "4xx", id="409"),
        pytest.param(413, BadRequestError, "4xx", id="413"),
        pytest.param(422, BadRequestError, "4xx", id="422"),
        pytest.param(429, RateLimitError, "429", id="429"),
        pytest.param(500, ServerError, "5xx", id="500"),
        pytest.param(502, ServerError, "5xx", id="502"),
        pytest.param(503, ServerError, "5xx", id="503"),
        pytest.param(504, ServerError, "5xx", id="504"),
    ],
)
def test_error_for_status_class(status: int, cls: type[APIError], kind: str) -> None:
    """The status decides the class and kind; provider, status and body are carried."""
    body = '{"error": "something"}'
    err = error_for_status(status, body, provider="together")
    assert type(err) is cls
    assert isinstance(err, APIError) and isinstance(err, HfbatchError)
    assert err.kind == kind
    assert (err.provider, err.status, err.body) == ("together", status, body)
    assert err.message == "something"
    assert str(err) == f"HTTP {status} from together: something"


@pytest.mark.parametrize(
    ("status", "body", "cls"),
    [
        pytest.param(500, '{"error": "Rate limit reached"}', ServerError, id="500-says-rate-limit"),
        pytest.param(
            503, '{"error": "You have exceeded your monthly included credits"}', ServerError, id="503-credits"
        ),
        pytest.param(400, '{"error": "Invalid username or password."}', BadRequestError, id="400-says-auth"),
        pytest.param(429, '{"error": "Model not supported by provider"}', RateLimitError, id="429-says-unsupported"),
        pytest.param(402, '{"error": "Internal server error"}', PaymentRequiredError, id="402-says-5xx"),
        pytest.param(
            400, '{"error": "Model not supported by provider hf-inference"}', BadRequestError, id="400-wording-only"
        ),
        pytest.param(
            422,
            '{"error": {"message": "x", "code": "model_not_supported"}}',
            BadRequestError,
            id="422-with-the-code-is-not-400",
        ),
    ],
)
def test_class_follows_status_not_wording(status: int, body: str, cls: type[APIError]) -> None:
    """The body's wording never changes the class; only a 400 with code model_not_supported does."""
    assert type(error_for_status(status, body, provider="p")) is cls


def test_400_model_not_supported_code() -> None:
    """The router's 400 envelope with code model_not_supported is ModelNotSupportedError."""
    body = json.dumps(
        {
            "error": {
                "message": "The requested model 'x' is not supported by any provider you have enabled.",
                "type": "invalid_request_error",
                "param": "model",
                "code": "model_not_supported",
            }
        }
    )
    err = error_for_status(400, body, provider="p")
    assert type(err) is ModelNotSupportedError
    assert err.message == "The requested model 'x' is not supported by any provider you have enabled."


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param(json.dumps({"error": CREDITS_MESSAGE}), CREDITS_MESSAGE, id="error-string"),
        pytest.param(
            json.dumps({"error": {"message": "not here", "code": "model_not_supported"}}), "not here", id="error-object"
        ),
        pytest.param(json.dumps({"error": {"code": 7}}), '{"code": 7}', id="error-object-without-message"),
        pytest.param(
            json.dumps({"error": TGI_VALIDATION, "error_type": "validation"}), TGI_VALIDATION, id="tgi-validation"
        ),
        pytest.param(json.dumps({"detail": "Not authenticated"}), "Not authenticated", id="detail-string"),
        pytest.param(
            json.dumps({"detail": [{"loc": ["body", "model"], "msg": "field required"}]}),
            '[{"loc": ["body", "model"], "msg": "field required"}]',
            id="detail-list",
        ),
        pytest.param(json.dumps({"message": "upstream said no"}), "upstream said no", id="message"),
        pytest.param(json.dumps("just a string"), "just a string", id="json-string"),
        pytest.param("Not Found", "Not Found", id="plain-text"),
        pytest.param("Model too busy,\n unable to get response", "Model too busy, unable to get response", id="text"),
        pytest.param(BAD_GATEWAY_HTML, "<html> <head><title>502 Bad Gateway</title>", id="html"),
        pytest.param(NO_TOKEN_HTML, "<!DOCTYPE html> <html>", id="html-401"),
        pytest.param("", "(empty body)", id="empty"),
        pytest.param("   \n", "(empty body)", id="whitespace"),
    ],
)
def test_error_message_from_body_shapes(body: str, message: str) -> None:
    """Every body shape servers use gives a one-line message (HTML and text collapsed to one line)."""
    err = error_for_status(500, body, provider="p")
    assert err.message.startswith(message)
    assert "\n" not in err.message and "\n" not in str(err)


def test_long_bodies_are_cut() -> None:
    """Messages and the kept body stay short whatever the server sends."""
    err = error_for_status(500, "x" * 100_000, provider="p")
    assert len(err.message) <= 300
    assert err.body is not None and len(err.body) <= 300


@pytest.mark.parametrize(
    ("headers", "retry_after"),
    [
        pytest.param(None, None, id="no-headers"),
        pytest.param({}, None, id="no-retry-after"),
        pytest.param({"Retry-After": "12"}, 12.0, id="seconds"),
        pytest.param({"retry-after-ms": "500"}, 0.5, id="ms"),
        pytest.param({"Retry-After": "whenever"}, None, id="garbage"),
    ],
)
def test_rate_limit_carries_retry_after(headers: dict[str, str] | None, retry_after: float | None) -> None:
    """A 429 carries the server's Retry-After in seconds, or None."""
    err = error_for_status(429, "{}", provider="p", headers=headers)
    assert isinstance(err, RateLimitError)
    assert err.retry_after == retry_after


def test_error_without_status_renders_kind() -> None:
    """An error with no HTTP status names its kind and provider."""
    assert str(APITimeoutError("no reply", provider="p")) == "timeout from p: no reply"
    assert str(MalformedResponseError("bad")) == "malformed: bad"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(f"token {TOKEN} is bad", "token *** is bad", id="bare"),
        pytest.param(f"Authorization: Bearer {TOKEN}", "Authorization: Bearer ***", id="bearer"),
        pytest.param(f"{TOKEN}{TOKEN}", "******", id="repeated"),
        pytest.param("nothing secret", "nothing secret", id="absent"),
    ],
)
def test_redact(text: str, expected: str) -> None:
    """`redact` replaces every occurrence of the token."""
    assert redact(text, [TOKEN]) == expected
    assert redact(text, (TOKEN, "")) == expected


def test_redact_ignores_empty_and_tiny_secrets() -> None:
    """An empty secret (no token) or a very short one does not garble the text."""
    assert redact("a b c", ["", "a"]) == "a b c"


# --- the token never reaches a message, even when a server echoes it ---------------------------


async def _echo(request: web.Request) -> web.StreamResponse:
    """Answer as the body's `mode` says, echoing the request's Authorization header in the reply."""
    auth = request.headers.get("Authorization", "")
    token = auth.removeprefix("Bearer ")
    mode = str((await request.json()).get("mode", ""))
    if mode.isdigit():
        return web.json_response({"error": f"bad credentials: {auth} ({token})"}, status=int(mode))
    if mode == "html":
        return web.Response(status=500, text=f"<html><body>{auth}</body></html>", content_type="text/html")
    if mode == "200-not-json":
        return web.Response(status=200, text=f"oops {auth}", content_type="application/json")
    if mode == "200-error":
        return web.json_response({"error": f"token {token} rejected"}, status=200)
    if mode == "200-error-detail":
        return web.json_response({"error": {"message": f"token {token} rejected"}, "error_type": "validation"})
    if mode == "json-reply":
        message = {"role": "assistant", "content": "whole reply"}
        choice = {"index": 0, "message": message, "finish_reason": "stop"}
        return web.json_response({"choices": [choice], "usage": {"prompt_tokens": 3, "completion_tokens": 2}})
    resp = web.StreamResponse(status=200)
    resp.content_type = "text/event-stream"
    await resp.prepare(request)
    if mode == "stream-error":
        await resp.write(f'data: {{"error": "token {token} expired", "error_type": "validation"}}\n\n'.encode())
    elif mode == "stream-malformed":
        await resp.write(f"data: {{not json {token}\n\n".encode())
    await resp.write_eof()
    return resp


@pytest.fixture
async def echo_base() -> AsyncIterator[str]:
    """An OpenAI-compatible endpoint on loopback that echoes the caller's token in its errors."""
    app = web.Application()
    app.router.add_post("/v1/chat/completions", _echo)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        await runner.cleanup()


def assert_no_token(err: BaseException) -> None:
    """Neither the token nor any long piece of it appears in the error's text, repr or kept body."""
    assert isinstance(err, APIError)
    for text in (str(err), repr(err), err.message, err.body or "", *map(str, err.args)):
        assert TOKEN not in text
        assert TOKEN[3:] not in text


MODES = [
    pytest.param("400", BadRequestError, id="400"),
    pytest.param("401", AuthenticationError, id="401"),
    pytest.param("402", PaymentRequiredError, id="402"),
    pytest.param("403", PermissionDeniedError, id="403"),
    pytest.param("429", RateLimitError, id="429"),
    pytest.param("500", ServerError, id="500"),
    pytest.param("html", ServerError, id="html-500"),
    pytest.param("200-not-json", MalformedResponseError, id="200-not-json"),
    pytest.param("200-error", ServerError, id="200-error-in-body"),
    pytest.param("200-error-detail", BadRequestError, id="200-validation-error-in-body"),
]


@pytest.mark.parametrize(("mode", "cls"), MODES)
async def test_token_never_in_error_complete(echo_base: str, mode: str, cls: type[APIError]) -> None:
    """A server echoing the token in an error reply never gets it into the raised error."""
    async with HuggingFaceAPI(TOKEN, api_base=echo_base, retry=RetryPolicy(time_scale=0.001)) as api:
        with pytest.raises(cls) as info:
            await api.complete("o/m", [{"role": "user", "content": "hi"}], provider="x", params={"mode": mode})
    assert_no_token(info.value)


@pytest.mark.parametrize(
    ("mode", "cls"),
    [
        *MODES[:7],
        pytest.param("stream-error", BadRequestError, id="in-stream-error"),
        pytest.param("stream-malformed", MalformedResponseError, id="in-stream-malformed"),
    ],
)
async def test_token_never_in_error_stream(echo_base: str, mode: str, cls: type[APIError]) -> None:
    """The same holds for streamed requests, including errors inside the stream."""
    async with HuggingFaceAPI(TOKEN, api_base=echo_base, retry=RetryPolicy(time_scale=0.001)) as api:
        with pytest.raises(cls) as info:
            async for _ in api.stream("o/m", [{"role": "user", "content": "hi"}], provider="x", params={"mode": mode}):
                pass
    assert_no_token(info.value)


@pytest.mark.parametrize(("mode", "cls"), MODES)
async def test_token_never_in_error_after_failover(echo_base: str, mode: str, cls: type[APIError]) -> None:
    """Through `chat()`'s retries and fail-over, the error finally raised holds no token either."""
    async with HuggingFaceAPI(TOKEN, api_base=echo_base, retry=RetryPolicy(max_retries=1, time_scale=0.001)) as api:
        with pytest.raises(cls) as info:
            await api.chat("o/m", [{"role": "user", "content": "hi"}], mode=mode)
    assert_no_token(info.value)


async def test_stream_answered_with_plain_json(echo_base: str) -> None:
    """A server that ignores `stream` and answers one JSON reply still gives the text, then the result."""
    async with HuggingFaceAPI(TOKEN, api_base=echo_base) as api:
        items = [
            item
            async for item in api.stream(
                "o/m", [{"role": "user", "content": "hi"}], provider="x", params={"mode": "json-reply"}
            )
        ]
    assert items[0] == "whole reply"
    result = items[1]
    assert isinstance(result, ChatResult)
    assert (result.text, result.finish_reason, result.prompt_tokens, result.completion_tokens) == (
        "whole reply",
        "stop",
        3,
        2,
    )
