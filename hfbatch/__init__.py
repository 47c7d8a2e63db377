"""hfbatch: batch text generation through Hugging Face Inference Providers.

Public names are imported on first use, so `hfbatch --help` does not pay for aiohttp or pyarrow.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "HuggingFaceAPI": "hfbatch.client",
    "ChatResult": "hfbatch.wire",
    "ProviderMapping": "hfbatch.hub",
    "JobSpec": "hfbatch.jobspec",
    "RetryPolicy": "hfbatch.retry",
    "RunReport": "hfbatch.runner",
    "ExitCode": "hfbatch.errors",
    "run_job": "hfbatch.runner",
    "calculate_length": "hfbatch.messages",
    "trim_messages": "hfbatch.messages",
    "HfbatchError": "hfbatch.errors",
    "APIError": "hfbatch.errors",
    "AuthenticationError": "hfbatch.errors",
    "PaymentRequiredError": "hfbatch.errors",
    "RateLimitError": "hfbatch.errors",
    "ModelNotSupportedError": "hfbatch.errors",
    "BadRequestError": "hfbatch.errors",
    "ServerError": "hfbatch.errors",
    "APITimeoutError": "hfbatch.errors",
    "TransportError": "hfbatch.errors",
    "MalformedResponseError": "hfbatch.errors",
    "UsageError": "hfbatch.errors",
}
__all__ = [
    "APIError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "ChatResult",
    "ExitCode",
    "HfbatchError",
    "HuggingFaceAPI",
    "JobSpec",
    "MalformedResponseError",
    "ModelNotSupportedError",
    "PaymentRequiredError",
    "ProviderMapping",
    "RateLimitError",
    "RetryPolicy",
    "RunReport",
    "ServerError",
    "TransportError",
    "UsageError",
    "__version__",
    "calculate_length",
    "run_job",
    "trim_messages",
]

if TYPE_CHECKING:
    from hfbatch.client import HuggingFaceAPI
    from hfbatch.errors import (
        APIError,
        APITimeoutError,
        AuthenticationError,
        BadRequestError,
        ExitCode,
        HfbatchError,
        MalformedResponseError,
        ModelNotSupportedError,
        PaymentRequiredError,
        RateLimitError,
        ServerError,
        TransportError,
        UsageError,
    )
    from hfbatch.hub import ProviderMapping
    from hfbatch.jobspec import JobSpec
    from hfbatch.messages import calculate_length, trim_messages
    from hfbatch.retry import RetryPolicy
    from hfbatch.runner import RunReport, run_job
    from hfbatch.wire import ChatResult


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from hfbatch.version import version

        return version()
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'hfbatch' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
