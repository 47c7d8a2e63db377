"""Errors raised by hfbatch.

The tree::

    HfbatchError
    ├── UsageError                  bad flags, job file or input; nothing was sent
    │   ├── JobSpecError            a job file or flag is wrong (names the file and key)
    │   └── InputError              the input cannot be read (names the file, line or row)
    ├── LockedError                 another run holds the output's lock
    └── APIError                    a request failed; carries provider and HTTP status
        ├── AuthenticationError     401, or no token at all: stops a run
        ├── PaymentRequiredError    402: the provider's credits are exhausted
        ├── PermissionDeniedError   403: the token may not use this provider or model
        ├── ModelNotSupportedError  404, 400 `model_not_supported`, or no provider mapping
        ├── BadRequestError         400/422 and other 4xx: the request is wrong everywhere
        ├── RateLimitError          429, with `retry_after` when the server said
        ├── ServerError             5xx
        ├── APITimeoutError         the attempt's deadline or the stream's idle timeout passed
        ├── TransportError          connection refused, reset or dropped
        └── MalformedResponseError  a body that is not the protocol: bad JSON, truncated stream

The HTTP status decides the class (see `error_for_status`), never the body's wording,
with one exception the router documents: a 400 whose error code is `model_not_supported`.
aiohttp's own exceptions are translated in one place, `map_transport_errors`, and never
leave this package.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, ClassVar, Literal

__all__ = [
    "APIError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "HfbatchError",
    "InputError",
    "JobSpecError",
    "LockedError",
    "MalformedResponseError",
    "ModelNotSupportedError",
    "PaymentRequiredError",
    "PermissionDeniedError",
    "RateLimitError",
    "ServerError",
    "TransportError",
    "UsageError",
    "error_for_status",
    "map_transport_errors",
    "redact",
]

_MAX_BODY_IN_MESSAGE = 300
_REDACTED = "***"


class HfbatchError(Exception):
    """Base of every error hfbatch raises on purpose."""


class UsageError(HfbatchError):
    """The invocation, job file or input is wrong; fixing it is the user's move."""


class JobSpecError(UsageError):
    """A job file or flag is invalid; the message names the file and the key."""


class InputError(UsageError):
    """The input file cannot be read; the message names the file and where."""


class LockedError(HfbatchError):
    """Another hfbatch run holds the lock on this output."""

    def __init__(self, message: str, pid: int | None = None) -> None:
        super().__init__(message)
        self.pid = pid


class APIError(HfbatchError):
    """A request to a provider failed."""

    #: Short name used in stats and the errors file (`402`, `429`, `5xx`, `timeout`, ...).
    kind: ClassVar[str] = "error"

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
        super().__init__(self._render())

    def scrub(self, secrets: tuple[str, ...]) -> None:
        """Remove every secret from the message and the kept body, in place."""
        self.message = redact(self.message, secrets)
        if self.body is not None:
            self.body = redact(self.body, secrets)
        self.args = (self._render(),)

    def _render(self) -> str:
        where = f" from {self.provider}" if self.provider else ""
        code = f"HTTP {self.status}" if self.status is not None else self.kind
        return f"{code}{where}: {self.message}"


class AuthenticationError(APIError):
    """401 or a missing token: the token is wrong for every provider, so the run stops."""

    kind = "401"


class PaymentRequiredError(APIError):
    """402: the provider's credits are exhausted; it is skipped for the rest of the run."""

    kind = "402"


class PermissionDeniedError(APIError):
    """403: the token may not use this model on this provider; fail over."""

    kind = "4xx"


class ModelNotSupportedError(APIError):
    """The model is not served here: 404, 400 `model_not_supported`, or no live provider."""

    kind = "4xx"


class BadRequestError(APIError):
    """400/422 or another 4xx: the request itself is wrong, so it fails on every provider."""

    kind = "4xx"


class RateLimitError(APIError):
    """429: too many requests; `retry_after` holds the server's delay in seconds, if any."""

    kind = "429"

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: Any) -> None:
        self.retry_after = retry_after
        super().__init__(message, **kw)


class ServerError(APIError):
    """5xx: the provider failed; worth a retry."""

    kind = "5xx"


class APITimeoutError(APIError):
    """The attempt's deadline, or the stream's idle timeout, passed."""

    kind = "timeout"


