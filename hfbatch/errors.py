"""Errors raised by hfbatch, the exit code each one means, and the failure kinds stats count.

The tree::

    HfbatchError                    exit 1
    ├── UsageError                  exit 2: bad flags, job file or input; nothing was sent
    │   ├── JobSpecError            a job file or flag is wrong (names the file and key)
    │   └── InputError              the input cannot be read (names the file, line or row)
    ├── LockedError                 exit 4: another run holds the output's lock
    ├── BudgetReached               exit 5: the next request would pass a budget cap
    ├── RunError                    exit 6: a failure outside the rows stopped a run (Hub, disk)
    ├── PushError                   exit 7: the results are complete locally, but the push to the Hub failed
    └── APIError                    exit 1: a request failed; carries provider and HTTP status
        ├── AuthenticationError     exit 3: 401, or no token at all: stops a run
        ├── PaymentRequiredError    402: the provider's credits are exhausted
        ├── PermissionDeniedError   403: the token may not use this provider or model
        ├── ModelNotSupportedError  404, 400 `model_not_supported`, or no provider mapping
        ├── BadRequestError         400/422 and other 4xx: the request is wrong everywhere
        │   └── SamplingNotSupportedError  400 to `n` > 1: ask that provider one sample at a time
        ├── RateLimitError          429, with `retry_after` when the server said
        ├── ServerError             5xx
        ├── APITimeoutError         the attempt's deadline or the stream's idle timeout passed
        ├── TransportError          connection refused, reset or dropped
        ├── MalformedResponseError  a body that is not the protocol: bad JSON, truncated stream
        ├── EmptyResponseError      a whole reply with no text in it
        └── InvalidOutputError      a reply that is not the JSON its response_format asked for

This module imports nothing from hfbatch: every other module may import it. Building
these errors from HTTP replies and aiohttp exceptions is `hfbatch.http_errors`' job.
"""

from __future__ import annotations

import enum
from typing import Any, ClassVar

__all__ = [
    "APIError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "BudgetReached",
    "EmptyResponseError",
    "ExitCode",
    "FailureKind",
    "HfbatchError",
    "InputError",
    "InvalidOutputError",
    "JobSpecError",
    "LockedError",
    "MalformedResponseError",
    "ModelNotSupportedError",
    "PaymentRequiredError",
    "PermissionDeniedError",
    "PushError",
    "RateLimitError",
    "RunError",
    "SamplingNotSupportedError",
    "ServerError",
    "TransportError",
    "UsageError",
]


class ExitCode(enum.IntEnum):
    """The process exit codes of hfbatch (the README's table)."""

    OK = 0  # every row is in the output
    FAILED_ROWS = 1  # the run finished; some rows are in the errors file (or an error stopped it)
    USAGE = 2  # bad flags, job file or input; nothing was sent
    AUTH = 3  # the token is missing or was refused (401)
    LOCKED = 4  # another run holds the output's lock
    BUDGET = 5  # --max-cost, --max-requests or --max-tokens-total reached; rerun with a larger budget
    ERROR = 6  # a failure outside the rows (the Hub, the disk, a bug) stopped the run; rerun to resume
    PUSH_FAILED = 7  # the run completed and its output is intact locally, but the push to the Hub failed
    INTERRUPTED = 130  # stopped by Ctrl-C or SIGTERM; rerun to resume


class FailureKind(enum.StrEnum):
    """How a failed attempt or row is counted in stats and named in the errors file."""

    AUTH = "401"
    PAYMENT = "402"
    RATE_LIMIT = "429"
    CLIENT = "4xx"
    SERVER = "5xx"
    TIMEOUT = "timeout"
    CONNECTION = "connection"
    MALFORMED = "malformed"
    EMPTY = "empty"
    INVALID_OUTPUT = "invalid_output"  # not the JSON the response_format asked for
    INPUT = "input"  # a bad input row; never an attempt

    @property
    def transient(self) -> bool:
        """True for failures another attempt may not repeat (they trip the circuit breaker)."""
        return self in _TRANSIENT


_TRANSIENT = frozenset(
    {
        FailureKind.SERVER,
        FailureKind.TIMEOUT,
        FailureKind.CONNECTION,
        FailureKind.MALFORMED,
        FailureKind.EMPTY,
        FailureKind.INVALID_OUTPUT,
    }
)
#: The kinds a provider's attempts are counted under, in the stats file's order.
ATTEMPT_KINDS = tuple(k for k in FailureKind if k is not FailureKind.INPUT)


class HfbatchError(Exception):
    """Base of every error hfbatch raises on purpose."""

    exit_code: ClassVar[ExitCode] = ExitCode.FAILED_ROWS


