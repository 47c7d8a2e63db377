"""OpenAI batch output: each result as the OpenAI Batch API writes it, so tools made for it read ours.

A result line::

    {"id": "batch_req_<hex>", "custom_id": <row id>, "response": {"status_code": 200,
     "request_id": <the reply's x-request-id>, "body": <the chat.completion>}, "error": null}

and a failed row, in the errors file::

    {"id": "batch_req_<hex>", "custom_id": <row id>, "response": null,
     "error": {"code": <failure kind>, "message": <what failed, and where>}}

The body is the chat.completion as the provider sent it (rebuilt from the chunks of a
streamed reply; for a row whose n samples took several requests, one body holding the n
choices with the usage summed). `custom_id` is the row id: a string for OpenAI batch inputs
(whose `custom_id` it is), an integer id stays an integer so a resume finds it again.
"""

from __future__ import annotations

import itertools
import secrets
from pathlib import Path
from typing import Any, ClassVar

from hfbatch.outputs.journal import IdScanner, dumps
from hfbatch.outputs.jsonl import JournalFormat

__all__ = ["OpenAIFormat"]


class OpenAIFormat(JournalFormat):
    """OpenAI Batch API output lines in a .jsonl file (never implied by the extension: `--output-format openai`).

    Resume invariant: every line is one whole record, newline last, that starts
    `{"id": "batch_req_<hex>", "custom_id": ` followed by the row id (a JSON string or integer),
    so the id is read without parsing the line.
    """

    name: ClassVar[str] = "openai"
    suffixes: ClassVar[tuple[str, ...]] = ()
    scanner: ClassVar[IdScanner] = IdScanner(key="custom_id", lead=rb'\{"id": "batch_req_[0-9a-f]+", "custom_id": ')
    needs_raw: ClassVar[bool] = True

    def __init__(self) -> None:
        # A random prefix per run and a counter: unique ids without a random draw per line.
        self._prefix = secrets.token_hex(8)
        self._count = itertools.count()

    @classmethod
    def fits(cls, output: Path) -> bool:
        """OpenAI batch output is JSON lines."""
        return output.suffix.lower() == ".jsonl"

    @classmethod
    def writes(cls) -> str:
        """The outputs it writes, for messages."""
        return ".jsonl files"

    def _line_id(self) -> str:
        return f"batch_req_{self._prefix}{next(self._count):016x}"

    def encode(self, record: dict[str, Any]) -> str:
        """A result as a batch output line; the body is the reply's, or rebuilt from the record without one."""
        body = record.get("response")
        if not isinstance(body, dict):
            body = _body_from(record)
        request_id = record.get("request_id") or body.get("id")
        response = {"status_code": 200, "request_id": request_id, "body": body}
        return dumps({"id": self._line_id(), "custom_id": record["id"], "response": response, "error": None})

    def encode_error(self, record: dict[str, Any]) -> str:
        """A failed row as a batch output line with `response` null and the error."""
        message = record.get("message") or ""
        detail = ", ".join(
            part
            for part in (
                record.get("where"),
                f"HTTP {record['status']}" if record.get("status") is not None else None,
                f"provider {record['provider']}" if record.get("provider") else None,
                f"{record['attempts']} attempt(s)" if record.get("attempts") else None,
            )
            if part
        )
        error = {"code": record.get("kind"), "message": f"{message} ({detail})" if detail else message}
        return dumps({"id": self._line_id(), "custom_id": record.get("id"), "response": None, "error": error})


def _body_from(record: dict[str, Any]) -> dict[str, Any]:
    """A chat.completion made of an hfbatch record, for a result that kept no body."""
    outputs = record["outputs"] if "outputs" in record else [record.get("output")]
    reasons = record["finish_reasons"] if "finish_reasons" in record else [record.get("finish_reason")]
    prompt, completion = record.get("prompt_tokens"), record.get("completion_tokens")
    body: dict[str, Any] = {
        "id": None,
        "object": "chat.completion",
        "created": None,
        "model": record.get("model"),
        "choices": [
            {"index": i, "message": {"role": "assistant", "content": text}, "logprobs": None, "finish_reason": reason}
            for i, (text, reason) in enumerate(zip(outputs, reasons, strict=False))
        ],
    }
    if prompt is not None or completion is not None:
        body["usage"] = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": (prompt or 0) + (completion or 0),
        }
    return body
