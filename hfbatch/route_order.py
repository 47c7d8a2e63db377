"""The order rows try providers in (`--route`): as given, cheapest first, or fastest first.

The order is all a route changes: spill-over still sends a row to the first provider
in it with room, and fail-over walks it. Providers the route cannot rank (no price,
no published throughput) go after those it can, in their original order, so a route
never drops a provider.

`cheapest` prices a row at the mean prompt and completion tokens of the replies seen so
far (the runner re-ranks as they come); before any, at a nominal row. `fastest` ranks by
the router's published throughput, then its first-token latency.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hfbatch.pricing import Price, ProviderInfo

__all__ = ["NOMINAL_COMPLETION_TOKENS", "NOMINAL_PROMPT_TOKENS", "ROUTES", "order_providers"]

ROUTES = ("order", "cheapest", "fastest")
# "Cheapest" prices a nominal row: prompt and completion prices weigh differently per provider,
# so the order depends on the mix. Without --max-tokens the completion is taken as 500 tokens.
NOMINAL_PROMPT_TOKENS = 500
NOMINAL_COMPLETION_TOKENS = 500


def order_providers(
    providers: Sequence[str],
    route: str,
    *,
    prices: Mapping[str, Price | None],
    catalog: Mapping[str, ProviderInfo],
    max_tokens: int | None = None,
    seen: tuple[float, float] | None = None,
) -> list[str]:
    """`providers` in the order `route` puts them (stable: ties and unranked keep their order).

    `seen` is the mean (prompt, completion) tokens of the replies so far, for `cheapest`.
    """
    if route == "order":
        return list(providers)
    if route == "cheapest":
        prompt, completion = seen or (NOMINAL_PROMPT_TOKENS, max_tokens or NOMINAL_COMPLETION_TOKENS)

        def key(name: str) -> tuple[float, float] | None:
            price = prices.get(name)
            return None if price is None else (price.input * prompt + price.output * completion, 0.0)

    elif route == "fastest":

        def key(name: str) -> tuple[float, float] | None:
            info = catalog.get(name)
            if info is None or info.throughput is None:
                return None
            latency = info.first_token_latency_ms
            return -info.throughput, latency if latency is not None else float("inf")

    else:
        raise ValueError(f"unknown route {route!r} (choose from {', '.join(ROUTES)})")
    ranked = [(k, i, p) for i, p in enumerate(providers) if (k := key(p)) is not None]
    unranked = [p for p in providers if key(p) is None]
    return [p for _, _, p in sorted(ranked)] + unranked
