"""Before the first request: open the client, check the endpoint, the model and the providers, settle prices.

`plan_run` makes every check a run needs before it sends a row, so a mistake costs one line and
an exit code in seconds rather than minutes of retries and cool-downs: an endpoint that does not
answer (RunError, exit 6), a model nobody serves or a provider name that does not serve it
(UsageError, exit 2). It also reads, once, what the router publishes about the model's providers
(prices, speed, context length) and settles the price each provider is charged at.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp

from hfbatch import defaults
from hfbatch.client import HuggingFaceAPI
from hfbatch.credentials import token_for, token_hint
from hfbatch.errors import (
    APIError,
    APITimeoutError,
    AuthenticationError,
    ModelNotSupportedError,
    RunError,
    TransportError,
    UsageError,
)
from hfbatch.http_errors import map_transport_errors
from hfbatch.jobspec import JobSpec
from hfbatch.pricing import FROM_SETTINGS, FROM_TABLE, Price, ProviderInfo, parse_catalog, resolve_prices
from hfbatch.retry import RetryPolicy
from hfbatch.route_order import order_providers

__all__ = ["RunPlan", "check_endpoint", "open_client", "plan_run"]


@dataclass(frozen=True, slots=True)
class RunPlan:
    """What the checks found: the model, the providers to try in order, what the router publishes, the prices."""

    model: str
    providers: list[str]
    catalog: dict[str, ProviderInfo]
    prices: dict[str, Price | None]
    notes: tuple[str, ...] = ()

    def pricing(self) -> dict[str, Any]:
        """The stats file's `pricing`: each provider's price and where it came from, and what the router said."""
        providers: dict[str, Any] = {}
        for name in self.providers:
            price = self.prices.get(name)
            info = self.catalog.get(name)
            providers[name] = {
                "price_in": None if price is None else price.input,
                "price_out": None if price is None else price.output,
                "source": None if price is None else price.source,
                "published": None if info is None else info.to_dict(),
            }
        return {"unit": "USD per million tokens", "providers": providers, "notes": list(self.notes)}


@contextlib.asynccontextmanager
async def open_client(spec: JobSpec, scale: float) -> AsyncIterator[HuggingFaceAPI]:
    """The job's client, pointed at an in-process simulated server when the job has a [sim] table."""
    policy = RetryPolicy(max_retries=spec.max_retries, max_attempts=spec.max_attempts, time_scale=scale)
    kw: dict[str, Any] = {
        "timeout": spec.timeout or defaults.DEFAULT_TIMEOUT,
        "idle_timeout": spec.idle_timeout,
        "retry": policy,
        "api_key_env": spec.api_key_env,
        "bill_to": spec.bill_to,
    }
    if spec.sim is None:
        token = token_for(spec.api_base, spec.hub_url, spec.api_key_env)
        api = HuggingFaceAPI(token, api_base=spec.api_base, hub_url=spec.hub_url, **kw)
        if api.uses_hub and not token:
            raise AuthenticationError(f"no token: {token_hint(spec.api_key_env)}")
        async with api:
            yield api
        return
    from hfbatch.sim import SimServer, sim_config_from_dict

    config = sim_config_from_dict(spec.sim, f"{spec.source} [sim]")
    async with (
        SimServer(config) as sim,
        HuggingFaceAPI(config.token, api_base=sim.api_base, hub_url=sim.hub_url, **kw) as api,
    ):
        yield api


async def check_endpoint(
    api: HuggingFaceAPI, *, time_scale: float = 1.0, timeout: float = defaults.PREFLIGHT_TIMEOUT
) -> None:
    """RunError (exit 6) when `{api_base}/models` gets no HTTP answer at all, after one retry.

    Any status counts as an answer: this asks only whether the server is there. No token is sent.
    """
    url = f"{api.api_base}/models"
    error: APIError | None = None
    for attempt in range(defaults.PREFLIGHT_ATTEMPTS):
        if attempt:
            await asyncio.sleep(defaults.PREFLIGHT_RETRY_DELAY * time_scale)
        try:
            with map_transport_errors(api.provider_label):
                async with api.session.get(url, timeout=aiohttp.ClientTimeout(total=timeout)):
                    return
        except (TransportError, APITimeoutError) as exc:
            error = exc
        except APIError:
            return  # it answered, if oddly: the endpoint is there
    raise RunError(
        f"cannot reach the API at {api.api_base}: {error.message if error else 'no answer'}; "
        "check --api-base and the network (nothing was sent)"
    )


