"""What the simulated providers billed, and which requests were paid for more than once.

Only whole 2xx replies whose body was fully sent are billed (a truncated, malformed, hung or
abandoned reply is not), at the serving provider's prices. A request is known by `request_key`:
its messages, `n`, `seed` and `response_format`, so the same row sent twice, to the same or
another provider, streamed or not, is the same key.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass
from typing import Any

from hfbatch.sim.config import SimProvider

__all__ = ["Ledger", "request_key"]


def request_key(body: dict[str, Any]) -> str:
    """A hash of what makes two chat requests the same row (not the provider, not `stream`)."""
    n = body.get("n")
    canonical = {
        "messages": body.get("messages"),
        "n": 1 if n is None else n,
        "seed": body.get("seed"),
        "response_format": body.get("response_format"),
    }
    text = json.dumps(canonical, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(slots=True)
class _Account:
    replies: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    priced: bool = False


class Ledger:
    """Billed replies per provider and payments per request key (the caller holds the lock)."""

    def __init__(self, providers: list[SimProvider]) -> None:
        self._accounts: dict[str, _Account] = {}
        for p in providers:
            account = self._accounts.setdefault(p.name, _Account())
            account.priced = account.priced or p.priced
        self._paid: Counter[str] = Counter()

    def bill(self, provider: SimProvider, key: str, prompt_tokens: int, completion_tokens: int) -> None:
        """Record one billed reply."""
        account = self._accounts.setdefault(provider.name, _Account(priced=provider.priced))
        account.replies += 1
        account.prompt_tokens += prompt_tokens
        account.completion_tokens += completion_tokens
        account.cost_usd += provider.cost(prompt_tokens, completion_tokens)
        self._paid[key] += 1

    def summary(self) -> dict[str, Any]:
        """{"providers": {name: account}, "total": account}; accounts are JSON-able dicts."""
        providers = {
            name: {
                "replies": a.replies,
                "prompt_tokens": a.prompt_tokens,
                "completion_tokens": a.completion_tokens,
                "cost_usd": a.cost_usd,
                "priced": a.priced,
            }
            for name, a in self._accounts.items()
        }
        total: dict[str, Any] = {
            key: sum(a[key] for a in providers.values()) for key in ("replies", "prompt_tokens", "completion_tokens")
        }
        total["cost_usd"] = sum((a.cost_usd for a in self._accounts.values()), 0.0)
        return {"providers": providers, "total": total}

    def paid_twice(self) -> int:
        """Billed replies beyond the first for each request key."""
        return sum(n - 1 for n in self._paid.values())

    def paid_keys(self) -> int:
        """Distinct request keys billed at least once."""
        return len(self._paid)
