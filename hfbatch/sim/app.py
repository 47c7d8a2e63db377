"""The simulated Hub and router: aiohttp handlers, routing and fault injection.

`make_app` builds the aiohttp application serving a `SimState`;
`hfbatch.sim.server.SimServer` runs it on a real socket.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import socket
import struct
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from hfbatch.sim.config import ROUTING_POLICIES, Fault, SimModel, SimProvider
from hfbatch.sim.hub_repos_http import add_hub_repo_routes
from hfbatch.sim.replies import SimReply, reply_for
from hfbatch.sim.state import SimState
from hfbatch.sim.wire import (
    BAD_GATEWAY_HTML,
    BAD_TOKEN,
    BAD_TOKEN_HEADERS,
    JSON_FAULTS,
    MALFORMED_BODY,
    NO_TOKEN_HTML,
    check_chat_body,
    dumps,
    model_not_supported,
    usage_of,
    validation_error,
)

__all__ = ["make_app"]


@dataclass(frozen=True, slots=True)
class _Call:
    """One routed chat request, as the reply builders need it."""

    model: str  # as the client sent it
    provider: SimProvider
    request_id: str
    stream: bool
    include_usage: bool
    reply: SimReply


def make_app(state: SimState) -> web.Application:
    """The aiohttp application serving the simulated Hub API and router."""
    handlers = _Handlers(state)
    app = web.Application()
    app.router.add_get("/api/models", handlers.model_list)
    app.router.add_get("/api/models/{model_id:.+}", handlers.mapping)
    app.router.add_get("/v1/models", handlers.router_models)
    app.router.add_post("/v1/chat/completions", handlers.chat)
    add_hub_repo_routes(app, state)
    return app


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(data, status=status, headers=headers, dumps=dumps)


def _request_id() -> str:
    return f"Root=1-{secrets.token_hex(16)}"


def _repo_object_id(model_id: str) -> str:
    return hashlib.sha256(model_id.encode("utf-8")).hexdigest()[:24]


def _drop(request: web.BaseRequest, *, reset: bool) -> None:
    """Close the connection with no (further) reply: a TCP reset if `reset`, else a bare FIN."""
    transport = request.transport
    if transport is None:
        return
    if reset:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # Linger 0 turns close() into an RST, as a crashed proxy would send.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


class _Handlers:
    def __init__(self, state: SimState) -> None:
        self.state = state
        self.config = state.config

    # --- Hub ---------------------------------------------------------------------------

    def _bad_hub_token(self, request: web.Request) -> bool:
        auth = request.headers.get("Authorization")
        return auth is not None and auth != f"Bearer {self.config.token}"

    async def mapping(self, request: web.Request) -> web.StreamResponse:
        n = self.state.count_hub(mapping=True)
        if n <= self.config.hub_fail_first:
            return _json({"error": "Internal Error"}, 500)
        if self._bad_hub_token(request):
            return _json(BAD_TOKEN, 401)
        model = self.config.model(request.match_info["model_id"])
        if model is None:
            return _json({"error": "Repository not found"}, 404, {"X-Error-Code": "RepoNotFound"})
        body: dict[str, Any] = {"_id": _repo_object_id(model.id), "id": model.id}
        expand = request.query.getall("expand[]", []) + request.query.getall("expand", [])
        # Like the Hub, the mapping is an expand-only field, absent for a model with no providers.
        if "inferenceProviderMapping" in expand and model.providers:
            body["inferenceProviderMapping"] = {
                p.name: {
                    "status": p.status,
                    "providerId": p.provider_id or model.id,
                    "task": p.task,
                    "isModelAuthor": False,
                }
                for p in model.providers
            }
        return _json(body)

    async def model_list(self, request: web.Request) -> web.StreamResponse:
        self.state.count_hub(mapping=False)
        if self._bad_hub_token(request):
            return _json(BAD_TOKEN, 401)
        items: list[dict[str, Any]] = []
        for model in self.config.models:
            item: dict[str, Any] = {"_id": _repo_object_id(model.id), "id": model.id}
            if model.providers:
                item["inferenceProviderMapping"] = [
                    {
                        "provider": p.name,
                        "providerId": p.provider_id or model.id,
                        "status": p.status,
                        "task": p.task,
                    }
                    for p in model.providers
                ]
            items.append(item)
        return _json(items)

    async def router_models(self, request: web.Request) -> web.StreamResponse:
        data = [
            {
                "id": model.id,
                "object": "model",
                "owned_by": model.id.split("/")[0],
                "providers": [{"provider": p.name, "status": p.status} for p in model.providers],
            }
            for model in self.config.models
        ]
        return _json({"object": "list", "data": data})

    # --- router ------------------------------------------------------------------------

    def _route(self, model: str) -> SimProvider | None:
        model_id, _, suffix = model.partition(":")
        sim_model: SimModel | None = self.config.model(model_id)
        if sim_model is None:
            return None
        if suffix and suffix not in ROUTING_POLICIES:
            provider = sim_model.provider(suffix)
            return provider if provider is not None and provider.routable else None
        return next((p for p in sim_model.providers if p.routable), None)

    async def chat(self, request: web.Request) -> web.StreamResponse:
        request_id = _request_id()
        headers = {"x-request-id": request_id}
        auth = request.headers.get("Authorization")
        if auth is None:
            return web.Response(status=401, text=NO_TOKEN_HTML, content_type="text/html", headers=headers)
        if auth != f"Bearer {self.config.token}":
            return _json(BAD_TOKEN, 401, {**headers, **BAD_TOKEN_HEADERS})
        try:
            body = await request.json()
        except ValueError:
            return _json(validation_error("the body is not valid JSON"), 422, headers)
        if not isinstance(body, dict):
            return _json(validation_error("the body must be a JSON object"), 422, headers)
        model = body.get("model")
        if not isinstance(model, str):
            return _json(validation_error("`model` must be a string"), 422, headers)
        provider = self._route(model)
        if provider is None:
            return _json(model_not_supported(model), 400, headers)
        problem = check_chat_body(body)
        if problem is not None:
            return _json(validation_error(problem), 422, headers)

        fault = self.state.admit(provider, body)
        if provider.latency:
            await asyncio.sleep(provider.latency)
        max_tokens = body.get("max_tokens")
        if max_tokens is None:
            max_tokens = body.get("max_completion_tokens")
        options = body.get("stream_options")
        call = _Call(
            model=model,
            provider=provider,
            request_id=request_id,
            stream=bool(body.get("stream")),
            include_usage=isinstance(options, dict) and bool(options.get("include_usage")),
            reply=reply_for(body["messages"], max_tokens),
        )
        if fault is not None:
            return await self._fault_response(request, call, fault)
        if call.stream:
            return await self._stream(request, call)
        self.state.record(provider.name, 200)
        return _json(self._completion(call), 200, self._headers(call))

    def _headers(self, call: _Call) -> dict[str, str]:
        return {"x-inference-provider": call.provider.name, "x-request-id": call.request_id}

    def _completion(self, call: _Call) -> dict[str, Any]:
        reply = call.reply
        return {
            "id": f"chatcmpl-{secrets.token_hex(12)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": call.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": reply.text},
                    "logprobs": None,
                    "finish_reason": reply.finish_reason,
                }
            ],
            "usage": usage_of(reply),
        }

    def _sse(self, data: str) -> bytes:
        sep = " " if self.config.sse_space else ""
        return f"data:{sep}{data}\n\n".encode()

    def _chunks(self, call: _Call) -> tuple[list[bytes], list[bytes]]:
        """The stream's events: (one per word, then the tail: finish, usage and [DONE])."""
        reply = call.reply
        base: dict[str, Any] = {
            "id": f"chatcmpl-{secrets.token_hex(12)}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": call.model,
        }
        usage_in_finish = call.include_usage and self.config.usage_in_finish_chunk

        def chunk(choices: list[dict[str, Any]], usage: dict[str, int] | None = None) -> bytes:
            data = {**base, "choices": choices}
            if call.include_usage:
                data["usage"] = usage
            return self._sse(dumps(data))

        def choice(delta: dict[str, str], finish_reason: str | None = None) -> dict[str, Any]:
            return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}

        pieces = [word if i == 0 else f" {word}" for i, word in enumerate(reply.words)] or [""]
        words = [
            chunk([choice({"role": "assistant", "content": piece} if i == 0 else {"content": piece})])
            for i, piece in enumerate(pieces)
        ]
        tail = [chunk([choice({}, reply.finish_reason)], usage_of(reply) if usage_in_finish else None)]
        if call.include_usage and not usage_in_finish:
            tail.append(chunk([], usage_of(reply)))
        if self.config.sse_done:
            tail.append(self._sse("[DONE]"))
        return words, tail

    async def _stream(self, request: web.Request, call: _Call, *, cut: bool = False) -> web.StreamResponse:
        words, tail = self._chunks(call)
        events = words[: max(1, len(words) // 2)] if cut else words + tail
        self.state.record(call.provider.name, "truncate" if cut else 200)
        resp = web.StreamResponse(status=200, headers={**self._headers(call), "Cache-Control": "no-cache"})
        resp.content_type = "text/event-stream"
        try:
            await resp.prepare(request)
            for event in events:
                await resp.write(event)
        except ConnectionError:
            return resp  # the client went away; nothing to tell it
        if cut:
            _drop(request, reset=False)
        return resp

    async def _fault_response(self, request: web.Request, call: _Call, fault: Fault) -> web.StreamResponse:
        kind = fault.kind
        name = call.provider.name
        headers = self._headers(call)
        if kind in JSON_FAULTS:
            if kind == "429" and fault.retry_after is not None:
                headers["Retry-After"] = fault.retry_after
            self.state.record(name, int(kind))
            return _json(JSON_FAULTS[kind], int(kind), headers)
        if kind == "leak":
            # A misbehaving proxy that quotes the request back: the client must not repeat the token.
            self.state.record(name, 500)
            quoted = request.headers.get("Authorization", "")
            return _json({"error": f"upstream refused the request (Authorization: {quoted})"}, 500, headers)
        if kind == "401":
            self.state.record(name, 401)
            return _json(BAD_TOKEN, 401, {**headers, **BAD_TOKEN_HEADERS})
        if kind == "model_not_supported":
            self.state.record(name, 400)
            return _json(model_not_supported(call.model), 400, headers)
        if kind == "404":
            self.state.record(name, 404)
            return web.Response(status=404, text="Not Found", content_type="text/plain", headers=headers)
        if kind == "502":
            self.state.record(name, 502)
            return web.Response(status=502, text=BAD_GATEWAY_HTML, content_type="text/html", headers=headers)
        if kind == "hang":
            self.state.record(name, "hang")
            # Held until the deadline or server shutdown, whichever is first; then dropped unanswered.
            try:
                await asyncio.wait_for(self.state.stopping.wait(), self.config.hang_seconds)
            except TimeoutError:
                pass
            _drop(request, reset=False)
            return web.Response()
        if kind in ("reset", "down"):
            self.state.record(name, kind)
            _drop(request, reset=kind == "reset")
            return web.Response()
        if kind == "malformed":
            self.state.record(name, "malformed")
            if call.stream:
                resp = web.Response(body=self._sse(MALFORMED_BODY), headers=headers)
                resp.content_type = "text/event-stream"
                return resp
            return web.Response(text=MALFORMED_BODY, content_type="application/json", headers=headers)
        if kind == "truncate":
            if call.stream:
                return await self._stream(request, call, cut=True)
            return await self._truncated_json(request, call)
        raise AssertionError(f"unhandled fault kind {kind!r}")  # config validation prevents this

    async def _truncated_json(self, request: web.Request, call: _Call) -> web.StreamResponse:
        """Promise the whole body in Content-Length, send half, then close."""
        payload = dumps(self._completion(call)).encode()
        self.state.record(call.provider.name, "truncate")
        resp = web.StreamResponse(status=200, headers=self._headers(call))
        resp.content_type = "application/json"
        resp.content_length = len(payload)
        try:
            await resp.prepare(request)
            await resp.write(payload[: len(payload) // 2])
        except ConnectionError:
            return resp
        _drop(request, reset=False)
        return resp
