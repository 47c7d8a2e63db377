"""The Hub's side: which providers serve a model, and which models are served."""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from hfbatch import _constants as C
from hfbatch.errors import (
    APIError,
    MalformedResponseError,
    ModelNotSupportedError,
    error_for_status,
    map_transport_errors,
)

__all__ = ["ProviderMapping", "fetch_mapping", "fetch_models", "parse_mapping"]

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
        async with session.get(url, headers=headers, timeout=aiohttp.ClientTimeout(total=C.HUB_TIMEOUT)) as r:
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
