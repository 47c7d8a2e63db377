"""Where the token comes from: an environment variable, never a file the user passes around."""

from __future__ import annotations

import os
from pathlib import Path

from hfbatch import defaults

__all__ = ["resolve_token", "token_hint"]


def _token_file() -> Path:
    hf_home = os.environ.get("HF_HOME")
    base = Path(hf_home) if hf_home else Path.home() / ".cache" / "huggingface"
    return base / "token"


def resolve_token(api_key_env: str = defaults.DEFAULT_API_KEY_ENV) -> str | None:
    """The token from `api_key_env`, then HF_TOKEN, HUGGING_FACE_HUB_TOKEN, then $HF_HOME/token."""
    for name in (api_key_env, *defaults.FALLBACK_TOKEN_ENVS):
        value = os.environ.get(name, "").strip()
        if value:
            return value
    try:
        value = _token_file().read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return value or None


def token_hint(api_key_env: str = defaults.DEFAULT_API_KEY_ENV) -> str:
    """How to give a token, for error messages."""
    return f"set {api_key_env} to a Hugging Face token with the 'Inference Providers' permission"
