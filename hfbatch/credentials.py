"""Where the token comes from, where it may go, and what looks like one.

The token is read from an environment variable, never from a job file or a flag. With
`--api-key-env NAME`, only NAME is read; without it, the Hugging Face token is looked
for as huggingface_hub does (HF_TOKEN, HUGGING_FACE_HUB_TOKEN, then $HF_HOME/token),
and it is sent only to Hugging Face hosts, or to a server the user pointed a Hub URL at
(asking for Hugging Face semantics there). Credentials written into a URL are refused:
they would end up in labels, stats and messages.
"""

from __future__ import annotations

import os
import re
import urllib.parse
from pathlib import Path

from hfbatch import defaults
from hfbatch.errors import JobSpecError

__all__ = [
    "HF_TOKEN_SHAPE",
    "check_url",
    "is_hf_host",
    "looks_like_token",
    "resolve_token",
    "token_for",
    "token_hint",
    "url_label",
]

#: Text shaped like a Hugging Face token: masked in every message, refused in job files.
HF_TOKEN_SHAPE = re.compile(r"hf_\w{8,}")
_HF_DOMAINS = ("huggingface.co", "hf.co")


def looks_like_token(text: str) -> bool:
    """True when `text` holds something shaped like a Hugging Face token."""
    return "hf_" in text and HF_TOKEN_SHAPE.search(text) is not None


def _token_file() -> Path:
    hf_home = os.environ.get("HF_HOME")
    base = Path(hf_home) if hf_home else Path.home() / ".cache" / "huggingface"
    return base / "token"


def resolve_token(api_key_env: str | None = None) -> str | None:
    """The token from `api_key_env` alone when it is named; else HF_TOKEN, HUGGING_FACE_HUB_TOKEN, $HF_HOME/token."""
    if api_key_env:
        return os.environ.get(api_key_env, "").strip() or None
    for name in defaults.FALLBACK_TOKEN_ENVS:
        value = os.environ.get(name, "").strip()
        if value:
            return value
    try:
        value = _token_file().read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return value or None


def is_hf_host(url: str) -> bool:
    """True when `url` is on a Hugging Face domain (the router, the Hub, their subdomains)."""
    host = (urllib.parse.urlsplit(url).hostname or "").lower()
    return any(host == d or host.endswith("." + d) for d in _HF_DOMAINS)


def token_for(api_base: str, hub_url: str | None, api_key_env: str | None) -> str | None:
    """The token to send to `api_base`: the named variable's, else the HF token where it belongs."""
    if api_key_env:
        return resolve_token(api_key_env)
    if is_hf_host(api_base) or hub_url is not None:
        return resolve_token(None)
    # A foreign OpenAI-compatible server gets no Hugging Face token unless the user names a variable.
    return None


def token_hint(api_key_env: str | None = None) -> str:
    """How to give a token, for error messages."""
    name = api_key_env or defaults.DEFAULT_API_KEY_ENV
    return f"set {name} to a Hugging Face token with the 'Inference Providers' permission"


def url_label(url: str) -> str:
    """A URL's host and port, for stats and messages: never any credentials written into it."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    return f"{host}:{port}" if port else host or "server"


def check_url(url: str, where: str) -> str:
    """Return `url` if it is an http(s) URL without credentials in it; JobSpecError naming `where` if not."""
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        raise JobSpecError(f"{where}: not a valid URL; write it like https://host/v1") from None
    if parts.username is not None or parts.password is not None:
        shown = parts._replace(netloc="***@" + url_label(url)).geturl()
        raise JobSpecError(
            f"{where}: {shown}: credentials in the URL are not supported (they would be written to stats and "
            "logs); put the key in an environment variable and name it with --api-key-env"
        )
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise JobSpecError(f"{where}: {url!r} is not an http(s) URL; write it like https://host/v1")
    return url