class UsageError(HfbatchError):
    """The invocation, job file or input is wrong; fixing it is the user's move."""

    exit_code = ExitCode.USAGE


class JobSpecError(UsageError):
    """A job file or flag is invalid; the message names the file and the key."""


class InputError(UsageError):
    """The input file cannot be read; the message names the file and where."""


class LockedError(HfbatchError):
    """Another hfbatch run holds the lock on this output."""

    exit_code = ExitCode.LOCKED

    def __init__(self, message: str, pid: int | None = None) -> None:
        super().__init__(message)
        self.pid = pid


class BudgetReached(HfbatchError):
    """The next request would pass --max-cost, --max-requests or --max-tokens-total: the run stops admitting."""

    exit_code = ExitCode.BUDGET


class RunError(HfbatchError):
    """A failure that is not about any row (the Hub, the disk) stopped a run; what was done is saved."""

    exit_code = ExitCode.ERROR


class PushError(HfbatchError):
    """The push of an output to a Hub dataset repo failed; the local output is intact, and a rerun pushes it."""

    exit_code = ExitCode.PUSH_FAILED


class APIError(HfbatchError):
    """A request to a provider failed."""

    #: How stats and the errors file count this failure.
    kind: ClassVar[FailureKind] = FailureKind.SERVER

    def __init__(
        self,
        message: str,
        *,
        provider: str | None = None,
        status: int | None = None,
        body: str | None = None,
    ) -> None:
        self.provider = provider
        self.status = status
        self.body = body
        self.message = message
        #: Attempts made for the request when it finally failed (set by the fail-over loop).
        self.attempts = 1
        #: The `hfbatch.wire.ChatResult` of a whole 2xx reply that still failed the row (an empty reply):
        #: the provider billed it, so its usage counts in the cost. None for every other failure.
        self.billed: object | None = None
        super().__init__(self._render())

    def rewrite(self, message: str, body: str | None = None) -> None:
        """Replace the message (and kept body) in place, as scrubbing a secret does."""
        self.message = message
        self.body = body
        self.args = (self._render(),)

    def _render(self) -> str:
        where = f" from {self.provider}" if self.provider else ""
        code = f"HTTP {self.status}" if self.status is not None else self.kind.value
        return f"{code}{where}: {self.message}"


class AuthenticationError(APIError):
    """401 or a missing token: the token is wrong for every provider, so the run stops."""

    kind = FailureKind.AUTH
    exit_code = ExitCode.AUTH


class PaymentRequiredError(APIError):
    """402: the provider's credits are exhausted; it is skipped for the rest of the run."""

    kind = FailureKind.PAYMENT


class PermissionDeniedError(APIError):
    """403: the token may not use this model on this provider; fail over."""

    kind = FailureKind.CLIENT


class ModelNotSupportedError(APIError):
    """The model is not served here: 404, 400 `model_not_supported`, or no live provider."""

    kind = FailureKind.CLIENT


class BadRequestError(APIError):
    """400/422 or another 4xx: the request itself is wrong, so it fails on every provider."""

    kind = FailureKind.CLIENT


class SamplingNotSupportedError(BadRequestError):
    """A 400 refusing `n` > 1: that provider is asked again at once, for one sample per request."""


class RateLimitError(APIError):
    """429: too many requests; `retry_after` holds the server's delay in seconds, if any."""

    kind = FailureKind.RATE_LIMIT

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: Any) -> None:
        self.retry_after = retry_after
        #: The reply's rate-limit headers as a `hfbatch.capacity.RateHint`, when it had any.
        self.hint: Any = None
        super().__init__(message, **kw)


class ServerError(APIError):
    """5xx: the provider failed; worth a retry."""

    kind = FailureKind.SERVER


class APITimeoutError(APIError):
    """The attempt's deadline, or the stream's idle timeout, passed."""

    kind = FailureKind.TIMEOUT


class TransportError(APIError):
    """The connection could not be made or was dropped."""

    kind = FailureKind.CONNECTION


class MalformedResponseError(APIError):
    """The reply is not the protocol: invalid JSON, no choices, a stream cut short."""

    kind = FailureKind.MALFORMED


class EmptyResponseError(APIError):
    """A whole reply whose text is empty (content null or ""): retried unless empty results are allowed."""

    kind = FailureKind.EMPTY

    def __init__(self, message: str, *, billed: Any = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        #: The reply (a `ChatResult`): it was whole, so it was billed.
        self.billed = billed


class InvalidOutputError(APIError):
    """A whole reply that does not parse as JSON or breaks the schema asked for: retried like a 5xx.

    The reply was billed: `billed` holds it (a `ChatResult`), so cost accounting can count it.
    """

    kind = FailureKind.INVALID_OUTPUT

    def __init__(self, message: str, *, billed: Any = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.billed = billed
