"""The simulated model: a deterministic reply computed from the request alone.

The reply never depends on the provider, so a test can check any row's output
whichever provider served it. With `n` samples, sample 0 is the usual reply and sample i
marks its first word `echo-<digest>-<i>`; a reasoning provider thinks `reasoning_for` first.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["SimReply", "message_digest", "message_text", "reasoning_for", "reply_for"]

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


def message_digest(messages: Sequence[Any]) -> str:
    """12 hex digits that name a conversation."""
    return hashlib.sha256(_canonical_json(messages).encode("utf-8", "surrogatepass")).hexdigest()[:12]


def _tag(digest: str, sample: int) -> str:
    return digest if sample == 0 else f"{digest}-{sample}"


def reply_for(messages: Sequence[Any], max_tokens: int | None, sample: int = 0) -> SimReply:
    """The reply (sample `sample` of n) the simulated model gives to `messages`, cut to `max_tokens` words."""
    last_text, n_images = message_text(messages[-1]) if messages else ("", 0)
    words = [f"echo-{_tag(message_digest(messages), sample)}", *last_text.split()]
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


def reasoning_for(messages: Sequence[Any], sample: int = 0) -> str:
    """What a reasoning provider thinks before it answers sample `sample` (its `reasoning_content`)."""
    last_text, _ = message_text(messages[-1]) if messages else ("", 0)
    n_words = len(last_text.split())
    return f"think-{_tag(message_digest(messages), sample)} The user wrote {n_words} words; I echo them back."
