"""The shape of what a run writes: one result record per finished row, one error record per failed row.

Formats encode these dicts (`jsonl.py`, `parquet.py`, `openai.py`); records start with the row id,
which the JSONL resume scan relies on. A result record holds, in this order:

| field | when |
| --- | --- |
| `id`, `output`, `finish_reason` | always (`outputs`, `finish_reasons`: lists, when the row asked for n > 1) |
| `prompt_tokens`, `completion_tokens`, `provider`, `model`, `attempts`, `latency_s` | always |
| `reasoning` (`reasonings` with n > 1) | when the reply carried reasoning text |
| `prompt` (one user message) or `messages` (anything else) | with `--keep-prompt` |
| `response` (the chat.completion object), `request_id` | with `--keep-response` (and for OpenAI batch output) |
| the kept input columns | with `--keep-columns` |
"""

from __future__ import annotations

from typing import Any

from hfbatch.errors import APIError, FailureKind
from hfbatch.outputs.journal import dumps
from hfbatch.wire import ChatResult

__all__ = ["check_writable", "error_record", "prompt_fields", "result_record"]


def result_record(
    row_id: str | int,
    result: ChatResult,
    keep: dict[str, Any] | None = None,
    *,
    messages: list[dict[str, Any]] | None = None,
    cost_usd: float | None = None,
) -> dict[str, Any]:
    """The output record of a finished row, with its prompt (`messages` given) and the input columns kept.

    `cost_usd` is what the reply cost (`pricing.reply_cost`): None when the price or its usage is unknown.
    """
    samples = result.samples
    if samples is None:
        # One dict literal on the common path: this runs once per row of million-row runs.
        record: dict[str, Any] = {
            "id": row_id,
            "output": result.text,
            "finish_reason": result.finish_reason,
            "prompt_tokens": result.prompt_tokens,
            "completion_tokens": result.completion_tokens,
            "provider": result.provider,
            "model": result.model,
            "attempts": result.attempts,
            "latency_s": round(result.latency, 4),
            "cost_usd": cost_usd,
        }
        if result.reasoning is not None:
            record["reasoning"] = result.reasoning
    else:
        record = {
            "id": row_id,
            "outputs": [s.text for s in samples],
            "finish_reasons": [s.finish_reason for s in samples],
            "prompt_tokens": result.prompt_tokens,
            "completion_tokens": result.completion_tokens,
            "provider": result.provider,
            "model": result.model,
            "attempts": result.attempts,
            "latency_s": round(result.latency, 4),
            "cost_usd": cost_usd,
        }
        if any(s.reasoning for s in samples):
            record["reasonings"] = [s.reasoning for s in samples]
    if messages is not None:
        record.update(prompt_fields(messages))
    if result.raw is not None:
        record["response"] = result.raw
        record["request_id"] = result.request_id
    if keep:
        record.update(keep)
    return record


def prompt_fields(messages: list[dict[str, Any]]) -> dict[str, Any]:
    """What `--keep-prompt` stores: `prompt` (the text) for one user message, else `messages` (the list)."""
    if len(messages) == 1:
        message = messages[0]
        content = message.get("content")
        if message.get("role") == "user" and type(content) is str:
            return {"prompt": content}
    return {"messages": messages}


def error_record(index: int, where: str, row_id: Any, error: Exception) -> dict[str, Any]:
    """The errors-file record of a failed or bad row: where it is, what failed, and how often it was tried."""
    api = error if isinstance(error, APIError) else None
    return {
        "id": row_id,
        "index": index,
        "where": where,
        "error": type(error).__name__,
        "kind": (api.kind if api else FailureKind.INPUT).value,
        "status": api.status if api else None,
        "provider": api.provider if api else None,
        "message": api.message if api else str(error),
        "attempts": api.attempts if api else 0,
    }


def check_writable(values: dict[str, Any]) -> None:
    """Raise ValueError or RecursionError when `values` could not be written into a record."""
    dumps(values)
