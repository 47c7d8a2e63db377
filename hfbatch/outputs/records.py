"""The shape of what a run writes: one result record per finished row, one error record per failed row.

Formats encode these dicts (`jsonl.py`, `parquet.py`); records start with the row id,
which the JSONL resume scan relies on.
"""

from __future__ import annotations

from typing import Any

from hfbatch.errors import APIError, FailureKind
from hfbatch.outputs.journal import dumps
from hfbatch.wire import ChatResult

__all__ = ["check_writable", "error_record", "result_record"]


def result_record(
    row_id: str | int, result: ChatResult, keep: dict[str, Any] | None = None, *, cost_usd: float | None = None
) -> dict[str, Any]:
    """The output record of a finished row, with the input columns the user kept.

    `cost_usd` is what the reply cost (`pricing.reply_cost`): None when the price or its usage is unknown.
    """
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
    if keep:
        record.update(keep)
    return record


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
