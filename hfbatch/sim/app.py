"""The simulated Hub and router: aiohttp handlers, routing, capacity and fault injection.

`make_app` builds the aiohttp application serving a `SimState`;
`hfbatch.sim.server.SimServer` runs it on a real socket. A routed chat request is counted and
drawn for faults (`SimState.admit`), checked against the provider's capacity (429 past it),
then answered: by `faults.fault_response` for an error fault, else as a completion
(`completions.Responder`), bent by a content fault if one hit.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import secrets
from typing import Any

from aiohttp import web

from hfbatch.sim import answers
from hfbatch.sim.billing import request_key
from hfbatch.sim.capacity import Grant
from hfbatch.sim.catalog import model_entry
from hfbatch.sim.completions import Call, Responder, Shape, pause
from hfbatch.sim.config import CONTENT_FAULTS, ROUTING_POLICIES, Fault, SimModel, SimProvider
from hfbatch.sim.faults import fault_response
from hfbatch.sim.hub_repos_http import add_hub_repo_routes
from hfbatch.sim.state import SimState
from hfbatch.sim.wire import (
    BAD_TOKEN,
    BAD_TOKEN_HEADERS,
    NO_TOKEN_HTML,
    capacity_error,
    check_chat_body,
    encode,
    model_not_found,
    model_not_supported,
    n_not_supported,
    validation_error,
)

__all__ = ["make_app"]


def make_app(state: SimState) -> web.Application:
    """The aiohttp application serving the simulated Hub API and router."""
    handlers = _Handlers(state)
    app = web.Application()
    app.router.add_get("/api/models", handlers.model_list)
    app.router.add_get("/api/models/{model_id:.+}", handlers.mapping)
    app.router.add_get("/v1/models", handlers.router_models)
    app.router.add_get("/v1/models/{model_id:.+}", handlers.router_model)
    app.router.add_post("/v1/chat/completions", handlers.chat)
    add_hub_repo_routes(app, state)
    return app


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=encode(data), status=status, headers=headers, content_type="application/json", charset="utf-8"
    )


def _request_id() -> str:
    return f"Root=1-{secrets.token_hex(16)}"


def _repo_object_id(model_id: str) -> str:
    return hashlib.sha256(model_id.encode("utf-8")).hexdigest()[:24]


class _Handlers:
    def __init__(self, state: SimState) -> None:
        self.state = state
        self.config = state.config
        self.responder = Responder(state)

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
        data = [model_entry(m, publish_prices=self.config.publish_prices) for m in self.config.models]
        return _json({"object": "list", "data": data})

    async def router_model(self, request: web.Request) -> web.StreamResponse:
        model_id = request.match_info["model_id"]
        model = self.config.model(model_id)
        if model is None:
            return _json(model_not_found(model_id), 404)
        return _json(model_entry(model, publish_prices=self.config.publish_prices))

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

        fault = self.state.admit(provider, body, request.headers)
        answer = answers.answer_for(body, provider)
        grant = self.state.acquire(provider, answer.total_tokens)
        headers = {"x-inference-provider": provider.name, **headers, **grant.headers}
        if not grant.ok:
            self.state.record(provider.name, 429)
            return _json(_capacity_body(provider, grant), 429, {**headers, **_retry_headers(provider, grant)})
        options = body.get("stream_options")
        call = Call(
            model=model,
            provider=provider,
            stream=bool(body.get("stream")),
            include_usage=isinstance(options, dict) and bool(options.get("include_usage")),
            answer=answer,
            headers=headers,
            key=request_key(body),
        )
        try:
            return await self._answer(request, call, body, fault)
        finally:
            self.state.release(provider)

    async def _answer(
        self, request: web.Request, call: Call, body: dict[str, Any], fault: Fault | None
    ) -> web.StreamResponse:
        provider = call.provider
        if provider.reject_n and answers.requested_n(body) > 1:
            self.state.record(provider.name, 400)
            return _json(n_not_supported(), 400, call.headers)
        if provider.latency:
            await asyncio.sleep(provider.latency)
        if fault is not None and fault.delay:
            await pause(self.state, fault.delay)
        if fault is not None and fault.kind not in CONTENT_FAULTS:
            return await fault_response(request, self.responder, call, fault)
        answer, shape = self._bend(call, body, fault)
        if call.stream:
            return await self.responder.send_stream(request, call, answer, shape)
        return await self.responder.send_json(request, call, answer, shape)

    def _bend(self, call: Call, body: dict[str, Any], fault: Fault | None) -> tuple[answers.SimAnswer, Shape]:
        """The answer and shape a content fault (or none) makes of a normal reply."""
        answer = call.answer
        kind = None if fault is None else fault.kind
        if kind == "empty":
            return answers.emptied(answer, null=self._alternate(call, kind)), Shape()
        if kind == "surrogate":
            return answers.with_surrogate(answer), Shape()
        if kind == "invalid_json":
            return answers.broken_json(answer, body, call.provider, violation=self._alternate(call, kind)), Shape()
        if kind == "no_usage":
            return answer, Shape(usage=False)
        if kind == "deep" and fault is not None:
            return answer, Shape(deep=fault.depth)
        return answer, Shape()

    def _alternate(self, call: Call, kind: str) -> bool:
        """False for the 1st, 3rd... hit of `kind` on this provider, True for the 2nd, 4th..."""
        return self.state.fault_hit(call.provider, kind) % 2 == 1


def _capacity_body(provider: SimProvider, grant: Grant) -> dict[str, Any]:
    if grant.limit == "concurrency":
        return capacity_error(provider.name, "concurrency", provider.max_concurrency, None)
    limit = provider.rate_limit if grant.limit == "requests" else provider.token_limit
    amount, window = limit if limit is not None else (None, None)
    return capacity_error(provider.name, grant.limit or "requests", amount, window)


def _retry_headers(provider: SimProvider, grant: Grant) -> dict[str, str]:
    """What a capacity 429 says about when to come back, per the provider's `limit_retry_after`."""
    policy = provider.limit_retry_after
    if policy == "none":
        return {}
    if policy != "exact":
        return {"Retry-After": policy}
    if grant.wait is None:
        return {}  # a concurrency slot frees when some reply ends: nobody can say when
    return {"Retry-After": str(math.ceil(grant.wait)), "retry-after-ms": str(math.ceil(grant.wait * 1000))}
