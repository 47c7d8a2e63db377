"""Reading chat-completion replies, whole or streamed; pure functions, no I/O."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from hfbatch.capacity.headers import RateHint
from hfbatch.errors import APIError, BadRequestError, MalformedResponseError, ServerError
from hfbatch.sse import DONE

__all__ = ["ChatResult", "StreamState", "parse_completion"]


@dataclass(slots=True)
class ChatResult:
    """One finished chat completion and how it was obtained."""

    text: str
    finish_reason: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    provider: str | None
    model: str
    attempts: int = 1
    latency: float = 0.0
    #: What the reply's rate-limit headers said, when it had any (the scheduler paces by it).
    hint: RateHint | None = None


def _error_in_body(data: dict[str, Any], provider: str | None) -> APIError:
    """An error sent with status 200 or inside a stream (TGI does both)."""
    err = data.get("error")
    message = err.get("message", err) if isinstance(err, dict) else err
    text = message if isinstance(message, str) else json.dumps(message)
    if data.get("error_type") == "validation":
        return BadRequestError(text, provider=provider)
    return ServerError(text, provider=provider)


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text") or "" for p in content if isinstance(p, dict))
    return ""


def _tokens(usage: Any, key: str) -> int | None:
    if isinstance(usage, dict):
        value = usage.get(key)
        if isinstance(value, int):
            return value
    return None


def parse_completion(raw: bytes, provider: str | None, model: str) -> ChatResult:
    """Read a non-streamed reply; raise MalformedResponseError when it is not one."""
    try:
        data = json.loads(raw)
    except RecursionError:
        raise MalformedResponseError("reply is JSON nested too deeply to read", provider=provider) from None
    except ValueError:
        # The whole reply goes into the message: the caller's map_transport_errors scrubs it, then cuts it.
        raise MalformedResponseError(
            f"reply is not JSON: {raw.decode('utf-8', 'replace')!r}", provider=provider
        ) from None
    if not isinstance(data, dict):
        raise MalformedResponseError("reply is not a JSON object", provider=provider)
    choices = data.get("choices")
    if not choices:
        if "error" in data:
            raise _error_in_body(data, provider)
        raise MalformedResponseError("reply has no choices", provider=provider)
    choice = choices[0] if isinstance(choices, list) else None
    if not isinstance(choice, dict):
        raise MalformedResponseError("reply's choices are not a list of objects", provider=provider)
    message = choice.get("message")
    if not isinstance(message, dict):
        raise MalformedResponseError("reply's choice has no message", provider=provider)
    usage = data.get("usage")
    return ChatResult(
        text=_text_of(message.get("content")),
        finish_reason=choice.get("finish_reason"),
        prompt_tokens=_tokens(usage, "prompt_tokens"),
        completion_tokens=_tokens(usage, "completion_tokens"),
        provider=provider,
        model=model,
    )


class StreamState:
    """Accumulates a streamed reply one SSE payload at a time."""

    __slots__ = ("completion_tokens", "done", "finish_reason", "model", "prompt_tokens", "provider")

    def __init__(self, provider: str | None, model: str) -> None:
        self.provider = provider
        self.model = model
        self.finish_reason: str | None = None
        self.prompt_tokens: int | None = None
        self.completion_tokens: int | None = None
        self.done = False

    def feed(self, payload: str) -> str:
        """Take one payload; return the text it adds (may be empty)."""
        if payload == DONE:
            self.done = True
            return ""
        try:
            data = json.loads(payload)
        except RecursionError:
            raise MalformedResponseError("stream chunk is JSON nested too deeply", provider=self.provider) from None
        except ValueError:
            raise MalformedResponseError(f"stream chunk is not JSON: {payload!r}", provider=self.provider) from None
        if not isinstance(data, dict):
            raise MalformedResponseError("stream chunk is not a JSON object", provider=self.provider)
        if "error" in data and not data.get("choices"):
            raise _error_in_body(data, self.provider)
        usage = data.get("usage")
        if usage:
            self.prompt_tokens = _tokens(usage, "prompt_tokens")
            self.completion_tokens = _tokens(usage, "completion_tokens")
        text = ""
        for choice in data.get("choices") or ():
            if not isinstance(choice, dict):
                continue
            delta = choice.get("delta") or choice.get("message") or {}
            if isinstance(delta, dict):
                text += _text_of(delta.get("content"))
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
        return text

    def finish(self, text: str) -> ChatResult:
        """The result once the stream ended; a stream that never finished is malformed."""
        # Some servers end without [DONE]; a finish reason is proof enough that nothing was cut.
        if not self.done and self.finish_reason is None:
            raise MalformedResponseError("stream ended before the reply finished", provider=self.provider)
        return ChatResult(
            text=text,
            finish_reason=self.finish_reason,
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            provider=self.provider,
            model=self.model,
        )
