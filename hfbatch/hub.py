"""The Hub's side: which providers serve a model, and which models are served.

`HubClient` does these lookups over the chat client's session, retries them on
transient failures and caches what it found; the pure parsing is in `parse_mapping`.
"""

from __future__ import annotations

import asyncio
import json
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp

from hfbatch import defaults
from hfbatch.errors import APIError, MalformedResponseError, ModelNotSupportedError
from hfbatch.http_errors import error_for_status, map_transport_errors
from hfbatch.retry import Action, RetryPolicy, decide
from hfbatch.version import user_agent

__all__ = ["HubClient", "ProviderMapping", "fetch_mapping", "fetch_models", "find_model_entry", "parse_mapping"]

_T = TypeVar("_T")

HUB = "hub"
#: How errors of the router's models endpoint name their source.
ROUTER_MODELS = "router models endpoint"


@dataclass(frozen=True, slots=True)
class ProviderMapping:
    """One provider that serves a model: its name, its id for the model, status and task."""

    provider: str
    provider_id: str
    status: str
    task: str


def parse_mapping(raw: Any) -> list[ProviderMapping]:
    """Read `inferenceProviderMapping` in its dict form (model info) or list form (listing)."""
    out: list[ProviderMapping] = []
    if isinstance(raw, dict):
        items: list[tuple[str, Any]] = list(raw.items())
    elif isinstance(raw, list):
        items = [(e.get("provider", ""), e) for e in raw if isinstance(e, dict)]
    else:
        return out
    for name, entry in items:
        if not isinstance(entry, dict) or not name:
            continue
        out.append(
            ProviderMapping(
                provider=str(name),
                provider_id=str(entry.get("providerId") or ""),
                status=str(entry.get("status") or ""),
                task=str(entry.get("task") or ""),
            )
        )
    return out


def usable(mapping: list[ProviderMapping]) -> list[ProviderMapping]:
    """The providers a chat request can go to: live and conversational, in server order."""
    return [m for m in mapping if m.status == "live" and m.task == "conversational"]


def find_model_entry(listing: Any, model: str) -> dict[str, Any] | None:
    """The entry for `model` in a router models reply: one model object, or a list of them (`data` or bare)."""
    if isinstance(listing, dict) and listing.get("id") == model:
        return listing
    items = listing.get("data") if isinstance(listing, dict) else listing
    if isinstance(items, dict):
        items = [items]
    if not isinstance(items, list):
        return None
    return next((m for m in items if isinstance(m, dict) and m.get("id") == model), None)


async def _get_json(
    session: aiohttp.ClientSession,
    url: str,
    headers: Mapping[str, str],
    secrets: tuple[str, ...],
    source: str = HUB,
) -> Any:
    with map_transport_errors(source, secrets):
        async with session.get(url, headers=headers, timeout=aiohttp.ClientTimeout(total=defaults.HUB_TIMEOUT)) as r:
            raw = await r.read()
            if r.status >= 400:
                text = raw.decode("utf-8", "replace")
                raise error_for_status(r.status, text, provider=source, headers=dict(r.headers))
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        raise MalformedResponseError("reply is not JSON", provider=source) from None


async def fetch_mapping(
    session: aiohttp.ClientSession,
    hub_url: str,
    model: str,
    headers: Mapping[str, str],
    secrets: tuple[str, ...] = (),
) -> list[ProviderMapping]:
    """All providers the Hub lists for `model`, in server order; raise when the Hub says no."""
    url = f"{hub_url}/api/models/{urllib.parse.quote(model, safe='/')}?expand[]=inferenceProviderMapping"
    try:
        data = await _get_json(session, url, headers, secrets)
    except APIError as exc:
        if exc.status == 404:
            raise ModelNotSupportedError(
                f"model {model!r} is not on the Hub (check the id or use an alias)", provider=HUB, status=404
            ) from exc
        raise
    if not isinstance(data, dict):
        raise MalformedResponseError("Hub model info is not an object", provider=HUB)
    return parse_mapping(data.get("inferenceProviderMapping"))


