"""Running each provider at its real capacity: learned in-flight limits, paced request rates, rate-limit headers."""

from __future__ import annotations

from hfbatch.capacity.concurrency import ConcurrencyLimit
from hfbatch.capacity.headers import RateHint, parse_duration, parse_ratelimit_headers
from hfbatch.capacity.learned import STALE_AFTER, LearnedLimits, dump_learned, load_learned
from hfbatch.capacity.provider import Blame, ProviderCapacity, Slot, acquire_any
from hfbatch.capacity.rate import RateLimit

__all__ = [
    "STALE_AFTER",
    "Blame",
    "ConcurrencyLimit",
    "LearnedLimits",
    "ProviderCapacity",
    "RateHint",
    "RateLimit",
    "Slot",
    "acquire_any",
    "dump_learned",
    "load_learned",
    "parse_duration",
    "parse_ratelimit_headers",
]
