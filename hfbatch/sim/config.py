"""What the simulated server serves: models, providers, latencies, limits, prices and faults.

Built in code (`SimConfig(...)`) or from TOML through `hfbatch.sim.configfile`
(`sim_config_from_dict` for a job file's `[sim]` table, `load_sim_config` for a file of its own).
Every field below is also a TOML key of the same name (see `hfbatch.sim`'s docstring); the
dataclasses check their own values, so a config built in code is as safe as one read from TOML.
"""

from __future__ import annotations

from dataclasses import dataclass

from hfbatch.sim.hub_repos_config import SimHubRepos

__all__ = [
    "CONTENT_FAULTS",
    "FAULT_KINDS",
    "PROVIDER_STATUSES",
    "ROUTING_POLICIES",
    "Fault",
    "SimConfig",
    "SimModel",
    "SimProvider",
    "default_sim_config",
]

# Faults that still answer 200 with a whole, well-formed body (so they are billed).
CONTENT_FAULTS = frozenset({"slow", "empty", "no_usage", "surrogate", "deep", "invalid_json"})
FAULT_KINDS = frozenset(
    {
        "401",
        "400",
        "402",
        "403",
        "404",
        "422",
        "429",
        "500",
        "502",
        "503",
        "hang",
        "reset",
        "malformed",
        "truncate",
        "down",
        "model_not_supported",
        "leak",
        "echo",
        "echo_malformed",
        "echo_stream",
        *CONTENT_FAULTS,
    }
)
PROVIDER_STATUSES = ("live", "staging", "error")
# Model suffixes the router treats as a policy rather than a provider name.
ROUTING_POLICIES = ("fastest", "cheapest", "preferred")
# `limit_retry_after` values with a meaning; any other string is sent as Retry-After verbatim.
RETRY_AFTER_POLICIES = ("none", "exact")
# Just under CPython's default recursion limit (1000): see the `deep` fault.
DEFAULT_DEEP_DEPTH = 980


@dataclass(frozen=True, slots=True)
class Fault:
    """A failure injected into a share of one provider's chat requests.

    `delay` adds seconds before the fault's reply (the `slow` kind is a normal reply after it);
    `depth` is how deep the `deep` kind nests its extra field.
    """

    kind: str
    rate: float = 1.0
    first: int | None = None
    after: int = 0
    retry_after: str | None = None
    delay: float = 0.0
    depth: int = DEFAULT_DEEP_DEPTH

    def __post_init__(self) -> None:
        # Faults built in code skip sim_config_from_dict, so catch typos here too.
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {self.kind!r} (expected one of {', '.join(sorted(FAULT_KINDS))})")
        if not 0 <= self.rate <= 1:
            raise ValueError(f"fault rate must be between 0 and 1, got {self.rate}")
        if not 0 <= self.delay < float("inf"):
            raise ValueError(f"fault delay must be a finite number >= 0, got {self.delay}")
        if self.depth < 1:
            raise ValueError(f"fault depth must be >= 1, got {self.depth}")

    def applies_to(self, n: int) -> bool:
        """Whether the provider's `n`-th request (1-based) is a candidate for this fault."""
        if n <= self.after:
            return False
        return self.first is None or n <= self.first


def _check_window(name: str, value: tuple[int, float] | None) -> None:
    if value is None:
        return
    amount, window = value
    if isinstance(amount, bool) or not isinstance(amount, int) or amount < 1:
        raise ValueError(f"{name} needs a whole number >= 1 first, got {amount!r}")
    if not 0 < window < float("inf"):
        raise ValueError(f"{name} needs a window of seconds > 0, got {window!r}")


