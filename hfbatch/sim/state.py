"""What the simulated servers count and log, shared by the handlers and readable from any thread.

Per provider: requests routed, outcomes sent (`by_outcome`: an HTTP status for every whole
reply, a name such as "truncate" or "hang" for the rest), requests in flight and their peak
(`max_in_flight`), capacity windows, and what was billed (`billing`, `paid_twice`, `paid_keys`).
The windows read `clock` (time.monotonic unless given), so tests can step time by hand.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hfbatch.sim.billing import Ledger
from hfbatch.sim.capacity import Capacity, Grant
from hfbatch.sim.config import Fault, SimConfig, SimProvider

__all__ = ["MAX_LOGGED_REQUESTS", "ProviderCounts", "SimState"]

MAX_LOGGED_REQUESTS = 200


@dataclass(slots=True)
class ProviderCounts:
    """What one provider was asked and what it answered."""

    requests: int = 0
    by_outcome: Counter[int | str] = field(default_factory=Counter)


class SimState:
    """The simulated servers' configuration, counters and request log (thread-safe reads)."""

    def __init__(self, config: SimConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.clock = clock
        self._capacity: dict[str, Capacity] = {}
        self._ledger = Ledger([])
        self._fault_hits: Counter[tuple[str, str]] = Counter()
        self.stats: dict[str, ProviderCounts] = {}
        self.hub_requests = 0
        self.requests: deque[tuple[str, dict[str, Any]]] = deque(maxlen=MAX_LOGGED_REQUESTS)
        #: The headers of the logged requests, in the same order, without Authorization (never logged).
        self.request_headers: deque[dict[str, str]] = deque(maxlen=MAX_LOGGED_REQUESTS)
        self._mapping_requests = 0
        self._rngs: dict[str, random.Random] = {}
        self._lock = threading.Lock()
        # Set on shutdown so hanging requests end at once; replaced per run of the server.
        self.stopping = asyncio.Event()
        self.reset_counts()

    def reset_counts(self) -> None:
        """Zero every counter and the bill, forget logged requests, restart the fault draws and windows."""
        with self._lock:
            names = [p.name for m in self.config.models for p in m.providers]
            self.stats = {name: ProviderCounts() for name in names}
            self._capacity = {name: Capacity() for name in names}
            self._ledger = Ledger([p for m in self.config.models for p in m.providers])
            self._fault_hits.clear()
            self.hub_requests = 0
            self._mapping_requests = 0
            self.requests.clear()
            self.request_headers.clear()
            self._rngs = {name: random.Random(f"{self.config.seed}:{name}") for name in names}

    def counts(self) -> dict[str, dict[str, Any]]:
        """A JSON-able snapshot: {provider: {"requests": n, "by_outcome": {outcome: n}}}.

        A provider with a capacity limit also gets "max_in_flight" (`max_in_flight()` has all).
        """
        limited = {p.name for m in self.config.models for p in m.providers if p.limited}
        with self._lock:
            snapshot: dict[str, dict[str, Any]] = {}
            for name, s in self.stats.items():
                entry: dict[str, Any] = {
                    "requests": s.requests,
                    "by_outcome": {str(k): v for k, v in sorted(s.by_outcome.items(), key=str)},
                }
                if name in limited:
                    entry["max_in_flight"] = self._capacity_of(name).max_in_flight
                snapshot[name] = entry
            return snapshot

    def max_in_flight(self) -> dict[str, int]:
        """Per provider: the most requests it held in flight at once since the last reset."""
        with self._lock:
            return {name: self._capacity_of(name).max_in_flight for name in self.stats}

    def in_flight(self) -> dict[str, int]:
        """Per provider: requests being answered right now."""
        with self._lock:
            return {name: self._capacity_of(name).in_flight for name in self.stats}

    def _capacity_of(self, name: str) -> Capacity:
        return self._capacity.setdefault(name, Capacity())

    def acquire(self, provider: SimProvider, tokens: int) -> Grant:
        """Let a request costing `tokens` in under the provider's limits (then `release` it), or refuse it."""
        with self._lock:
            return self._capacity_of(provider.name).acquire(provider, self.clock(), tokens)

    def release(self, provider: SimProvider) -> None:
        """A request `acquire` let in is over."""
        with self._lock:
            self._capacity_of(provider.name).release()

    def fault_hit(self, provider: SimProvider, kind: str) -> int:
        """Count a hit of fault `kind` on `provider`; return how many came before (0 for the first)."""
        with self._lock:
            key = (provider.name, kind)
            self._fault_hits[key] += 1
            return self._fault_hits[key] - 1

    def bill(self, provider: SimProvider, key: str, prompt_tokens: int, completion_tokens: int) -> None:
        """Record a whole 2xx reply as billed, under request key `key`."""
        with self._lock:
            self._ledger.bill(provider, key, prompt_tokens, completion_tokens)

    def billing(self) -> dict[str, Any]:
        """{"providers": {name: {replies, prompt_tokens, completion_tokens, cost_usd, priced}}, "total": {...}}."""
        with self._lock:
            return self._ledger.summary()

    def paid_twice(self) -> int:
        """Billed replies beyond the first for the same request (same messages, n, seed, response_format)."""
        with self._lock:
            return self._ledger.paid_twice()

    def paid_keys(self) -> int:
        """Distinct requests billed at least once."""
        with self._lock:
            return self._ledger.paid_keys()

    def admit(
        self, provider: SimProvider, body: dict[str, Any], headers: Mapping[str, str] | None = None
    ) -> Fault | None:
        """Count a routed request and decide, synchronously so order is arrival order, its fault."""
        with self._lock:
            stats = self.stats.setdefault(provider.name, ProviderCounts())
            stats.requests += 1
            self.requests.append((provider.name, body))
            self.request_headers.append({k: v for k, v in (headers or {}).items() if k.lower() != "authorization"})
            rng = self._rngs.setdefault(provider.name, random.Random(f"{self.config.seed}:{provider.name}"))
            hit: Fault | None = None
            for fault in provider.faults:
                # One draw per fault per request, hit or not, so request n's fate depends only on n.
                draw = rng.random()
                if hit is None and fault.applies_to(stats.requests):
                    if fault.kind == "down" or draw < fault.rate:
                        hit = fault
            return hit

    def record(self, provider: str, outcome: int | str) -> None:
        """Count one reply (an HTTP status, or how the connection ended) for `provider`."""
        with self._lock:
            self.stats.setdefault(provider, ProviderCounts()).by_outcome[outcome] += 1

    def count_hub(self, mapping: bool) -> int:
        """Count one Hub request; return how many mapping requests came so far."""
        with self._lock:
            self.hub_requests += 1
            if mapping:
                self._mapping_requests += 1
            return self._mapping_requests