async def fetch_models(
    session: aiohttp.ClientSession,
    hub_url: str,
    headers: Mapping[str, str],
    secrets: tuple[str, ...] = (),
) -> list[str]:
    """Ids of the models that at least one provider serves live for chat."""
    url = f"{hub_url}/api/models?inference_provider=all&expand[]=inferenceProviderMapping"
    data = await _get_json(session, url, headers, secrets)
    if not isinstance(data, list):
        raise MalformedResponseError("Hub model list is not a list", provider=HUB)
    return [
        str(m["id"])
        for m in data
        if isinstance(m, dict) and "id" in m and usable(parse_mapping(m.get("inferenceProviderMapping")))
    ]


class HubClient:
    """Hub lookups for one client: provider mappings and the model list, retried and cached."""

    def __init__(
        self,
        session: Callable[[], aiohttp.ClientSession],
        hub_url: str,
        *,
        token: str | None,
        retry: RetryPolicy,
    ) -> None:
        self._session = session
        self.hub_url = hub_url
        self.token = token
        self.retry = retry
        self._mappings: dict[str, list[ProviderMapping]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._router_models: dict[tuple[str, str], dict[str, Any] | None] = {}

    def _auth(self, api_key: str | None) -> tuple[dict[str, str], tuple[str, ...]]:
        """Headers for a Hub request and the secrets to scrub from its errors."""
        key = api_key or self.token
        headers = {"Accept": "application/json", "User-Agent": user_agent()}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return headers, tuple(s for s in (api_key, self.token) if s)

    @property
    def cached_models(self) -> list[str]:
        """Models whose mapping was found during this client's life."""
        return list(self._mappings)

    async def mapping(self, model: str, api_key: str | None = None) -> list[ProviderMapping]:
        """The live conversational providers of `model`, in the Hub's order; cached when there are some."""
        cached = self._mappings.get(model)
        if cached is not None:
            return cached
        async with self._locks.setdefault(model, asyncio.Lock()):
            if (cached := self._mappings.get(model)) is not None:
                return cached
            headers, secrets = self._auth(api_key)
            found = await self._retrying(lambda: fetch_mapping(self._session(), self.hub_url, model, headers, secrets))
            mapping = usable(found)
            if mapping:
                # A missing mapping is not remembered: a provider may go live later in the run.
                self._mappings[model] = mapping
            return mapping

    async def router_model(self, api_base: str, model: str, api_key: str | None = None) -> dict[str, Any] | None:
        """What the router at `api_base` publishes about `model` (its providers, prices...); cached.

        Asks `{api_base}/models/{id}`, then looks in the `/models` list when that fails or does not
        name the model; None when neither does (a plain server may list no such model). Retried like
        the mapping; a failure of the list request raises.
        """
        key = (api_base, model)
        if key in self._router_models:
            return self._router_models[key]
        headers, secrets = self._auth(api_key)
        session = self._session
        one = f"{api_base}/models/{urllib.parse.quote(model, safe='/')}"
        try:
            entry = find_model_entry(
                await self._retrying(lambda: _get_json(session(), one, headers, secrets, ROUTER_MODELS)), model
            )
        except APIError:
            entry = None  # not every server serves one model's entry: the list may still have it
        if entry is None:
            listing = f"{api_base}/models"
            data = await self._retrying(lambda: _get_json(session(), listing, headers, secrets, ROUTER_MODELS))
            entry = find_model_entry(data, model)
        self._router_models[key] = entry
        return entry

    async def models(self) -> list[str]:
        """Ids of the models some provider serves live for chat (one attempt: callers fall back)."""
        headers, secrets = self._auth(None)
        return await fetch_models(self._session(), self.hub_url, headers, secrets)

    async def _retrying(self, call: Callable[[], Awaitable[_T]]) -> _T:
        """Retry a Hub request on transient failures, so one blip does not fail a nightly run."""
        retries = 0
        while True:
            try:
                return await call()
            except APIError as exc:
                decision = decide(exc, retries, self.retry, other_provider_ready=False)
                # A rate-limited Hub is waited for too, but only as often as a failing one.
                waiting = decision.action is Action.REQUEUE and retries < self.retry.max_retries
                if decision.action is not Action.RETRY and not waiting:
                    raise
            retries += 1
            await asyncio.sleep(decision.delay)
