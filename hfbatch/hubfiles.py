"""Hub dataset repos through `huggingface_hub`: the optional import, the endpoint and token, and its errors.

huggingface_hub is an optional extra (`pip install 'hfbatch[hub]'`): nothing imports it until an
`hf://` input or a push needs it, and `require_hub` says how to install it, before any request,
when it is missing. The library reads HF_ENDPOINT once, when it is imported, so every client made
here is given the endpoint explicitly. It is synchronous: async code calls it through
`asyncio.to_thread`. Its errors are described here (`describe_hub_error`) in the words hfbatch uses,
with the token redacted; the callers choose the hfbatch error class (an input's, or a push's).
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from typing import Any

from hfbatch import defaults
from hfbatch.credentials import resolve_token, token_hint
from hfbatch.errors import UsageError
from hfbatch.http_errors import redact, shorten

__all__ = ["INSTALL_HINT", "HubAccess", "HubProblem", "describe_hub_error", "hub_errors", "require_hub"]

INSTALL_HINT = "pip install 'hfbatch[hub]'"
_MAX_DETAIL = 300


def require_hub(what: str) -> None:
    """UsageError saying how to install huggingface_hub when `what` needs it and it is missing."""
    try:
        importlib.import_module("huggingface_hub")
    except ImportError:
        raise UsageError(
            f"{what} needs huggingface_hub, which is not installed; install it with: {INSTALL_HINT} (nothing was sent)"
        ) from None


@dataclass(frozen=True, slots=True)
class HubAccess:
    """Where the Hub is and the token it gets (the same rules as every other request of hfbatch)."""

    endpoint: str
    token: str | None = field(repr=False)
    api_key_env: str | None = None

    @classmethod
    def of(cls, hub_url: str | None, api_key_env: str | None) -> HubAccess:
        """The Hub of `--hub-url` (else HF_ENDPOINT, else huggingface.co) and the token from the environment."""
        endpoint = hub_url or os.environ.get("HF_ENDPOINT") or defaults.DEFAULT_HUB_URL
        return cls(endpoint.rstrip("/"), resolve_token(api_key_env), api_key_env)

    @property
    def _token(self) -> str | bool:
        # False, not None: huggingface_hub would otherwise look for a token of its own.
        return self.token or False

    def api(self) -> Any:
        """An `HfApi` on this Hub with this token."""
        from huggingface_hub import HfApi

        from hfbatch.version import version

        return HfApi(endpoint=self.endpoint, token=self._token, library_name="hfbatch", library_version=version())

    def fs(self) -> Any:
        """A fresh `HfFileSystem` on this Hub with this token (never one cached for another endpoint)."""
        from huggingface_hub import HfFileSystem

        return HfFileSystem(endpoint=self.endpoint, token=self._token, skip_instance_cache=True)

    def token_hint(self) -> str:
        """How to give a token that reaches this Hub, for messages."""
        return token_hint(self.api_key_env)


@dataclass(frozen=True, slots=True)
class HubProblem:
    """What went wrong talking to the Hub: `kind` says whose move it is."""

    #: "missing" (repo, revision or file), "gated", "auth" (401), "forbidden" (403), "unavailable" (5xx,
    #: unreachable), or "refused" (another 4xx).
    kind: str
    status: int | None
    detail: str


def hub_errors() -> tuple[type[BaseException], ...]:
    """The exception classes huggingface_hub raises for a failed request (its own, and its HTTP client's)."""
    found: list[type[BaseException]] = []
    for name in ("huggingface_hub.errors", "httpx2", "httpx"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        found.append(module.HfHubHTTPError if name == "huggingface_hub.errors" else module.HTTPError)
    return tuple(found)


def describe_hub_error(exc: BaseException, access: HubAccess) -> HubProblem:
    """Say what a huggingface_hub error means, in one line without the token."""
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        RemoteEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    response = getattr(exc, "response", None) if isinstance(exc, HfHubHTTPError) else None
    status: int | None = getattr(response, "status_code", None)
    secrets = (access.token,) if access.token else ()
    text = getattr(exc, "server_message", None) or (str(exc).splitlines() or [""])[0] or type(exc).__name__
    detail = shorten(redact(" ".join(text.split()), secrets), _MAX_DETAIL)
    if status is not None:
        detail = f"HTTP {status}: {detail}"
    if isinstance(exc, GatedRepoError):
        return HubProblem("gated", status, f"the dataset is gated ({detail})")
    if isinstance(exc, RepositoryNotFoundError):
        return HubProblem("missing", status, f"no such dataset repo, or the token cannot see it ({detail})")
    if isinstance(exc, RevisionNotFoundError):
        return HubProblem("missing", status, f"no such revision ({detail})")
    if isinstance(exc, RemoteEntryNotFoundError | FileNotFoundError):
        return HubProblem("missing", status, f"no such file ({detail})")
    if not isinstance(exc, HfHubHTTPError):
        # The HTTP client's own errors: the Hub could not be reached, or the connection dropped.
        return HubProblem("unavailable", None, f"{type(exc).__name__}: {detail}")
    if status == 401:
        return HubProblem("auth", status, detail)
    if status == 403:
        return HubProblem("forbidden", status, detail)
    if status is None or status >= 500 or status == 429:
        return HubProblem("unavailable", status, detail)
    return HubProblem("refused", status, detail)
