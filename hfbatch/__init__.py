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
    "HubClient": "hfbatch.hub",
    "JobSpec": "hfbatch.jobspec",
    "RetryPolicy": "hfbatch.retry",
    "RunReport": "hfbatch.runner",
    "RunControl": "hfbatch.runner",
    "run_job": "hfbatch.runner",
    "DryRunReport": "hfbatch.dryrun",
    "dry_run": "hfbatch.dryrun",
    "Price": "hfbatch.pricing",
    "calculate_length": "hfbatch.messages",
    "trim_messages": "hfbatch.messages",
    "APIError": "hfbatch.errors",
    "APITimeoutError": "hfbatch.errors",
    "AuthenticationError": "hfbatch.errors",
    "BadRequestError": "hfbatch.errors",
    "ExitCode": "hfbatch.errors",
    "FailureKind": "hfbatch.errors",
    "HfbatchError": "hfbatch.errors",
    "BudgetReached": "hfbatch.errors",
    "EmptyResponseError": "hfbatch.errors",
    "RunError": "hfbatch.errors",
    "InputError": "hfbatch.errors",
    "InvalidOutputError": "hfbatch.errors",
    "JobSpecError": "hfbatch.errors",
    "LockedError": "hfbatch.errors",
    "MalformedResponseError": "hfbatch.errors",
    "ModelNotSupportedError": "hfbatch.errors",
    "PaymentRequiredError": "hfbatch.errors",
    "PermissionDeniedError": "hfbatch.errors",
    "PushError": "hfbatch.errors",
    "RateLimitError": "hfbatch.errors",
    "SamplingNotSupportedError": "hfbatch.errors",
    "ServerError": "hfbatch.errors",
    "TransportError": "hfbatch.errors",
    "UsageError": "hfbatch.errors",
}
__all__ = [
    "APIError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "BudgetReached",
    "ChatResult",
    "DryRunReport",
    "EmptyResponseError",
    "ExitCode",
    "FailureKind",
    "HfbatchError",
    "HubClient",
    "HuggingFaceAPI",
    "InputError",
    "InvalidOutputError",
    "JobSpec",
    "JobSpecError",
    "LockedError",
    "MalformedResponseError",
    "ModelNotSupportedError",
    "PaymentRequiredError",
    "PermissionDeniedError",
    "Price",
    "ProviderMapping",
    "PushError",
    "RateLimitError",
    "RetryPolicy",
    "RunControl",
    "RunError",
    "RunReport",
    "SamplingNotSupportedError",
    "ServerError",
    "TransportError",
    "UsageError",
    "__version__",
    "calculate_length",
    "dry_run",
    "run_job",
    "trim_messages",
]

if TYPE_CHECKING:
    from hfbatch.client import HuggingFaceAPI
    from hfbatch.dryrun import DryRunReport, dry_run
    from hfbatch.errors import (
        APIError,
        APITimeoutError,
        AuthenticationError,
        BadRequestError,
        BudgetReached,
        EmptyResponseError,
        ExitCode,
        FailureKind,
        HfbatchError,
        InputError,
        InvalidOutputError,
        JobSpecError,
        LockedError,
        MalformedResponseError,
        ModelNotSupportedError,
        PaymentRequiredError,
        PermissionDeniedError,
        PushError,
        RateLimitError,
        RunError,
        SamplingNotSupportedError,
        ServerError,
        TransportError,
        UsageError,
    )
    from hfbatch.hub import HubClient, ProviderMapping
    from hfbatch.jobspec import JobSpec
    from hfbatch.messages import calculate_length, trim_messages
    from hfbatch.pricing import Price
    from hfbatch.retry import RetryPolicy
    from hfbatch.runner import RunControl, RunReport, run_job
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
