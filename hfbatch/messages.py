"""Chat messages: their length, trimming to a budget, and image parts for vision models."""

from __future__ import annotations

import base64
import mimetypes
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from hfbatch import defaults
from hfbatch.errors import InputError

__all__ = ["MediaItem", "attach_media", "calculate_length", "media_url", "trim_messages"]

Message = dict[str, Any]
#: An image: a local path, raw bytes, an http(s) URL or a data URI; optionally with a file name.
MediaItem = str | Path | bytes | tuple[str | Path | bytes, str | None]

_MAGIC = (
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)


def _content_length(content: Any) -> int:
    if isinstance(content, str):
        return len(content)
    if isinstance(content, list):
        # Only text counts: an image's data URI says nothing about the prompt's size.
        return sum(len(p.get("text") or "") for p in content if isinstance(p, dict))
    return 0 if content is None else len(str(content))


def calculate_length(messages: Iterable[Message]) -> int:
    """A prompt's size as hfbatch measures it for trimming: characters of content plus 16 per message."""
    return sum(_content_length(m.get("content")) + defaults.MESSAGE_OVERHEAD for m in messages)


def trim_messages(messages: Sequence[Message], max_input_length: int) -> list[Message]:
    """Drop the oldest messages until the prompt fits `max_input_length`.

    System messages and the last message are always kept, and content is never cut,
    so the result may still exceed the budget when those alone do. Returns a new
    list; the caller's list and messages are left as they were.
    """
    total = calculate_length(messages)
    if total <= max_input_length or len(messages) <= 1:
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
    return [m for m, k in zip(messages, keep, strict=True) if k]


def _sniff_mime(data: bytes, name: str | None) -> str:
    for magic, mime in _MAGIC:
        if data.startswith(magic):
            return mime
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    guessed = mimetypes.guess_type(name)[0] if name else None
    return guessed or "application/octet-stream"


def media_url(item: MediaItem) -> str:
    """Turn one image into the URL an `image_url` part carries (a data URI for local data)."""
    name: str | None = None
    if isinstance(item, tuple):
        item, name = item
    if isinstance(item, bytes):
        data = item
    else:
        text = str(item)
        if text.startswith(("http://", "https://", "data:")):
            return text
        path = Path(text)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise InputError(f"image {text}: cannot read ({exc.strerror or exc})") from exc
        name = name or path.name
    encoded = base64.b64encode(data).decode("ascii")
    return f"data:{_sniff_mime(data, name)};base64,{encoded}"


def attach_media(messages: Sequence[Message], media: Sequence[MediaItem]) -> list[Message]:
    """Return messages whose last message carries the images as `image_url` parts, then its text."""
    out = list(messages)
    if not media or not out:
        return out
    last = dict(out[-1])
    content = last.get("content")
    parts: list[dict[str, Any]] = [{"type": "image_url", "image_url": {"url": media_url(m)}} for m in media]
    if isinstance(content, list):
        parts.extend(content)
    elif content:
        parts.append({"type": "text", "text": str(content)})
    last["content"] = parts
    out[-1] = last
    return out
