"""What the simulated servers count and log, shared by the handlers and readable from any thread."""

from __future__ import annotations

import asyncio
import random
import threading
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from hfbatch.sim.config import Fault, SimConfig, SimProvider

__all__ = ["MAX_LOGGED_REQUESTS", "ProviderStats", "SimState"]

MAX_LOGGED_REQUESTS = 200


@dataclass(slots=True)
class ProviderStats:
    """What one provider was asked and what it answered."""

    requests: int = 0
    by_outcome: Counter[int | str] = field(default_factory=Counter)


class SimState:
    """The simulated servers' configuration, counters and request log (thread-safe reads)."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.stats: dict[str, ProviderStats] = {}
        self.hub_requests = 0
        self.requests: deque[tuple[str, dict[str, Any]]] = deque(maxlen=MAX_LOGGED_REQUESTS)
        self._mapping_requests = 0
        self._rngs: dict[str, random.Random] = {}
        self._lock = threading.Lock()
        # Set on shutdown so hanging requests end at once; replaced per run of the server.
        self.stopping = asyncio.Event()
        self.reset_counts()

    def reset_counts(self) -> None:
        """Zero every counter, forget logged requests and restart the fault draws."""
        with self._lock:
            names = [p.name for m in self.config.models for p in m.providers]
            self.stats = {name: ProviderStats() for name in names}
            self.hub_requests = 0
            self._mapping_requests = 0
            self.requests.clear()
            self._rngs = {name: random.Random(f"{self.config.seed}:{name}") for name in names}

    def counts(self) -> dict[str, dict[str, Any]]:
        """A JSON-able snapshot: {provider: {"requests": n, "by_outcome": {outcome: n}}}."""
        with self._lock:
            return {
                name: {
                    "requests": s.requests,
                    "by_outcome": {str(k): v for k, v in sorted(s.by_outcome.items(), key=str)},
                }
                for name, s in self.stats.items()
            }

    def admit(self, provider: SimProvider, body: dict[str, Any]) -> Fault | None:
        """Count a routed request and decide, synchronously so order is arrival order, its fault."""
        with self._lock:
            stats = self.stats.setdefault(provider.name, ProviderStats())
            stats.requests += 1
            self.requests.append((provider.name, body))
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
            self.stats.setdefault(provider, ProviderStats()).by_outcome[outcome] += 1

    def count_hub(self, mapping: bool) -> int:
        """Count one Hub request; return how many mapping requests came so far."""
        with self._lock:
            self.hub_requests += 1
            if mapping:
                self._mapping_requests += 1
            return self._mapping_requests
