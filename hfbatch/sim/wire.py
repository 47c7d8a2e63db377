"""The bodies the simulated servers send: error shapes, usage, and chat-request checks."""

from __future__ import annotations

import json
from typing import Any

from hfbatch.sim.replies import SimReply

__all__ = [
    "BAD_GATEWAY_HTML",
    "BAD_TOKEN",
    "BAD_TOKEN_HEADERS",
    "CREDITS_MESSAGE",
    "JSON_FAULTS",
    "MALFORMED_BODY",
    "NO_TOKEN_HTML",
    "TGI_VALIDATION",
    "capacity_error",
    "check_chat_body",
    "dumps",
    "echo_message",
    "encode",
    "model_not_found",
    "model_not_supported",
    "n_not_supported",
    "usage_of",
    "validation_error",
]

CREDITS_MESSAGE = (
    "You have exceeded your monthly included credits for Inference Providers. "
    "Subscribe to PRO to get 20x more monthly included credits."
)
BAD_TOKEN = {"error": "Invalid username or password."}
BAD_TOKEN_HEADERS = {"www-authenticate": 'Bearer realm="Authentication required"'}
NO_TOKEN_HTML = (
    "<!DOCTYPE html>\n<html><head><title>401 Unauthorized</title></head>"
    "<body><h1>401 Unauthorized</h1><p>Authentication required.</p></body></html>\n"
)
BAD_GATEWAY_HTML = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n</body>\r\n</html>\r\n"
)
TGI_VALIDATION = (
    "Input validation error: `inputs` tokens + `max_new_tokens` must be <= 4096. "
    "Given: 4000 `inputs` tokens and 2048 `max_new_tokens`"
)
MALFORMED_BODY = '{"choices": ['
# JSON error replies for the simple status-code faults; app.py builds the other faults.
JSON_FAULTS: dict[str, dict[str, Any]] = {
    "400": {"error": "Bad request: invalid parameter"},
    "402": {"error": CREDITS_MESSAGE},
    "403": {"error": "You cannot access this model."},
    "422": {"error": TGI_VALIDATION, "error_type": "validation"},
    "429": {"error": "Rate limit reached. Please retry later."},
    "500": {"error": "Internal server error"},
    "503": {"error": "Service Unavailable"},
}


def dumps(data: Any) -> str:
    """Compact JSON, as the router writes it."""
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def encode(data: Any) -> bytes:
    """`dumps` as UTF-8; text UTF-8 cannot carry (a lone surrogate) is sent as a JSON escape instead."""
    text = dumps(data)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(data, separators=(",", ":")).encode("ascii")


def _openai_error(message: str, kind: str, code: str, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def capacity_error(provider: str, limit: str, amount: int | None, window: float | None) -> dict[str, Any]:
    """A provider's OpenAI-style 429 body for a request past one of its limits."""
    if limit == "concurrency":
        message = f"Too many concurrent requests on provider {provider}: at most {amount} in flight."
    else:
        message = f"Rate limit reached for {limit} on provider {provider}: limit {amount} per {window:g}s."
    return _openai_error(message, limit, "rate_limit_exceeded")


def n_not_supported() -> dict[str, Any]:
    """A provider's 400 body for a request with n > 1 it cannot serve."""
    return _openai_error("n > 1 is not supported", "invalid_request_error", "invalid_request_error", "n")


def model_not_found(model: str) -> dict[str, Any]:
    """The router's 404 body for `/v1/models/{id}` of an unknown model."""
    return _openai_error(f"The model '{model}' does not exist", "invalid_request_error", "model_not_found", "model")


# Where an echoed token is centred: clients that cut error text at 300 characters must
# scrub before cutting, or they leak its first half.
ECHO_TOKEN_CENTRE = 300


def echo_message(authorization: str) -> str:
    """An upstream error that quotes the Authorization header, its token straddling character 300."""
    token = authorization.removeprefix("Bearer ")
    lead = "upstream refused the request; it carried these headers: "
    header = f"Authorization: {authorization}"
    token_at = len(header) - len(token)
    padding = max(0, ECHO_TOKEN_CENTRE - max(1, len(token) // 2) - len(lead) - token_at)
    return f"{lead}{'.' * padding}{header} (end of headers)"


def model_not_supported(model: str) -> dict[str, Any]:
    """The router's 400 envelope for a model no enabled provider serves."""
    return {
        "error": {
            "message": f"The requested model '{model}' is not supported by any provider you have enabled.",
            "type": "invalid_request_error",
            "param": "model",
            "code": "model_not_supported",
        }
    }


def validation_error(message: str) -> dict[str, str]:
    """TGI's 422 validation body."""
    return {"error": f"Input validation error: {message}", "error_type": "validation"}


def usage_of(reply: SimReply) -> dict[str, int]:
    """The OpenAI `usage` object for a reply."""
    return {
        "prompt_tokens": reply.prompt_tokens,
        "completion_tokens": reply.completion_tokens,
        "total_tokens": reply.total_tokens,
    }


def check_chat_body(body: dict[str, Any]) -> str | None:
    """What is wrong with a chat request body, or None."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "`messages` must be a non-empty list"
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            return f"`messages[{i}]` must be an object with a string `role`"
        content = message.get("content")
        if content is not None and not isinstance(content, str | list):
            return f"`messages[{i}].content` must be a string or a list of parts"
        if isinstance(content, list) and not all(isinstance(part, dict) for part in content):
            return f"`messages[{i}].content` parts must be objects"
    for key in ("max_tokens", "max_completion_tokens"):
        value = body.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            return f"`{key}` must be a non-negative integer"
    if not isinstance(body.get("stream", False), bool):
        return "`stream` must be a boolean"
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        return "`stream_options` must be an object"
    n = body.get("n")
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        return "`n` must be an integer >= 1"
    return _check_response_format(body.get("response_format"))


def _check_response_format(fmt: Any) -> str | None:
    if fmt is None:
        return None
    if not isinstance(fmt, dict) or fmt.get("type") not in ("text", "json_object", "json_schema"):
        return "`response_format` must be an object with `type` text, json_object or json_schema"
    if fmt["type"] == "json_schema":
        spec = fmt.get("json_schema")
        if not isinstance(spec, dict) or not isinstance(spec.get("schema", {}), dict | bool):
            return "`response_format.json_schema` must be an object with a `schema` object"
    return None