@dataclass(frozen=True, slots=True)
class SimProvider:
    """One provider serving a model: latency, faults, capacity, prices and capabilities.

    Capacity (each past its limit answers 429): `max_concurrency` requests in flight,
    `rate_limit = (requests, window_seconds)` and `token_limit = (tokens, window_seconds)` over a
    sliding window. `limit_retry_after` is "none", "exact" or a fixed Retry-After string;
    `ratelimit_headers` sends OpenAI's x-ratelimit-* headers when a window limit is set.
    Prices are USD per million tokens; None (both) means the router publishes no pricing.
    """

    name: str
    provider_id: str | None = None
    status: str = "live"
    task: str = "conversational"
    latency: float = 0.0
    faults: tuple[Fault, ...] = ()
    # capacity
    max_concurrency: int | None = None
    rate_limit: tuple[int, float] | None = None
    token_limit: tuple[int, float] | None = None
    limit_retry_after: str = "none"
    ratelimit_headers: bool = False
    # what the router publishes in /v1/models
    price_in: float | None = None
    price_out: float | None = None
    context_length: int | None = 32768
    supports_tools: bool = True
    supports_structured_output: bool = True
    throughput: float | None = None
    first_token_latency_ms: float | None = None
    is_free: bool = False
    # sampling and reasoning
    reject_n: bool = False
    max_n: int | None = None
    reasoning: bool = False
    reasoning_only: bool = False

    def __post_init__(self) -> None:
        if self.max_concurrency is not None and self.max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {self.max_concurrency}")
        if self.max_n is not None and self.max_n < 1:
            raise ValueError(f"max_n must be >= 1, got {self.max_n}")
        _check_window("rate_limit", self.rate_limit)
        _check_window("token_limit", self.token_limit)
        if not self.limit_retry_after:
            raise ValueError("limit_retry_after must not be empty")
        if (self.price_in is None) != (self.price_out is None):
            raise ValueError("price_in and price_out are set together or not at all")
        for price in (self.price_in, self.price_out):
            if price is not None and not 0 <= price < float("inf"):
                raise ValueError(f"prices must be finite numbers >= 0, got {price}")

    @property
    def routable(self) -> bool:
        """Whether the router sends chat requests here."""
        return self.status == "live" and self.task == "conversational"

    @property
    def priced(self) -> bool:
        """Whether the router publishes a price for this provider."""
        return self.price_in is not None and self.price_out is not None

    @property
    def limited(self) -> bool:
        """Whether any capacity limit is set."""
        return self.max_concurrency is not None or self.rate_limit is not None or self.token_limit is not None

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        """What a reply costs in USD at this provider's prices (0 when unpriced)."""
        if self.price_in is None or self.price_out is None:
            return 0.0
        return (prompt_tokens * self.price_in + completion_tokens * self.price_out) / 1e6


@dataclass(frozen=True, slots=True)
class SimModel:
    """A model id and the providers mapped to it, in preference order."""

    id: str
    providers: tuple[SimProvider, ...]

    def provider(self, name: str) -> SimProvider | None:
        """The provider called `name`, if it serves this model."""
        for p in self.providers:
            if p.name == name:
                return p
        return None


@dataclass(frozen=True, slots=True)
class SimConfig:
    """Everything the simulated Hub and router serve.

    `publish_prices = False` serves `/v1/models` as a plain OpenAI-compatible server would.
    """

    models: tuple[SimModel, ...]
    token: str = "hf_sim_token"
    seed: int = 0
    hang_seconds: float = 3600.0
    hub_fail_first: int = 0
    sse_space: bool = True
    sse_done: bool = True
    usage_in_finish_chunk: bool = False
    publish_prices: bool = True
    #: Dataset repos the simulated Hub serves to huggingface_hub, and faults on their endpoints.
    hub_repos: SimHubRepos | None = None

    def model(self, model_id: str) -> SimModel | None:
        """The model with this id, if served."""
        for m in self.models:
            if m.id == model_id:
                return m
        return None


def default_models() -> tuple[SimModel, ...]:
    """The stock models; see `default_sim_config`."""
    latency = 0.02
    return (
        SimModel(
            id="hfbatch/sim-chat",
            providers=(
                SimProvider(name="alpha", latency=latency, faults=(Fault(kind="402"),), price_in=0.1, price_out=0.4),
                SimProvider(
                    name="beta",
                    latency=latency,
                    faults=(Fault(kind="429", rate=0.05, retry_after="0"), Fault(kind="500", rate=0.05)),
                    price_in=0.2,
                    price_out=0.6,
                ),
                SimProvider(name="gamma", latency=latency, price_in=0.5, price_out=1.5),
            ),
        ),
        SimModel(
            id="hfbatch/sim-vision",
            providers=(SimProvider(name="gamma", latency=latency, price_in=0.5, price_out=1.5),),
        ),
    )


def default_sim_config() -> SimConfig:
    """The stock setup: `alpha` is out of credits, `beta` is flaky, `gamma` is healthy (and dearest)."""
    return SimConfig(models=default_models())
