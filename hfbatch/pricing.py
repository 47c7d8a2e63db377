"""Money: what the router publishes about each provider, which price applies, and what replies cost.

Prices are USD per million tokens. The router's models endpoint (`GET {api_base}/models/{id}`,
else the list at `/models`) gives per model `providers[]` with `pricing.input`/`output`, status,
context length and speed; a plain OpenAI-compatible server gives none, and then cost is unknown
(None), never 0. Prices set by hand win over published ones: a `[providers.NAME]` table first,
then `price_in`/`price_out` for every provider. Providers bill whole 2xx replies from their
`usage`, so cost counts exactly those: successes, and whole replies that still failed the row
(`APIError.billed`). A billed reply without usage is counted apart: the cost is then a lower bound.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from hfbatch.stats import ProviderStats
from hfbatch.wire import ChatResult

__all__ = [
    "Price",
    "ProviderInfo",
    "count_billed",
    "parse_catalog",
    "reply_cost",
    "resolve_prices",
]

#: Prices are quoted per this many tokens.
TOKENS_PER_QUOTE = 1_000_000
#: Where a price came from.
FROM_ROUTER, FROM_TABLE, FROM_SETTINGS = "router", "providers table", "price_in/price_out"


@dataclass(frozen=True, slots=True)
class Price:
    """A provider's price in USD per million prompt (`input`) and completion (`output`) tokens."""

    input: float
    output: float
    source: str = FROM_ROUTER

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        """USD for this many tokens."""
        return (prompt_tokens * self.input + completion_tokens * self.output) / TOKENS_PER_QUOTE


@dataclass(frozen=True, slots=True)
class ProviderInfo:
    """What the router publishes about one provider of a model; None where it says nothing."""

    provider: str
    status: str | None = None
    price: Price | None = None
    context_length: int | None = None
    is_free: bool | None = None
    supports_tools: bool | None = None
    supports_structured_output: bool | None = None
    first_token_latency_ms: float | None = None
    throughput: float | None = None  # output tokens per second, per request

    def to_dict(self) -> dict[str, Any]:
        """The JSON form, for the stats file and `--dry-run --json`."""
        data = asdict(self)
        data["price"] = None if self.price is None else {"input": self.price.input, "output": self.price.output}
        return data


def _number(value: Any) -> float | None:
    """A finite number >= 0 from a number or a numeric string; None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return None
    if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        return None
    return float(value)


def _flag(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def _price(entry: dict[str, Any]) -> Price | None:
    pricing = entry.get("pricing")
    if isinstance(pricing, dict):
        price_in, price_out = _number(pricing.get("input")), _number(pricing.get("output"))
        if price_in is not None and price_out is not None:
            return Price(price_in, price_out)
    if entry.get("is_free") is True:
        return Price(0.0, 0.0)
    return None


def parse_catalog(entry: Any) -> dict[str, ProviderInfo]:
    """The providers one model entry of the models endpoint lists, by name; {} for shapes it does not know."""
    if not isinstance(entry, dict) or not isinstance(entry.get("providers"), list):
        return {}
    found: dict[str, ProviderInfo] = {}
    for item in entry["providers"]:
        if not isinstance(item, dict) or not isinstance(item.get("provider"), str) or not item["provider"]:
            continue
        status = item.get("status")
        context = _number(item.get("context_length"))
        found[item["provider"]] = ProviderInfo(
            provider=item["provider"],
            status=status if isinstance(status, str) else None,
            price=_price(item),
            context_length=None if context is None else int(context),
            is_free=_flag(item.get("is_free")),
            supports_tools=_flag(item.get("supports_tools")),
            supports_structured_output=_flag(item.get("supports_structured_output")),
            first_token_latency_ms=_number(item.get("first_token_latency_ms")),
            throughput=_number(item.get("throughput")) or None,  # 0 tokens/s says nothing usable
        )
    return found


def resolve_prices(
    providers: Iterable[str],
    catalog: Mapping[str, ProviderInfo],
    *,
    default: Price | None = None,
    per_provider: Mapping[str, Price] | None = None,
) -> dict[str, Price | None]:
    """The price each provider is charged at: its own table, else the run's setting, else the router's, else None."""
    own = per_provider or {}
    prices: dict[str, Price | None] = {}
    for name in providers:
        info = catalog.get(name)
        prices[name] = own.get(name) or default or (info.price if info is not None else None)
    return prices


def reply_cost(result: ChatResult, price: Price | None) -> float | None:
    """What one reply cost in USD; None when the price or the reply's usage is unknown."""
    if price is None or result.prompt_tokens is None or result.completion_tokens is None:
        return None
    return price.cost(result.prompt_tokens, result.completion_tokens)


def count_billed(stats: ProviderStats, result: ChatResult, price: Price | None) -> None:
    """Count one billed reply (a whole 2xx reply, successful or not): its tokens and its cost."""
    stats.billed_replies += 1
    prompt, completion = result.prompt_tokens, result.completion_tokens
    if prompt is None or completion is None:
        # Billed all the same, for tokens nobody told us: what is known still counts, as a lower bound.
        stats.replies_without_usage += 1
    stats.prompt_tokens += prompt or 0
    stats.completion_tokens += completion or 0
    if price is None:
        stats.unpriced_replies += 1
    else:
        stats.cost_usd += price.cost(prompt or 0, completion or 0)