class TransportError(APIError):
    """The connection could not be made or was dropped."""

    kind = "connection"


class MalformedResponseError(APIError):
    """The reply is not the protocol: invalid JSON, no choices, a stream cut short."""

    kind = "malformed"


def redact(text: str, secrets: Iterable[str]) -> str:
    """Return `text` with every secret (and its Bearer form) replaced by `***`."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, _REDACTED)
    return text


def _error_message(body: str) -> tuple[str, str | None]:
    """Return (message, error code) from an error body in any of the shapes servers use."""
    try:
        data = json.loads(body)
    except ValueError:
        text = " ".join(body.split())
        return (text[:_MAX_BODY_IN_MESSAGE] or "(empty body)"), None
    code: str | None = None
    message: Any = data
    if isinstance(data, dict):
        err = data.get("error", data.get("detail", data.get("message", data)))
        if isinstance(err, dict):
            raw_code = err.get("code")
            code = str(raw_code) if raw_code is not None else None
            message = err.get("message", err)
        else:
            message = err
    text = message if isinstance(message, str) else json.dumps(message)
    return text[:_MAX_BODY_IN_MESSAGE], code


def _parse_retry_after(headers: dict[str, str]) -> float | None:
    from hfbatch.retry import parse_retry_after

    return parse_retry_after(headers)


def error_for_status(
    status: int,
    body: str,
    *,
    provider: str | None,
    headers: dict[str, str] | None = None,
) -> APIError:
    """Build the error for an HTTP error reply; the status picks the class."""
    message, code = _error_message(body)
    kw: dict[str, Any] = {"provider": provider, "status": status, "body": body[:_MAX_BODY_IN_MESSAGE]}
    if status == 401:
        return AuthenticationError(message, **kw)
    if status == 402:
        return PaymentRequiredError(message, **kw)
    if status == 403:
        return PermissionDeniedError(message, **kw)
    if status == 404 or (status == 400 and code == "model_not_supported"):
        return ModelNotSupportedError(message, **kw)
    if status == 429:
        return RateLimitError(message, retry_after=_parse_retry_after(headers or {}), **kw)
    if status == 408:
        return APITimeoutError(message, **kw)
    if status >= 500:
        return ServerError(message, **kw)
    return BadRequestError(message, **kw)


class map_transport_errors:  # named as a function: it is used as one, `with map_transport_errors(p):`
    """Translate aiohttp and socket exceptions raised inside into hfbatch errors, and scrub `secrets`.

    A reply's content (an error body, a 200 that is not JSON, a stream chunk) may quote the
    token back, so every APIError leaving the block is scrubbed of the secrets given. A class,
    not a generator, because it wraps every request of a run.
    """

    __slots__ = ("provider", "secrets")

    def __init__(self, provider: str | None, secrets: tuple[str, ...] = ()) -> None:
        self.provider = provider
        self.secrets = secrets

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> Literal[False]:
        if exc is None:
            return False
        if isinstance(exc, APIError):
            if self.secrets:
                exc.scrub(self.secrets)
            return False
        mapped = _translate(exc, self.provider)
        if mapped is None:
            return False
        raise mapped from exc


def _translate(exc: BaseException, provider: str | None) -> APIError | None:
    """The hfbatch error for a transport-level exception, or None for anything else."""
    import aiohttp

    if isinstance(exc, TimeoutError):
        return APITimeoutError("no reply before the deadline", provider=provider)
    if isinstance(exc, aiohttp.ClientPayloadError):
        return MalformedResponseError(f"body cut short ({type(exc).__name__})", provider=provider)
    if isinstance(exc, aiohttp.ContentTypeError):
        return MalformedResponseError("unexpected content type", provider=provider)
    if isinstance(exc, aiohttp.InvalidURL):
        return TransportError(f"invalid URL {exc.url}", provider=provider)
    if isinstance(exc, aiohttp.ClientError | OSError):
        return TransportError(_transport_message(exc), provider=provider)
    return None


def _transport_message(exc: BaseException) -> str:
    import aiohttp

    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect to {exc.host}:{exc.port} ({exc.os_error.strerror or exc.os_error})"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "server closed the connection"
    name = type(exc).__name__
    # str() of a ClientResponseError holds no headers, but keep messages short anyway.
    detail = str(exc).splitlines()[0][:200] if str(exc) else ""
    return f"{name}: {detail}" if detail else name
