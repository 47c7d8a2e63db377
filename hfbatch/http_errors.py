"""From HTTP replies and transport failures to hfbatch errors, with every secret scrubbed.

The HTTP status decides the error's class (`error_for_status`), never the body's wording,
with one exception the router documents: a 400 whose error code is `model_not_supported`.
aiohttp's own exceptions are translated here, in `map_transport_errors`, and nowhere else;
`parse_retry_after` reads the server's requested delay.
"""

from __future__ import annotations

import email.utils
import json
import math
import time
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from hfbatch.credentials import HF_TOKEN_SHAPE
from hfbatch.errors import (
    APIError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    MalformedResponseError,
    ModelNotSupportedError,
    PaymentRequiredError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    TransportError,
)

__all__ = ["error_for_status", "map_transport_errors", "parse_retry_after", "redact", "scrub", "shorten"]

# Messages and kept bodies are cut to these lengths only after every secret is gone from them:
# a cut first could split the token and leave all but its last characters.
MAX_MESSAGE = 300
MAX_BODY = 300
_REDACTED = "***"


def parse_retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Return the server's requested delay in seconds, or None when absent or unusable.

    Reads `retry-after-ms`, then `Retry-After` as delta-seconds or an HTTP date.
    """
    lower = {k.lower(): v for k, v in headers.items()}
    raw_ms = lower.get("retry-after-ms")
    if raw_ms is not None:
        try:
            ms = float(raw_ms)
        except ValueError:
            ms = math.nan
        if math.isfinite(ms) and ms >= 0:
            return ms / 1000.0
    raw = lower.get("retry-after")
    if raw is None:
        return None
    raw = raw.strip()
    try:
        seconds = float(raw)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(raw)
        except (TypeError, ValueError, IndexError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
        return max(0.0, seconds)
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return seconds


def redact(text: str, secrets: Iterable[str]) -> str:
    """Return `text` with every secret, and anything shaped like an HF token, replaced by `***`."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, _REDACTED)
    # Anything shaped like a Hugging Face token goes too, whoever's it is.
    return HF_TOKEN_SHAPE.sub("hf_" + _REDACTED, text) if "hf_" in text else text


def shorten(text: str, limit: int) -> str:
    """Cut `text` to `limit` characters, marking the cut."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def scrub(error: APIError, secrets: Iterable[str]) -> None:
    """Remove every secret from an error's message and kept body, then cut them to length, in place."""
    secrets = tuple(secrets)
    body = shorten(redact(error.body, secrets), MAX_BODY) if error.body is not None else None
    error.rewrite(shorten(redact(error.message, secrets), MAX_MESSAGE), body)


def _error_message(body: str) -> tuple[str, str | None]:
    """Return (message, error code) from an error body in any of the shapes servers use."""
    try:
        data = json.loads(body)
    except ValueError:
        text = " ".join(body.split())
        return (text or "(empty body)"), None
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
    return text, code


def error_for_status(
    status: int,
    body: str,
    *,
    provider: str | None,
    headers: dict[str, str] | None = None,
    secrets: Iterable[str] = (),
) -> APIError:
    """Build the error for an HTTP error reply; the status picks the class.

    Every secret (and anything shaped like a token) is removed from the message and the kept
    body before they are cut to length.
    """
    error = _error_class(status, body, provider=provider, headers=headers)
    scrub(error, secrets)
    return error


def _error_class(status: int, body: str, *, provider: str | None, headers: dict[str, str] | None) -> APIError:
    message, code = _error_message(body)
    kw: dict[str, Any] = {"provider": provider, "status": status, "body": body}
    if status == 401:
        return AuthenticationError(message, **kw)
    if status == 402:
        return PaymentRequiredError(message, **kw)
    if status == 403:
        return PermissionDeniedError(message, **kw)
    if status == 404 or (status == 400 and code == "model_not_supported"):
        return ModelNotSupportedError(message, **kw)
    if status == 429:
        return RateLimitError(message, retry_after=parse_retry_after(headers or {}), **kw)
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
            scrub(exc, self.secrets)
            return False
        mapped = _translate(exc, self.provider)
        if mapped is None:
            return False
        scrub(mapped, self.secrets)
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
    detail = str(exc).splitlines()[0] if str(exc) else ""
    return f"{name}: {detail}" if detail else name
