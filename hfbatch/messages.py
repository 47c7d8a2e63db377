"""Chat messages: their length, trimming to a budget, and image parts for vision models.

Which images may be sent, and reading them, is `hfbatch.media`'s business; here they are URLs.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from hfbatch import defaults

__all__ = ["Message", "attach_images", "calculate_length", "trim_messages"]

Message = dict[str, Any]


def _text_of(part: Any) -> str | None:
    """The text of a content part, or None for an image or anything else without text."""
    text = part.get("text") if isinstance(part, dict) else None
    return text if isinstance(text, str) else None


def _content_length(content: Any) -> int:
    if isinstance(content, str):
        return len(content)
    if isinstance(content, list):
        # Only text counts: an image's data URI says nothing about the prompt's size.
        return sum(len(t) for p in content if (t := _text_of(p)) is not None)
    return 0 if content is None else len(str(content))


def calculate_length(messages: Iterable[Message]) -> int:
    """A prompt's size as hfbatch measures it for trimming: characters of content plus 16 per message."""
    total = 0
    for m in messages:  # a loop, not sum() over a generator: this runs for every row
        total += _content_length(m.get("content")) + defaults.MESSAGE_OVERHEAD
    return total


def trim_messages(messages: Sequence[Message], max_input_length: int) -> list[Message]:
    """Fit a prompt into `max_input_length` (as `calculate_length` measures it).

    First the oldest messages are dropped, except system messages and the last message. If the
    prompt is still too long, the last message's text is cut to fit, keeping its start: a prompt
    usually says what to do before the material to do it on ("Summarise: {text}"), so the end is
    what can go. In a list of parts, images stay and text parts are cut in order. The result is
    over budget only when the other system messages alone leave no room; the last message's text
    is then empty. Returns a new list; the caller's list and messages are left as they were.
    """
    total = calculate_length(messages)
    if total <= max_input_length or not messages:
        return list(messages)
    last = len(messages) - 1
    keep = [True] * len(messages)
    for i, m in enumerate(messages):
        if total <= max_input_length:
            break
        if i == last or m.get("role") == "system":
            continue
        keep[i] = False
        total -= _content_length(m.get("content")) + defaults.MESSAGE_OVERHEAD
    out = [m for m, k in zip(messages, keep, strict=True) if k]
    if total > max_input_length:
        over = total - max_input_length
        out[-1] = _cut(out[-1], _content_length(out[-1].get("content")) - over)
    return out


def _cut(message: Message, keep: int) -> Message:
    """A copy of `message` whose text is its first `keep` characters (none if `keep` <= 0)."""
    keep = max(keep, 0)
    content = message.get("content")
    if content is None:
        return message
    if not isinstance(content, list):
        return {**message, "content": str(content)[:keep]}
    parts: list[Any] = []
    for part in content:
        text = _text_of(part)
        if text is None:
            parts.append(part)
        elif len(text) <= keep:
            parts.append(part)
            keep -= len(text)
        elif keep:
            parts.append({**part, "text": text[:keep]})
            keep = 0
    if not parts and content:
        # Every part was text and all of it went: one empty text part keeps the content a valid list.
        parts.append({**content[0], "text": ""})
    return {**message, "content": parts}


def attach_images(messages: Sequence[Message], urls: Sequence[str]) -> list[Message]:
    """Return messages whose last message carries `urls` as `image_url` parts, then its text."""
    out = list(messages)
    if not urls or not out:
        return out
    last = dict(out[-1])
    content = last.get("content")
    parts: list[Any] = [{"type": "image_url", "image_url": {"url": url}} for url in urls]
    if isinstance(content, list):
        parts.extend(content)
    elif content:
        parts.append({"type": "text", "text": str(content)})
    last["content"] = parts
    out[-1] = last
    return out
