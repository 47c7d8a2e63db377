"""The simulated model: a deterministic reply computed from the request alone.

The reply never depends on the provider, so a test can check any row's output
whichever provider served it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["SimReply", "message_text", "reply_for"]

# Tokens each message costs on top of its words, as chat templates add role markers.
_MESSAGE_OVERHEAD_TOKENS = 4


@dataclass(frozen=True, slots=True)
class SimReply:
    """What the simulated model answers, and what it reports as usage."""

    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int

    @property
    def total_tokens(self) -> int:
        """Prompt plus completion tokens."""
        return self.prompt_tokens + self.completion_tokens

    @property
    def words(self) -> list[str]:
        """The reply split into the pieces a stream sends, one per chunk."""
        return self.text.split(" ") if self.text else []


def message_text(message: Any) -> tuple[str, int]:
    """Return (text, number of images) of one chat message, whatever its content shape."""
    if not isinstance(message, dict):
        return "", 0
    content = message.get("content")
    if isinstance(content, str):
        return content, 0
    if not isinstance(content, list):
        return "", 0
    texts: list[str] = []
    images = 0
    for part in content:
        if not isinstance(part, dict):
            continue
        if part.get("type") == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif part.get("type") == "image_url":
            images += 1
    return " ".join(texts), images


def _canonical_json(messages: Sequence[Any]) -> str:
    return json.dumps(list(messages), sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def reply_for(messages: Sequence[Any], max_tokens: int | None) -> SimReply:
    """The reply the simulated model gives to `messages`, cut to `max_tokens` words."""
    digest = hashlib.sha256(_canonical_json(messages).encode("utf-8")).hexdigest()[:12]
    last_text, n_images = message_text(messages[-1]) if messages else ("", 0)
    words = [f"echo-{digest}", *last_text.split()]
    if n_images:
        words.append(f"[images:{n_images}]")
    finish_reason = "stop"
    if max_tokens is not None and len(words) > max_tokens:
        words = words[: max(max_tokens, 0)]
        finish_reason = "length"
    prompt_tokens = sum(len(message_text(m)[0].split()) + _MESSAGE_OVERHEAD_TOKENS for m in messages)
    return SimReply(
        text=" ".join(words),
        finish_reason=finish_reason,
        prompt_tokens=prompt_tokens,
        completion_tokens=len(words),
    )
