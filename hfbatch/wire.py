"""Reading chat-completion replies, whole or streamed; pure functions, no I/O."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from hfbatch.capacity.headers import RateHint
from hfbatch.errors import (
    APIError,
    BadRequestError,
    EmptyResponseError,
    InputError,
    MalformedResponseError,
    ServerError,
)
from hfbatch.json_codec import dumps_body, loads_reply
from hfbatch.sse import DONE

__all__ = ["ChatResult", "Choice", "StreamState", "check_not_empty", "encode_body", "parse_completion"]


@dataclass(slots=True)
class Choice:
    """One sampled answer of a reply: its text, why it ended, and the reasoning before it (if sent)."""

    text: str
    finish_reason: str | None
    reasoning: str | None = None


@dataclass(slots=True)
class ChatResult:
    """One finished chat completion and how it was obtained.

    `text`, `finish_reason` and `reasoning` are the first choice's; `choices` holds every choice
    when the reply had more than one. `raw` (the chat.completion body as sent, rebuilt for a
    stream) and `request_id` are kept only when the caller asks for them.
    """

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
    reasoning: str | None = None
    choices: tuple[Choice, ...] = ()
    raw: dict[str, Any] | None = None
    request_id: str | None = None
    #: A row's N samples when it asked for n > 1 (set by `hfbatch.samples`), else None.
    samples: tuple[Choice, ...] | None = None

    def all_choices(self) -> tuple[Choice, ...]:
        """Every choice of the reply, the first included."""
        return self.choices or (Choice(self.text, self.finish_reason, self.reasoning),)


def check_not_empty(result: ChatResult, allow_empty: bool) -> ChatResult:
    """The result, unless it has neither text nor reasoning and that is not allowed (EmptyResponseError)."""
    if not allow_empty and not result.text and not result.reasoning:
        raise EmptyResponseError(
            f"the reply has no text (finish_reason {result.finish_reason!r})", provider=result.provider, billed=result
        )
    return result


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


def _reasoning_of(message: dict[str, Any]) -> str | None:
    """The reasoning text a message or delta carries (`reasoning_content`, or `reasoning` as some servers name it)."""
    value = message.get("reasoning_content")
    if value is None:
        value = message.get("reasoning")
    return value if isinstance(value, str) and value else None


def _message_of(choice: Any, provider: str | None) -> dict[str, Any]:
    if not isinstance(choice, dict):
        raise MalformedResponseError("reply's choices are not a list of objects", provider=provider)
    message = choice.get("message")
    if not isinstance(message, dict):
        raise MalformedResponseError("reply's choice has no message", provider=provider)
    return message


def _choice_of(choice: Any, provider: str | None) -> Choice:
    message = _message_of(choice, provider)
    return Choice(_text_of(message.get("content")), choice.get("finish_reason"), _reasoning_of(message))


def parse_completion(raw: bytes, provider: str | None, model: str, *, keep_raw: bool = False) -> ChatResult:
    """Read a non-streamed reply; raise MalformedResponseError when it is not one.

    With `keep_raw`, the parsed body is kept as `raw`.
    """
    try:
        data = loads_reply(raw, exact=keep_raw)  # a body kept whole is read as json reads it
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
    result = ChatResult(
        text=_text_of(message.get("content")),
        finish_reason=choice.get("finish_reason"),
        prompt_tokens=_tokens(usage, "prompt_tokens"),
        completion_tokens=_tokens(usage, "completion_tokens"),
        provider=provider,
        model=model,
        reasoning=_reasoning_of(message) if "reasoning_content" in message or "reasoning" in message else None,
    )
    if len(choices) > 1:
        result.choices = tuple(_choice_of(c, provider) for c in choices)
    if keep_raw:
        result.raw = data
    return result


class _StreamChoice:
    """What the stream said about one choice: text and reasoning pieces, and (when kept) tool calls and logprobs."""

    __slots__ = ("finish_reason", "logprobs", "parts", "reasoning", "saw_content", "tool_calls")

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.reasoning: list[str] = []
        self.finish_reason: str | None = None
        self.saw_content = False
        self.tool_calls: dict[int, dict[str, Any]] = {}
        self.logprobs: list[Any] | None = None

    def keep(self, delta: dict[str, Any], choice: dict[str, Any]) -> None:
        """Merge the parts of a delta only the whole body keeps: tool-call pieces and logprobs."""
        if delta.get("content") is not None:
            self.saw_content = True
        for call in delta.get("tool_calls") or ():
            if not isinstance(call, dict):
                continue
            index = call.get("index", len(self.tool_calls))
            merged = self.tool_calls.setdefault(index, {"function": {"arguments": ""}})
            for key in ("id", "type"):
                if call.get(key) is not None:
                    merged[key] = call[key]
            function = call.get("function")
            if isinstance(function, dict):
                if function.get("name") is not None:
                    merged["function"]["name"] = function["name"]
                merged["function"]["arguments"] += function.get("arguments") or ""
        logprobs = choice.get("logprobs")
        if isinstance(logprobs, dict) and isinstance(logprobs.get("content"), list):
            self.logprobs = [*(self.logprobs or ()), *logprobs["content"]]

    def message(self, text: str) -> dict[str, Any]:
        """The whole message this choice's deltas make."""
        message: dict[str, Any] = {"role": "assistant", "content": text if text or self.saw_content else None}
        if self.reasoning:
            message["reasoning_content"] = "".join(self.reasoning)
        if self.tool_calls:
            message["tool_calls"] = [self.tool_calls[i] for i in sorted(self.tool_calls)]
        return message


