"""A simulated Hugging Face Hub and router for tests, the `hfbatch sim` command and job files.

It serves provider mappings, model lists (with prices) and an OpenAI-compatible chat endpoint
over real HTTP, with per-provider latency, capacity limits and injected faults, and counts what
each provider was asked, answered and billed.

Knobs (dataclass fields, and the same keys in TOML: `hfbatch sim --config FILE` or a job's `[sim]`):

`[sim]` (SimConfig): token, seed, hang_seconds, hub_fail_first, sse_space, sse_done,
usage_in_finish_chunk, publish_prices (false: `/v1/models` entries are only id/object/owned_by).

`[[sim.models]]` (SimModel): id, providers.

`[[sim.models.providers]]` (SimProvider):
- routing: name, provider_id, status (live/staging/error), task, latency (s), faults;
- capacity, 429 past it: max_concurrency, rate_limit = { requests = 50, window = 5.0 },
  token_limit = { tokens = N, window = S } (prompt + completion tokens), limit_retry_after
  ("none", "exact": Retry-After rounded up plus retry-after-ms, or a fixed string),
  ratelimit_headers (x-ratelimit-{limit,remaining,reset}-{requests,tokens});
- published in `/v1/models`: price_in, price_out (USD per million tokens; both or neither),
  context_length, is_free, supports_tools, supports_structured_output (false: response_format
  is ignored), first_token_latency_ms, throughput;
- sampling: reject_n (n > 1 -> 400), max_n (at most that many choices);
- reasoning: reasoning (reasoning_content before content), reasoning_only (content null).
In code, rate_limit and token_limit are `(amount, window_seconds)` tuples.

`[[sim.models.providers.faults]]` (Fault): kind, rate, first, after, retry_after (429),
delay (extra seconds before the reply, any kind), depth (`deep`). Kinds: the statuses 400 401
402 403 404 422 429 500 502 503; hang, reset, down, malformed, truncate, model_not_supported,
leak; echo, echo_malformed, echo_stream (quote the Authorization header, token across character
300); and the content faults, whole 200 replies that are billed: slow (a normal reply after
`delay`), empty (content "", then null, alternately), no_usage, surrogate (a lone "\\udc80"
escaped in the content), deep (an extra field `x_trace` nested `depth` levels), invalid_json
(with a response_format: not JSON, then JSON the schema rejects, alternately).

Counters (`SimServer` / `SimState`): counts() ({provider: {requests, by_outcome, and
max_in_flight for a provider with limits}}), max_in_flight(), billing(), paid_twice(),
paid_keys(), requests, request_headers (without Authorization), hub_requests, reset_counts().
A capacity 429 counts as 429 in by_outcome.
"""

from __future__ import annotations

from hfbatch.sim.app import make_app
from hfbatch.sim.billing import request_key
from hfbatch.sim.config import (
    FAULT_KINDS,
    Fault,
    SimConfig,
    SimModel,
    SimProvider,
    default_sim_config,
)
from hfbatch.sim.configfile import load_sim_config, sim_config_from_dict
from hfbatch.sim.replies import SimReply, reasoning_for, reply_for
from hfbatch.sim.schema import instance_for, schema_errors
from hfbatch.sim.server import SimServer, serve
from hfbatch.sim.state import ProviderCounts, SimState

__all__ = [
    "FAULT_KINDS",
    "Fault",
    "ProviderCounts",
    "SimConfig",
    "SimModel",
    "SimProvider",
    "SimReply",
    "SimServer",
    "SimState",
    "default_sim_config",
    "instance_for",
    "load_sim_config",
    "make_app",
    "reasoning_for",
    "reply_for",
    "request_key",
    "schema_errors",
    "serve",
    "sim_config_from_dict",
]
