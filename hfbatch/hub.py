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

__all__ = ["HubClient", "ProviderMapping", "fetch_mapping", "fetch_models", "parse_mapping"]

_T = TypeVar("_T")

HUB = "hub"


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


async def _get_json(
    session: aiohttp.ClientSession, url: str, headers: Mapping[str, str], secrets: tuple[str, ...]
) -> Any:
    with map_transport_errors(HUB, secrets):
        async with session.get(url, headers=headers, timeout=aiohttp.ClientTimeout(total=defaults.HUB_TIMEOUT)) as r:
            raw = await r.read()
            if r.status >= 400:
                raise error_for_status(r.status, raw.decode("utf-8", "replace"), provider=HUB, headers=dict(r.headers))
    try:
        return json.loads(raw)
    except ValueError:
        raise MalformedResponseError("Hub reply is not JSON", provider=HUB) from None


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