class StreamState:
    """Accumulates a streamed reply one SSE payload at a time.

    `feed` returns the first choice's text; other choices (n > 1) are kept inside. With
    `keep_raw`, the whole chat.completion is rebuilt as the non-streamed reply would be.
    """

    __slots__ = (
        "_choices",
        "_first",
        "_keep",
        "_meta",
        "_usage",
        "completion_tokens",
        "done",
        "model",
        "prompt_tokens",
        "provider",
    )

    def __init__(self, provider: str | None, model: str, *, keep_raw: bool = False) -> None:
        self.provider = provider
        self.model = model
        self.prompt_tokens: int | None = None
        self.completion_tokens: int | None = None
        self.done = False
        self._first = _StreamChoice()
        self._choices: dict[int, _StreamChoice] = {0: self._first}
        self._keep = keep_raw
        self._meta: dict[str, Any] = {}
        self._usage: Any = None

    @property
    def finish_reason(self) -> str | None:
        """The first choice's finish reason, once a chunk named it."""
        return self._first.finish_reason

    def feed(self, payload: str) -> str:
        """Take one payload; return the text it adds to the first choice (may be empty)."""
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
            self._usage = usage
        if self._keep and not self._meta:
            self._meta = {k: data[k] for k in ("id", "created", "model", "system_fingerprint") if k in data}
        text = ""
        for choice in data.get("choices") or ():
            if not isinstance(choice, dict):
                continue
            index = choice.get("index")
            if index:  # another choice of a reply with n > 1: kept apart, not shown
                self._feed_other(index, choice)
                continue
            first = self._first
            delta = choice.get("delta") or choice.get("message") or {}
            if isinstance(delta, dict):
                text += _text_of(delta.get("content"))
                if "reasoning_content" in delta or "reasoning" in delta:
                    if (reasoning := _reasoning_of(delta)) is not None:
                        first.reasoning.append(reasoning)
                if self._keep:
                    first.keep(delta, choice)
            if choice.get("finish_reason"):
                first.finish_reason = choice["finish_reason"]
        return text

    def _feed_other(self, index: Any, choice: dict[str, Any]) -> None:
        """Take a chunk of a choice other than the first."""
        if type(index) is not int or index < 0:
            index = 0
        acc = self._choices.get(index)
        if acc is None:
            acc = self._choices[index] = _StreamChoice()
        delta = choice.get("delta") or choice.get("message") or {}
        if isinstance(delta, dict):
            if piece := _text_of(delta.get("content")):
                acc.parts.append(piece)
            if (reasoning := _reasoning_of(delta)) is not None:
                acc.reasoning.append(reasoning)
            if self._keep:
                acc.keep(delta, choice)
        if choice.get("finish_reason"):
            acc.finish_reason = choice["finish_reason"]

    def finish(self, text: str) -> ChatResult:
        """The result once the stream ended; a stream that never finished is malformed."""
        first = self._choices[0]
        # Some servers end without [DONE]; a finish reason is proof enough that nothing was cut.
        if not self.done and all(c.finish_reason is None for c in self._choices.values()):
            raise MalformedResponseError("stream ended before the reply finished", provider=self.provider)
        result = ChatResult(
            text=text,
            finish_reason=first.finish_reason,
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            provider=self.provider,
            model=self.model,
            reasoning="".join(first.reasoning) or None,
        )
        order = sorted(self._choices)
        texts = {i: text if i == 0 else "".join(self._choices[i].parts) for i in order}
        if len(order) > 1:
            result.choices = tuple(
                Choice(texts[i], self._choices[i].finish_reason, "".join(self._choices[i].reasoning) or None)
                for i in order
            )
        if self._keep:
            result.raw = self._body(order, texts)
        return result

    def _body(self, order: list[int], texts: dict[int, str]) -> dict[str, Any]:
        """The chat.completion the stream's chunks add up to."""
        body: dict[str, Any] = {
            "id": self._meta.get("id"),
            "object": "chat.completion",
            "created": self._meta.get("created"),
            "model": self._meta.get("model", self.model),
            "choices": [
                {
                    "index": i,
                    "message": self._choices[i].message(texts[i]),
                    "logprobs": None if self._choices[i].logprobs is None else {"content": self._choices[i].logprobs},
                    "finish_reason": self._choices[i].finish_reason,
                }
                for i in order
            ],
        }
        if "system_fingerprint" in self._meta:
            body["system_fingerprint"] = self._meta["system_fingerprint"]
        if self._usage is not None:
            body["usage"] = self._usage
        return body


def encode_body(body: dict[str, Any]) -> bytes:
    """The request body as UTF-8 JSON; InputError when the messages cannot be encoded at all."""
    try:
        return dumps_body(body)
    except RecursionError:
        raise InputError("the request is nested too deeply to be sent as JSON") from None
