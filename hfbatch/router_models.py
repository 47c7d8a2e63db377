"""What the router publishes about each provider of a model (`GET {api_base}/models`).

The router's model list gives, per model, its providers with their status, pricing and
capabilities (`supports_structured_output`, `supports_tools`, ...). Structured-output runs
read it to skip providers that would ignore a `response_format`. One request per run; a
router that does not publish the list (any other OpenAI-compatible server) or fails to
answer leaves every provider in (the reply check still guards the output).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from hfbatch import defaults
from hfbatch.errors import APIError
from hfbatch.http_errors import map_transport_errors
from hfbatch.version import user_agent

if TYPE_CHECKING:
    from hfbatch.client import HuggingFaceAPI

__all__ = ["fetch_provider_info", "without_structured_output"]


async def fetch_provider_info(api: HuggingFaceAPI) -> dict[str, dict[str, dict[str, Any]]] | None:
    """{model id: {provider: its entry}} from the router's model list; None when it cannot be had."""
    import aiohttp

    headers = {"Accept": "application/json", "User-Agent": user_agent()}
    if api.api_key:
        headers["Authorization"] = f"Bearer {api.api_key}"
    timeout = aiohttp.ClientTimeout(total=defaults.HUB_TIMEOUT)
    try:
        with map_transport_errors("router", (api.api_key,) if api.api_key else ()):
            async with api.session.get(f"{api.api_base}/models", headers=headers, timeout=timeout) as resp:
                if resp.status >= 400:
                    return None
                data = json.loads(await resp.read())
    except (APIError, ValueError, RecursionError):
        return None
    models = data.get("data") if isinstance(data, dict) else None
    if not isinstance(models, list):
        return None
    found: dict[str, dict[str, dict[str, Any]]] = {}
    for model in models:
        if isinstance(model, dict) and isinstance(model.get("id"), str) and isinstance(model.get("providers"), list):
            found[model["id"]] = {
                str(p["provider"]): p for p in model["providers"] if isinstance(p, dict) and "provider" in p
            }
    return found


def without_structured_output(info: dict[str, dict[str, dict[str, Any]]] | None, model: str) -> set[str]:
    """The providers of `model` the router marks `supports_structured_output: false`."""
    entries = (info or {}).get(model, {})
    return {name for name, entry in entries.items() if entry.get("supports_structured_output") is False}
