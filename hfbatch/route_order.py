"""The order rows try providers in (`--route`): as given, cheapest first, or fastest first.

The order is all a route changes: spill-over still sends a row to the first provider
in it with room, and fail-over walks it. Providers the route cannot rank (no price,
no published throughput) go after those it can, in their original order, so a route
never drops a provider.
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
) -> list[str]:
    """`providers` in the order `route` puts them (stable: ties and unranked keep their order)."""
    if route == "order":
        return list(providers)
    if route == "cheapest":
        completion = max_tokens or NOMINAL_COMPLETION_TOKENS

        def key(name: str) -> float | None:
            price = prices.get(name)
            return None if price is None else price.cost(NOMINAL_PROMPT_TOKENS, completion)

    elif route == "fastest":

        def key(name: str) -> float | None:
            info = catalog.get(name)
            throughput = None if info is None else info.throughput
            return None if throughput is None else -throughput

    else:
        raise ValueError(f"unknown route {route!r} (choose from {', '.join(ROUTES)})")
    ranked = [(k, i, p) for i, p in enumerate(providers) if (k := key(p)) is not None]
    unranked = [p for p in providers if key(p) is None]
    return [p for _, _, p in sorted(ranked)] + unranked
