"""`HuggingFaceAPI`: an OpenAI-compatible chat client for Hugging Face Inference Providers.

One `aiohttp.ClientSession` serves every request, so connections are pooled.
Against the HF router each attempt pins one provider (`model="{id}:{provider}"`)
from the Hub's mapping; against any other OpenAI-compatible server (vLLM, TGI,
llama.cpp) with no Hub given, the model is sent as it is.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Mapping, Sequence
from typing import Any, ClassVar, TypeVar

import aiohttp

from hfbatch import catalog, defaults
from hfbatch.capacity.headers import hint_of
from hfbatch.credentials import check_url, token_hint, url_label
from hfbatch.errors import (
    APIError,
    AuthenticationError,
    MalformedResponseError,
    ModelNotSupportedError,
    RateLimitError,
)
from hfbatch.failover import BasicScheduler, call_with_failover
from hfbatch.http_errors import error_for_status, map_transport_errors
from hfbatch.hub import HubClient, ProviderMapping
from hfbatch.media import LocalAccess, MediaItem, image_urls
from hfbatch.messages import Message, attach_images, calculate_length, trim_messages
from hfbatch.retry import RetryPolicy, env_time_scale
from hfbatch.sse import SSEDecoder
from hfbatch.streaming import stream_with_failover
from hfbatch.version import user_agent
from hfbatch.wire import ChatResult, StreamState, encode_body, parse_completion
from hfbatch.wire import check_not_empty as _checked

__all__ = ["ChatResult", "HuggingFaceAPI", "ProviderMapping"]


_T = TypeVar("_T")

#: The router bills the organization this header names instead of the token's owner.
BILL_TO_HEADER = "X-HF-Bill-To"


class HuggingFaceAPI:
    """Chat completions through HF Inference Providers with fail-over between providers."""

    label: ClassVar[str] = "HuggingFace (Inference Providers)"
    default_model: ClassVar[str] = catalog.DEFAULT_MODEL
    default_vision_model: ClassVar[str] = catalog.DEFAULT_VISION_MODEL
    vision_models: ClassVar[tuple[str, ...]] = catalog.VISION_MODELS
    model_aliases: ClassVar[dict[str, str]] = catalog.MODEL_ALIASES
    fallback_models: ClassVar[tuple[str, ...]] = catalog.FALLBACK_MODELS

    def __init__(
        self,
        api_key: str | None = None,
        *,
        api_base: str | None = None,
        hub_url: str | None = None,
        timeout: float = defaults.DEFAULT_TIMEOUT,
        idle_timeout: float = defaults.DEFAULT_IDLE_TIMEOUT,
        connect_timeout: float = defaults.DEFAULT_CONNECT_TIMEOUT,
        retry: RetryPolicy | None = None,
        api_key_env: str | None = None,
        bill_to: str | None = None,
    ) -> None:
        self._api_key = api_key
        self._key_secrets: tuple[str, ...] = () if api_key is None else (api_key,)
        #: The organization the router bills (sent as X-HF-Bill-To), or None for the token's owner.
        self.bill_to = bill_to
        self.api_base = check_url(api_base or defaults.DEFAULT_API_BASE, "api_base").rstrip("/")
        self.hub_url = check_url(
            hub_url or os.environ.get("HF_ENDPOINT") or defaults.DEFAULT_HUB_URL, "hub_url"
        ).rstrip("/")
        #: HF semantics (Hub mapping, provider pinning) hold on the router, or elsewhere when a Hub is
        #: named explicitly; HF_ENDPOINT alone (a Hub mirror) does not make another server an HF router.
        self.uses_hub = self.api_base == defaults.DEFAULT_API_BASE or hub_url is not None
        self.timeout = timeout
        self.idle_timeout = idle_timeout
        self.connect_timeout = connect_timeout
        self.retry = retry or RetryPolicy(time_scale=env_time_scale())
        self.api_key_env = api_key_env
        self.scheduler = BasicScheduler(self.retry)
        self._chat_url = f"{self.api_base}/chat/completions"
        self._session: aiohttp.ClientSession | None = None
        #: Hub lookups (provider mappings, the model list) over this client's session.
        self.hub = HubClient(lambda: self.session, self.hub_url, token=api_key, retry=self.retry)
        self._models: list[str] | None = None
        self._deadlines: dict[float, aiohttp.ClientTimeout] = {}
        self._header_cache: dict[tuple[str | None, bool, bool, str | None], dict[str, str]] = {}

    @property
    def api_key(self) -> str | None:
        """The token sent with every request (and every Hub lookup) unless a call gives its own."""
        return self._api_key

    @api_key.setter
    def api_key(self, value: str | None) -> None:
        self._api_key = value
        self._key_secrets = () if value is None else (value,)
        self.hub.token = value

    # -- session ---------------------------------------------------------------------------

    @property
    def session(self) -> aiohttp.ClientSession:
        """The shared session, created on first use inside the running loop."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                # The runner bounds concurrency; aiohttp's default cap of 100 would silently lower it.
                connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300),
                # Whole replies: one deadline timer per request, aiohttp's own (no per-read timer).
                timeout=aiohttp.ClientTimeout(total=self.timeout, sock_connect=self.connect_timeout),
            )
        return self._session

    async def close(self) -> None:
        """Close the shared session."""
        if self._session is not None and not self._session.closed:
            await self._session.close()

    async def __aenter__(self) -> HuggingFaceAPI:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- models and providers --------------------------------------------------------------

    def get_model(self, model: str) -> str:
        """Resolve an alias to a full model id; an unknown id, or any id for a non-HF server, passes unchanged."""
        if not model:
            return self.default_model
        if not self.uses_hub:
            return model  # another server has its own names
        return self.model_aliases.get(model, model)

    def _secrets(self, api_key: str | None = None) -> tuple[str, ...]:
        if api_key is None:
            return self._key_secrets  # every request of a run: built once
        return tuple(s for s in (api_key, self.api_key) if s)

    def _require_token(self, api_key: str | None) -> None:
        """Raise before any request when HF semantics hold and no token is set (a plain server may need none)."""
        if self.uses_hub and not (api_key or self.api_key):
            raise AuthenticationError(f"no token: {token_hint(self.api_key_env)}")

    def _headers(self, api_key: str | None, *, stream: bool = False, required: bool = True) -> dict[str, str]:
        key = api_key or self.api_key
        cache_key = (key, stream, required, self.bill_to)
        cached = self._header_cache.get(cache_key)
        if cached is not None:
            return cached
        headers = {"Content-Type": "application/json", "User-Agent": user_agent()}
        headers["Accept"] = "text/event-stream" if stream else "application/json"
        if key:
            headers["Authorization"] = f"Bearer {key}"
        elif required:
            raise AuthenticationError(f"no token: {token_hint(self.api_key_env)}")
        if self.bill_to:
            headers[BILL_TO_HEADER] = self.bill_to
        self._header_cache[cache_key] = headers
        return headers

    async def get_models(self) -> list[str]:
        """Models served live for chat, plus those whose mapping is cached; on failure the fallback list.

        `list_models` says which of the two it is.
        """
        return list((await self.list_models()).models)

    async def list_models(self) -> catalog.ModelList:
        """The live model list (cached), or the built-in fallback list flagged as such, with the reason."""
        if self._models is not None:
            return catalog.ModelList(tuple(self._models), live=True)
        try:
            found = await self.hub.models() if self.uses_hub else await self._server_models()
        except APIError as exc:
            return catalog.ModelList(self.fallback_models, live=False, error=exc)
        models = list(dict.fromkeys([*found, *self.hub.cached_models]))
        self._models = models
        return catalog.ModelList(tuple(models), live=True)

    async def _server_models(self) -> list[str]:
        with map_transport_errors(self.provider_label, self._secrets()):
            async with self.session.get(f"{self.api_base}/models", headers=self._headers(None, required=False)) as r:
                raw = await r.read()
                if r.status >= 400:
                    raise error_for_status(r.status, raw.decode("utf-8", "replace"), provider=None)
        try:
            data = json.loads(raw)
        except ValueError:
            raise MalformedResponseError("model list is not JSON", provider=self.provider_label) from None
        if not isinstance(data, dict) or not isinstance(data.get("data", []), list):
            raise MalformedResponseError("model list is not an OpenAI list", provider=self.provider_label)
        return [str(m["id"]) for m in data.get("data", []) if isinstance(m, dict) and "id" in m]

    @property
    def provider_label(self) -> str:
        """The name stats use for a plain OpenAI-compatible server: its host and port."""
        return url_label(self.api_base)

    async def get_mapping(self, model: str, api_key: str | None = None) -> list[ProviderMapping]:
        """The live conversational providers of `model` (alias resolved), in the Hub's order.

        A server without a Hub (`uses_hub` false) is asked nothing: it is the one provider, named
        by its host and port, as a run names it.
        """
        if not self.uses_hub:
            return [ProviderMapping(self.provider_label, model, "live", "conversational")]
        return await self.hub.mapping(self.get_model(model), api_key)

    async def providers_for(self, model: str, api_key: str | None = None) -> list[str]:
        """Provider names to try for `model`, in order; raise ModelNotSupportedError when none."""
        if not self.uses_hub:
            return [self.provider_label]
        mapping = await self.get_mapping(model, api_key)
        if not mapping:
            raise ModelNotSupportedError(f"no live provider serves {self.get_model(model)!r} for chat", provider="hub")
        return [m.provider for m in mapping]

    def wire_model(self, model: str, provider: str) -> str:
        """The `model` field that pins `provider` on the router, or the model as given elsewhere."""
        return f"{model}:{provider}" if self.uses_hub else model

    def _deadline(self, seconds: float) -> aiohttp.ClientTimeout:
        """A whole-request deadline of `seconds` (cached: deadlines change rarely, requests often)."""
        found = self._deadlines.get(seconds)
        if found is None:
            found = self._deadlines[seconds] = aiohttp.ClientTimeout(total=seconds, sock_connect=self.connect_timeout)
        return found

    # -- one attempt -----------------------------------------------------------------------

    async def complete(
        self,
        model: str,
        messages: Sequence[Message],
        *,
        provider: str,
        params: Mapping[str, Any] | None = None,
        api_key: str | None = None,
        allow_empty: bool = True,
        keep_raw: bool = False,
        timeout: float | None = None,
    ) -> ChatResult:
        """One non-streamed attempt on one provider; raises an APIError on any failure.

        With `allow_empty` false, a reply with neither text nor reasoning raises EmptyResponseError;
        with `keep_raw`, the result keeps the reply's body and request id.
        """
        body: dict[str, Any] = {"model": self.wire_model(model, provider), "messages": messages}
        if params:
            body.update(params)
        body["stream"] = False
        data = encode_body(body)
        headers = self._headers(api_key, required=self.uses_hub)
        # The session's total timeout is this attempt's deadline; a TimeoutError becomes APITimeoutError.
        with map_transport_errors(provider, self._secrets(api_key)):
            if timeout is None:
                request = self.session.post(self._chat_url, data=data, headers=headers)
            else:
                request = self.session.post(self._chat_url, data=data, headers=headers, timeout=self._deadline(timeout))
            async with request as resp:
                raw = await resp.read()
                if resp.status >= 400:
                    raise _status_error(resp, raw, provider)
                hint = hint_of(resp.headers)
            result = parse_completion(raw, provider, model, keep_raw=keep_raw)
            result.hint = hint
            if keep_raw:
                result.request_id = resp.headers.get("x-request-id")
            return _checked(result, allow_empty)

    async def stream(
        self,
        model: str,
        messages: Sequence[Message],
        *,
        provider: str,
        params: Mapping[str, Any] | None = None,
        api_key: str | None = None,
        allow_empty: bool = True,
        keep_raw: bool = False,
        timeout: float | None = None,
    ) -> AsyncIterator[str | ChatResult]:
        """One streamed attempt: yields text chunks, then the ChatResult (`allow_empty`, `keep_raw` as `complete`)."""
        body: dict[str, Any] = {"model": self.wire_model(model, provider), "messages": messages}
        if params:
            body.update(params)
        body["stream"] = True
        body.setdefault("stream_options", {"include_usage": True})
        data = encode_body(body)
        headers = self._headers(api_key, stream=True, required=self.uses_hub)
        state = StreamState(provider, model, keep_raw=keep_raw)
        decoder = SSEDecoder()
        parts: list[str] = []
        started = time.monotonic()
        deadline = asyncio.get_running_loop().time() + (self.timeout if timeout is None else timeout)
        # A stream may take long in all, but may not fall silent for more than the idle timeout.
        stream_timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=self.connect_timeout, sock_read=self.idle_timeout
        )
        with map_transport_errors(provider, self._secrets(api_key)):
            # The deadline bounds each wait on the server, never a yield: a timeout spanning a
            # yield would fire in the caller's code as a bare CancelledError.
            resp = await _by(
                deadline, self.session.post(self._chat_url, data=data, headers=headers, timeout=stream_timeout)
            )
            async with resp:
                if resp.status >= 400:
                    raise _status_error(resp, await _by(deadline, resp.read()), provider)
                if "event-stream" not in resp.headers.get("Content-Type", "event-stream"):
                    # A server that ignored "stream": answer with the whole reply at once.
                    whole = parse_completion(await _by(deadline, resp.read()), provider, model, keep_raw=keep_raw)
                    result = _checked(whole, allow_empty)
                    yield result.text
                    yield result
                    return
                while chunk := await _by(deadline, resp.content.readany()):
                    for payload in decoder.feed(chunk):
                        if text := state.feed(payload):
                            parts.append(text)
                            yield text
                    if state.done:
                        break
                for payload in decoder.close():
                    if text := state.feed(payload):
                        parts.append(text)
                        yield text
            result = _checked(state.finish("".join(parts)), allow_empty)
            if keep_raw:
                result.request_id = resp.headers.get("x-request-id")
        result.latency = time.monotonic() - started
        yield result

    # -- requests with fail-over -----------------------------------------------------------

    async def prepare_messages(
        self,
        messages: Sequence[Message],
        *,
        max_input_length: int | None = defaults.DEFAULT_MAX_INPUT_LENGTH,
        media: Sequence[MediaItem] | None = None,
        local_images: LocalAccess = None,
    ) -> list[Message]:
        """Trim to `max_input_length` and attach media; the caller's list is not changed.

        Local files are read, off the event loop, only where `local_images` allows (a folder or a
        `LocalImages`; by default nowhere). Raises InputError for an image that may not be sent.
        """
        out = self.fit_messages(messages, max_input_length)
        return attach_images(out, await image_urls(media, local_images)) if media else out

    @staticmethod
    def fit_messages(messages: Sequence[Message], max_input_length: int | None) -> list[Message]:
        """`prepare_messages` for a prompt without media: trimmed to `max_input_length`, as a new list."""
        return trim_messages(messages, max_input_length) if max_input_length else list(messages)

    async def chat(
        self,
        model: str,
        messages: Sequence[Message],
        *,
        api_key: str | None = None,
        max_tokens: int | None = defaults.DEFAULT_MAX_TOKENS,
        max_input_length: int | None = defaults.DEFAULT_MAX_INPUT_LENGTH,
        media: Sequence[MediaItem] | None = None,
        local_images: LocalAccess = None,
        providers: Sequence[str] | None = None,
        **params: Any,
    ) -> ChatResult:
        """The whole reply (text, finish reason, usage, provider, attempts), failing over as needed.

        `media` are images for the last message; local files among them are read only where
        `local_images` allows (see `prepare_messages`).
        """
        self._require_token(api_key)
        model = self.get_model(model or (self.default_vision_model if media else ""))
        prepared = await self.prepare_messages(
            messages, max_input_length=max_input_length, media=media, local_images=local_images
        )
        order = list(providers) if providers else await self.providers_for(model, api_key)
        if max_tokens is not None:
            params["max_tokens"] = max_tokens

        async def send(provider: str) -> ChatResult:
            return await self.complete(model, prepared, provider=provider, params=params, api_key=api_key)

        return await call_with_failover(send, order, self.retry, self.scheduler, patient=False)

    async def create_async_generator(
        self,
        model: str,
        messages: Sequence[Message],
        api_key: str | None = None,
        max_tokens: int | None = defaults.DEFAULT_MAX_TOKENS,
        max_input_length: int | None = defaults.DEFAULT_MAX_INPUT_LENGTH,
        media: Sequence[MediaItem] | None = None,
        local_images: LocalAccess = None,
        **params: Any,
    ) -> AsyncGenerator[str | ChatResult, None]:
        """Stream the reply's text, failing over between providers until text starts; last, the ChatResult.

        A failure after text has been yielded is raised: the caller has already shown it.
        """
        self._require_token(api_key)
        model = self.get_model(model or (self.default_vision_model if media else ""))
        prepared = await self.prepare_messages(
            messages, max_input_length=max_input_length, media=media, local_images=local_images
        )
        order = await self.providers_for(model, api_key)
        if max_tokens is not None:
            params["max_tokens"] = max_tokens
        async for item in stream_with_failover(self, model, prepared, params, order, api_key):
            yield item

    @staticmethod
    def calculate_length(messages: Sequence[Message]) -> int:
        """Characters of content plus 16 per message (the measure `max_input_length` trims by)."""
        return calculate_length(messages)


async def _by(deadline: float, awaitable: Awaitable[_T]) -> _T:
    """Await `awaitable`, raising TimeoutError if the loop's clock passes `deadline` first."""
    async with asyncio.timeout_at(deadline):
        return await awaitable


def _status_error(resp: aiohttp.ClientResponse, raw: bytes, provider: str) -> APIError:
    """The error for an HTTP error reply (the caller's map_transport_errors scrubs the token)."""
    error = error_for_status(resp.status, raw.decode("utf-8", "replace"), provider=provider, headers=dict(resp.headers))
    if isinstance(error, RateLimitError):
        error.hint = hint_of(resp.headers)
    return error
