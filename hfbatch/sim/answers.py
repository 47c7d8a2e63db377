"""The simulated model's whole answer to a chat request: `n` choices, structured output, reasoning.

- `n` choices (at most the provider's `max_n`); choice i is `reply_for(..., sample=i)`.
- `response_format` `json_object` gives `{"reply": <the reply text>}`; `json_schema` gives a
  deterministic instance of the schema, seeded by the request's key and the choice index.
  A provider with `supports_structured_output = false` ignores `response_format`.
- A `reasoning` provider spends `reasoning_for(...)`'s words first (they count towards
  `max_tokens` and completion tokens); `reasoning_only` answers with content null and
  finish_reason "length", as a reasoning model that ran out of tokens does.
- Content pieces (one per stream chunk) are whitespace-led words, one token each.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass
from typing import Any

from hfbatch.sim.billing import request_key
from hfbatch.sim.config import SimProvider
from hfbatch.sim.replies import reasoning_for, reply_for
from hfbatch.sim.schema import instance_for, violate

__all__ = [
    "SimAnswer",
    "SimChoice",
    "answer_for",
    "broken_json",
    "emptied",
    "requested_n",
    "structured_format",
    "text_pieces",
    "with_surrogate",
]

# A lone low surrogate: valid in JSON as an escape, not encodable as UTF-8.
LONE_SURROGATE = "\udc80"
_PIECE = re.compile(r"\s*\S+|\s+")


@dataclass(frozen=True, slots=True)
class SimChoice:
    """One choice of an answer."""

    content: str | None
    reasoning: str | None
    finish_reason: str
    content_tokens: int
    reasoning_tokens: int = 0


@dataclass(frozen=True, slots=True)
class SimAnswer:
    """Every choice of an answer, and the usage it reports."""

    choices: tuple[SimChoice, ...]
    prompt_tokens: int
    reasoning: bool = False

    @property
    def completion_tokens(self) -> int:
        """Content and reasoning tokens of all choices."""
        return sum(c.content_tokens + c.reasoning_tokens for c in self.choices)

    @property
    def total_tokens(self) -> int:
        """Prompt plus completion tokens."""
        return self.prompt_tokens + self.completion_tokens

    def usage(self) -> dict[str, Any]:
        """The OpenAI `usage` object."""
        usage: dict[str, Any] = {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }
        if self.reasoning:
            usage["completion_tokens_details"] = {"reasoning_tokens": sum(c.reasoning_tokens for c in self.choices)}
        return usage


def text_pieces(text: str) -> list[str]:
    """`text` in stream-chunk pieces, each a word with the whitespace before it; they join back to `text`."""
    return _PIECE.findall(text)


def requested_n(body: dict[str, Any]) -> int:
    """The `n` a request asks for (1 when absent)."""
    n = body.get("n")
    return n if isinstance(n, int) and not isinstance(n, bool) and n >= 1 else 1


def structured_format(body: dict[str, Any], provider: SimProvider) -> dict[str, Any] | None:
    """The `response_format` the provider honours (json_object or json_schema), or None for plain text."""
    fmt = body.get("response_format")
    if not provider.supports_structured_output or not isinstance(fmt, dict):
        return None
    return fmt if fmt.get("type") in ("json_object", "json_schema") else None


def _schema(fmt: dict[str, Any]) -> Any:
    if fmt.get("type") == "json_schema":
        return fmt["json_schema"].get("schema", {})
    return {"type": "object"}


def _dump(value: Any) -> str:
    # Spaces after separators so the JSON streams in several pieces, as a model writes it.
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))


def _structured_value(fmt: dict[str, Any], body: dict[str, Any], sample: int) -> Any:
    if fmt.get("type") == "json_schema":
        return instance_for(_schema(fmt), f"{request_key(body)}:{sample}")
    return {"reply": reply_for(body["messages"], None, sample).text}


def _choice(body: dict[str, Any], provider: SimProvider, fmt: dict[str, Any] | None, sample: int) -> SimChoice:
    messages = body["messages"]
    budget = body.get("max_tokens")
    if budget is None:
        budget = body.get("max_completion_tokens")
    reasoning: str | None = None
    reasoning_tokens = 0
    if provider.reasoning or provider.reasoning_only:
        words = reasoning_for(messages, sample).split(" ")
        if budget is not None:
            words = words[:budget]
            budget -= len(words)
        reasoning, reasoning_tokens = " ".join(words), len(words)
    if provider.reasoning_only:
        return SimChoice(None, reasoning, "length", 0, reasoning_tokens)
    if fmt is None:
        reply = reply_for(messages, budget, sample)
        return SimChoice(reply.text, reasoning, reply.finish_reason, reply.completion_tokens, reasoning_tokens)
    pieces = text_pieces(_dump(_structured_value(fmt, body, sample)))
    finish_reason = "stop"
    if budget is not None and len(pieces) > budget:
        pieces, finish_reason = pieces[:budget], "length"
    return SimChoice("".join(pieces), reasoning, finish_reason, len(pieces), reasoning_tokens)


def answer_for(body: dict[str, Any], provider: SimProvider) -> SimAnswer:
    """What `provider` answers to a (checked) chat request body."""
    n = requested_n(body)
    if provider.max_n is not None:
        n = min(n, provider.max_n)
    fmt = structured_format(body, provider)
    choices = tuple(_choice(body, provider, fmt, i) for i in range(n))
    prompt_tokens = reply_for(body["messages"], None).prompt_tokens
    return SimAnswer(choices, prompt_tokens, reasoning=provider.reasoning or provider.reasoning_only)


def _with_content(answer: SimAnswer, contents: list[str | None], finish_reason: str | None = None) -> SimAnswer:
    choices = tuple(
        dataclasses.replace(
            c,
            content=text,
            content_tokens=len(text_pieces(text)) if text else 0,
            finish_reason=finish_reason or c.finish_reason,
        )
        for c, text in zip(answer.choices, contents, strict=True)
    )
    return dataclasses.replace(answer, choices=choices)


def emptied(answer: SimAnswer, *, null: bool) -> SimAnswer:
    """The `empty` fault: every choice's content "" (or null), finish_reason "stop"."""
    return _with_content(answer, [None if null else ""] * len(answer.choices), "stop")


def with_surrogate(answer: SimAnswer) -> SimAnswer:
    """The `surrogate` fault: a lone UTF-16 surrogate after each choice's content."""
    return _with_content(answer, [f"{c.content or ''} {LONE_SURROGATE}" for c in answer.choices])


def _not_json(text: str) -> str:
    """`text` cut mid-object so that no JSON parser accepts it."""
    cut = text[: max(1, len(text) // 2)] if text[:1] in "{[" else "{" + text
    while True:
        try:
            json.loads(cut)
        except ValueError:
            return cut
        cut += ","


def broken_json(answer: SimAnswer, body: dict[str, Any], provider: SimProvider, *, violation: bool) -> SimAnswer:
    """The `invalid_json` fault: content not JSON at all, or (`violation`) JSON the schema rejects.

    A request without a response_format the provider honours is answered as usual.
    """
    fmt = structured_format(body, provider)
    if fmt is None:
        return answer
    contents: list[str | None] = []
    for i in range(len(answer.choices)):
        value = _structured_value(fmt, body, i)
        contents.append(_dump(violate(value, _schema(fmt))) if violation else _not_json(_dump(value)))
    return _with_content(answer, contents, "stop")
