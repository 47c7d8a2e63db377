"""Named runs of the capacity model, each with the goodput and 429 shares the learners must reach.

Tests assert every scenario's shares; `bench/capacity_model.py` prints them. A new
provider behaviour to learn gets a scenario here first.
"""

from __future__ import annotations

from dataclasses import dataclass

from hfbatch.capacity.learned import LearnedLimits
from hfbatch.capacity.model import ModelProvider, ModelResult, run_model

__all__ = ["SCENARIOS", "Scenario", "run_scenario"]


@dataclass(frozen=True, slots=True)
class Scenario:
    """A named model run and the goodput share and 429 share it must reach."""

    providers: tuple[ModelProvider, ...]
    what: str
    duration: float = 60.0
    workers: int = 64
    max_concurrency: int = 64
    rpm: float | None = None
    learned: tuple[LearnedLimits | None, ...] | None = None
    min_share: float = 0.9
    max_refused: float = 0.05
    #: One of the issue's targets (the rest are checks beyond them).
    target: bool = False

    @property
    def chance(self) -> float:
        """The highest share of requests a provider of the scenario refuses at random."""
        return max(p.refuse for p in self.providers)


_CAP16 = ModelProvider(caps=((0.0, 16),))
_RATE = ModelProvider(window=50, window_seconds=5.0)

#: The issue's targets first, then harder cases. Latency is 100 ms +-20% unless said.
SCENARIOS: dict[str, Scenario] = {
    "cap16": Scenario((_CAP16,), "one provider, cap 16 in flight", target=True),
    "cap8": Scenario((ModelProvider(caps=((0.0, 8),)),), "one provider, cap 8 in flight", target=True),
    "caps-16-16-8": Scenario(
        (_CAP16, _CAP16, ModelProvider(caps=((0.0, 8),))), "three providers, caps 16/16/8 (400 rows/s)", target=True
    ),
    "rate-retry-after": Scenario(
        (ModelProvider(window=50, window_seconds=5.0, retry_after=True),),
        "10 req/s (50 per 5 s), 429s with Retry-After",
        max_refused=0.10,
        target=True,
    ),
    "rate": Scenario((_RATE,), "10 req/s (50 per 5 s), bare 429s", max_refused=0.10, target=True),
    "cap-16-8-16": Scenario(
        (ModelProvider(caps=((0.0, 16), (20.0, 8), (40.0, 16))),),
        "cap 16, then 8 at 20 s, 16 again at 40 s",
        target=True,
    ),
    "rate-headers": Scenario(
        (ModelProvider(window=50, window_seconds=5.0, headers=True),),
        "10 req/s with x-ratelimit-* headers on every reply",
        max_refused=0.10,
    ),
    "rate-60s": Scenario(
        (ModelProvider(window=600, window_seconds=60.0),),
        "600 per 60 s (an RPM limit), bare 429s",
        300.0,
        max_refused=0.10,
    ),
    "cap16-spread": Scenario(
        (ModelProvider(caps=((0.0, 16),), spread=1.0),), "cap 16, latency lognormal (sigma 1: outputs vary tenfold)"
    ),
    "cap64": Scenario((ModelProvider(caps=((0.0, 64),)),), "cap 64 with 128 workers", workers=128, max_concurrency=128),
    "queue16+cap16": Scenario(
        (ModelProvider(caps=((0.0, 16),), queue_over_cap=True), _CAP16),
        "first provider queues past 16 instead of refusing; second caps at 16",
    ),
    "cap16+rate": Scenario(
        (ModelProvider(caps=((0.0, 16),), window=600, window_seconds=10.0),), "cap 16 and 60 req/s on one provider"
    ),
    "rate-2s-latency": Scenario(
        (ModelProvider(window=50, window_seconds=5.0, latency=2.0),),
        "10 req/s at 2 s latency (20 in flight needed)",
        300.0,
        min_share=0.85,
        max_refused=0.10,
    ),
    "cap16-warm": Scenario((_CAP16,), "cap 16, warm start from a previous run", learned=(LearnedLimits(16),)),
    "rate-warm": Scenario(
        (_RATE,), "10 req/s, warm start at 9.8/s", learned=(LearnedLimits(rate=9.8),), max_refused=0.10
    ),
    "chance5": Scenario(
        (ModelProvider(refuse=0.05),), "no cap, 5% of requests refused at random", max_refused=0.08, target=True
    ),
    "chance5-ra": Scenario(
        (ModelProvider(refuse=0.05, refuse_retry_after=1.0),),
        "no cap, 5% refused at random with Retry-After: 1",
        max_refused=0.08,
        target=True,
    ),
    "chance50": Scenario(
        (ModelProvider(refuse=0.5),), "no cap, 50% of requests refused at random", max_refused=0.53, target=True
    ),
    "chance50-ra": Scenario(
        (ModelProvider(refuse=0.5, refuse_retry_after=1.0),),
        "no cap, 50% refused at random with Retry-After: 1",
        max_refused=0.53,
        target=True,
    ),
    "cap16-chance5": Scenario(
        (ModelProvider(caps=((0.0, 16),), refuse=0.05),),
        "cap 16, and 5% refused at random",
        max_refused=0.08,
        target=True,
    ),
    "cap16-chance50": Scenario(
        (ModelProvider(caps=((0.0, 16),), refuse=0.5),),
        "cap 16, and 50% refused at random",
        max_refused=0.53,
        target=True,
    ),
    "cap16-chance50-ra": Scenario(
        (ModelProvider(caps=((0.0, 16),), refuse=0.5, refuse_retry_after=1.0),),
        "cap 16, and 50% refused at random with Retry-After: 1",
        max_refused=0.53,
    ),
    "cap16-transit": Scenario(
        (ModelProvider(caps=((0.0, 16),), transit=0.01),),
        "cap 16, 10 ms network each way: our count runs ahead of the provider's",
        min_share=0.75,
    ),
}


def run_scenario(scenario: Scenario, *, seed: int = 0, duration: float | None = None) -> ModelResult:
    """Run one scenario (optionally for another duration)."""
    return run_model(
        list(scenario.providers),
        duration=scenario.duration if duration is None else duration,
        workers=scenario.workers,
        max_concurrency=scenario.max_concurrency,
        rpm=scenario.rpm,
        learned=None if scenario.learned is None else list(scenario.learned),
        seed=seed,
    )
