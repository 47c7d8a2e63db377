"""The router's model list (`/v1/models`) and model info (`/v1/models/{id}`).

Like the real router, each model lists its providers with status, context length, pricing (USD
per million tokens; absent for a provider without prices), `is_free`, tool and structured-output
support, and, when configured, `first_token_latency_ms` and `throughput`. With
`publish_prices = false` a model is only `{id, object, owned_by}`, as a plain OpenAI-compatible
server has it.
"""

from __future__ import annotations

from typing import Any

from hfbatch.sim.config import SimModel, SimProvider

__all__ = ["model_entry"]


def _provider_entry(p: SimProvider) -> dict[str, Any]:
    entry: dict[str, Any] = {"provider": p.name, "status": p.status}
    if p.context_length is not None:
        entry["context_length"] = p.context_length
    if p.price_in is not None and p.price_out is not None:
        entry["pricing"] = {"input": p.price_in, "output": p.price_out}
    entry["is_free"] = p.is_free
    entry["supports_tools"] = p.supports_tools
    entry["supports_structured_output"] = p.supports_structured_output
    if p.first_token_latency_ms is not None:
        entry["first_token_latency_ms"] = p.first_token_latency_ms
    if p.throughput is not None:
        entry["throughput"] = p.throughput
    return entry


def model_entry(model: SimModel, *, publish_prices: bool) -> dict[str, Any]:
    """One model as `/v1/models` lists it."""
    entry: dict[str, Any] = {"id": model.id, "object": "model", "owned_by": model.id.split("/")[0]}
    if publish_prices:
        entry["providers"] = [_provider_entry(p) for p in model.providers]
    return entry