async def _offered(api: HuggingFaceAPI, model: str) -> list[str]:
    """The providers the Hub maps `model` to; a model nobody serves is a usage error, a Hub failure a RunError."""
    try:
        return await api.providers_for(model)
    except ModelNotSupportedError as exc:
        raise UsageError(f"{exc.message}; nothing was sent") from exc
    except AuthenticationError:
        raise
    except APIError as exc:
        raise RunError(
            f"cannot ask the Hub which providers serve {model}: {exc}; nothing was sent, rerun later"
        ) from exc


def check_provider_names(spec: JobSpec, api: HuggingFaceAPI, model: str, offered: list[str]) -> list[str]:
    """The providers to try, in order: `--providers` if given, else `offered`; UsageError for a name not offered."""
    if api.uses_hub:
        known = f"the providers serving {model} live for chat are: {', '.join(offered)}"
    else:
        known = f"a server without a Hub is one provider, named {offered[0]!r} after its host"
    for name in spec.providers:
        if name not in offered:
            raise UsageError(f"{spec.source}: key 'providers' (--providers): {name!r} is not one; {known}")
    for name in spec.provider_settings:
        if name not in offered:
            raise UsageError(f"{spec.source}: table 'providers.{name}': {name!r} is not a provider here; {known}")
    return list(dict.fromkeys(spec.providers)) or offered


async def _catalog(api: HuggingFaceAPI, model: str) -> tuple[dict[str, ProviderInfo], list[str]]:
    """What the router publishes about `model`'s providers, and a note when it publishes nothing usable."""
    try:
        entry = await api.hub.router_model(api.api_base, model)
    except APIError as exc:
        return {}, [f"cannot read {api.api_base}/models ({exc}): prices unknown unless set by hand"]
    catalog = parse_catalog(entry)
    if not catalog:
        return {}, [f"{api.api_base} publishes no providers or prices for {model}"]
    return catalog, []


def _hand_prices(spec: JobSpec) -> tuple[Price | None, dict[str, Price]]:
    """The prices set by hand: for every provider, and per provider."""
    default = None
    if spec.price_in is not None and spec.price_out is not None:
        default = Price(spec.price_in, spec.price_out, FROM_SETTINGS)
    own = {
        name: Price(s.price_in, s.price_out, FROM_TABLE)
        for name, s in spec.provider_settings.items()
        if s.price_in is not None and s.price_out is not None
    }
    return default, own


async def plan_run(api: HuggingFaceAPI, spec: JobSpec, *, time_scale: float = 1.0) -> RunPlan:
    """Check the endpoint, the model and the provider names, and settle prices; raise before any request."""
    await check_endpoint(api, time_scale=time_scale)
    if spec.model is None:
        raise UsageError("plan_run needs a model: rows naming their own models are planned as they come")
    model = api.get_model(spec.model)
    offered = await _offered(api, model)
    providers = check_provider_names(spec, api, model, offered)
    catalog, notes = await _catalog(api, model)
    default, own = _hand_prices(spec)
    prices = resolve_prices(providers, catalog, default=default, per_provider=own)
    if spec.route != "order":
        ranked = order_providers(providers, spec.route, prices=prices, catalog=catalog, max_tokens=spec.max_tokens)
        notes.append(f"route {spec.route}: providers tried in the order {', '.join(ranked)}")
        providers = ranked
    unpriced = [p for p in providers if prices[p] is None]
    if unpriced:
        notes.append(
            f"no price for {', '.join(unpriced)}: cost unknown (set price_in and price_out, "
            "or a [providers.NAME] table)"
        )
    return RunPlan(model, providers, catalog, prices, tuple(notes))
