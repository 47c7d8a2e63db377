"""Every new sim knob read from TOML, and the errors naming the dotted key when one is wrong."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hfbatch.errors import JobSpecError
from hfbatch.sim import Fault, SimProvider, load_sim_config, sim_config_from_dict

FULL_TOML = """
[sim]
publish_prices = false

[[sim.models]]
id = "o/m"

[[sim.models.providers]]
name = "p"
max_concurrency = 4
rate_limit = { requests = 50, window = 5.0 }
token_limit = { tokens = 10000, window = 60 }
limit_retry_after = "exact"
ratelimit_headers = true
price_in = 0.2
price_out = 1
context_length = 8192
supports_tools = false
supports_structured_output = false
throughput = 120.5
first_token_latency_ms = 300
is_free = true
reject_n = true
max_n = 2
reasoning = true
reasoning_only = true

[[sim.models.providers.faults]]
kind = "slow"
rate = 0.1
delay = 2.5

[[sim.models.providers.faults]]
kind = "deep"
depth = 100

[[sim.models.providers.faults]]
kind = 429
retry_after = 999999

[[sim.models.providers]]
name = "q"
limit_retry_after = 30
"""


def test_every_knob_from_toml(tmp_path: Path) -> None:
    """A job file's [sim] table sets every new provider, fault and server knob."""
    path = tmp_path / "job.toml"
    path.write_text(FULL_TOML)
    config = load_sim_config(path)
    assert config.publish_prices is False
    p, q = config.models[0].providers
    assert p == SimProvider(
        "p",
        max_concurrency=4,
        rate_limit=(50, 5.0),
        token_limit=(10000, 60.0),
        limit_retry_after="exact",
        ratelimit_headers=True,
        price_in=0.2,
        price_out=1.0,
        context_length=8192,
        supports_tools=False,
        supports_structured_output=False,
        throughput=120.5,
        first_token_latency_ms=300.0,
        is_free=True,
        reject_n=True,
        max_n=2,
        reasoning=True,
        reasoning_only=True,
        faults=(Fault("slow", rate=0.1, delay=2.5), Fault("deep", depth=100), Fault("429", retry_after="999999")),
    )
    assert q == SimProvider("q", limit_retry_after="30")
    assert p.limited and p.priced and not q.limited and not q.priced


def provider(**fields: Any) -> dict[str, Any]:
    """A [sim] table with one model and one provider `p` with `fields`."""
    return {"models": [{"id": "o/m", "providers": [{"name": "p", **fields}]}]}


KEY = "jobs/x.toml: sim.models[0].providers[0]"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"publish_prices": "no"}, "jobs/x.toml: sim.publish_prices: expected true or false"),
        (provider(max_concurrency=0), f"{KEY}.max_concurrency: must be >= 1"),
        (provider(rate_limit=50), f"{KEY}.rate_limit: expected a table"),
        (provider(rate_limit={"requests": 5}), f"{KEY}.rate_limit.window: missing"),
        (provider(rate_limit={"requests": 5, "window": 0}), f"{KEY}.rate_limit.window: must be > 0"),
        (provider(rate_limit={"requests": 5, "window": 1, "burst": 2}), f"{KEY}.rate_limit.burst: unknown key"),
        (provider(token_limit={"requests": 5, "window": 1}), f"{KEY}.token_limit.requests: unknown key"),
        (provider(token_limit={"tokens": 0, "window": 1}), f"{KEY}.token_limit.tokens: must be >= 1"),
        (provider(limit_retry_after=""), f"{KEY}.limit_retry_after: must not be empty"),
        (provider(limit_retry_after=1.5), f"{KEY}.limit_retry_after: expected a string or a whole number"),
        (provider(ratelimit_headers=1), f"{KEY}.ratelimit_headers: expected true or false"),
        (provider(price_in=1), f"{KEY}.price_out: missing (price_in and price_out go together)"),
        (provider(price_in=-1, price_out=1), f"{KEY}.price_in: must be a finite number >= 0"),
        (provider(price_in="1", price_out=1), f"{KEY}.price_in: expected a number"),
        (provider(context_length=0), f"{KEY}.context_length: must be >= 1"),
        (provider(throughput=-5), f"{KEY}.throughput: must be a finite number >= 0"),
        (provider(max_n=0), f"{KEY}.max_n: must be >= 1"),
        (provider(reasoning="yes"), f"{KEY}.reasoning: expected true or false"),
        (provider(faults=[{"kind": "slow", "delay": -1}]), f"{KEY}.faults[0].delay: must be a finite number >= 0"),
        (provider(faults=[{"kind": "deep", "depth": 0}]), f"{KEY}.faults[0].depth: must be >= 1"),
        (provider(faults=[{"kind": "echo", "variant": 1}]), f"{KEY}.faults[0].variant: unknown key"),
    ],
)
def test_bad_knobs_name_the_dotted_key(data: dict[str, Any], expected: str) -> None:
    """Each wrong new knob raises JobSpecError naming the file and the dotted key."""
    with pytest.raises(JobSpecError) as info:
        sim_config_from_dict(data, "jobs/x.toml")
    assert expected in str(info.value)


def test_new_fault_fields_built_in_code_are_checked() -> None:
    """A Fault with a negative delay or a depth below 1 is refused at construction."""
    with pytest.raises(ValueError, match="delay"):
        Fault("slow", delay=-0.5)
    with pytest.raises(ValueError, match="depth"):
        Fault("deep", depth=0)
