"""One input record (a JSON object or a Parquet row as a dict) to a `Row` or a `BadRow`.

The format modules own files and streaming; this module owns the per-row rules. It runs once per
row of million-row inputs, so checks are plain type tests and dict lookups: no regexes, no
copies of user data beyond the message list it has to build.
"""

from __future__ import annotations

import math
from collections.abc import Container
from dataclasses import dataclass
from typing import Any

from hfbatch.template import Template, TemplateError

__all__ = ["BadRow", "DoneRow", "Row", "RowBuilder", "template_fields"]

# Per-row request overrides read from a row's top level. Kept short on purpose: a top-level
# column is often plain user data, so only names that can mean nothing else are taken.
ROW_PARAMS = ("max_tokens", "temperature", "top_p", "stop", "seed")
_ROW_PARAM_SET = frozenset(ROW_PARAMS)

# Chat-completion body keys taken from an OpenAI batch line. `stream` is the job's business,
# `model` is the row's only when the job names none; anything unknown is dropped rather than sent blind.
_BODY_PARAMS = frozenset(
    {
        *ROW_PARAMS,
        "max_completion_tokens",
        "frequency_penalty",
        "presence_penalty",
        "logit_bias",
        "logprobs",
        "top_logprobs",
        "n",
        "response_format",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "reasoning_effort",
    }
)

_MISSING: Any = object()

_JSON_TYPE_NAMES = {
    dict: "an object",
    list: "an array",
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "a boolean",
    type(None): "null",
}

_MESSAGE_SHAPE = 'each message must be {"role": "...", "content": "..." or [parts]}'


@dataclass(slots=True)
class Row:
    """One request to send: the id, the chat messages and the per-row overrides."""

    index: int
    id: str | int
    messages: list[dict[str, Any]]
    params: dict[str, Any]
    images: list[str]
    keep: dict[str, Any]
    #: An OpenAI batch line's `body.model` (used when the job names no model).
    model: str | None = None


@dataclass(frozen=True, slots=True)
class BadRow:
    """A row that cannot be sent, with where it is and how to fix it."""

    index: int
    where: str
    reason: str
    id: str | int | None = None


@dataclass(slots=True)  # not frozen: a frozen init costs twice as much, and a resume makes millions
class DoneRow:
    """A row whose id an earlier run finished: only its position and id were read."""

    index: int
    id: str | int


class _Bad(Exception):
    """Raised inside `RowBuilder` to turn the current row into a BadRow."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _show(value: Any) -> str:
    """A short one-line repr of a user value for a reason."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def kind_of(value: Any) -> str:
    """Name a value's type in JSON terms, for reasons a user can act on."""
    return _JSON_TYPE_NAMES.get(type(value), type(value).__name__)


def template_fields(template: str) -> tuple[str, ...]:
    """Return the row fields a template reads; ValueError if it is not usable (see `hfbatch.template`)."""
    return Template(template).fields


def _strip_nulls(message: dict[str, Any]) -> dict[str, Any]:
    # A Parquet struct column gives every message every field, unset ones as None; an API
    # would reject "name": null, so unset fields are dropped (one level into content parts).
    out = {k: v for k, v in message.items() if v is not None}
    content = out.get("content")
    if type(content) is list:
        out["content"] = [
            {k: v for k, v in part.items() if v is not None} if type(part) is dict else part for part in content
        ]
    return out


class RowBuilder:
    """Applies an input spec's rules to one record; shared by every input format."""

    __slots__ = ("_id_column", "_keep", "_nulls_in_structs", "_prompt", "_system", "_template", "done")

    def __init__(
        self,
        *,
        id_column: str | None,
        prompt_column: str,
        template: str | Template | None,
        keep_columns: tuple[str, ...],
        system: str | None,
        nulls_in_structs: bool,
    ) -> None:
        self._id_column = id_column
        self._prompt = prompt_column
        # Parsed once by open_input, which checked it.
        self._template = Template(template) if isinstance(template, str) else template
        self._keep = keep_columns
        self._system = system or None
        self._nulls_in_structs = nulls_in_structs
        #: Ids already done: such rows come back as DoneRow without being built (resume stays cheap).
        self.done: Container[Any] | None = None

    def build(self, obj: dict[str, Any], index: int, where: str, number: int) -> Row | BadRow | DoneRow:
        """Turn one record into a Row, or a BadRow located at f"{where} {number}"."""
        try:
            row_id = self._row_id(obj, index)
        except _Bad as exc:
            return BadRow(index, f"{where} {number}", exc.reason)
        if self.done is not None and row_id in self.done:
            return DoneRow(index, row_id)
        try:
            messages, params, model = self._messages(obj)
            system = obj.get("system")
            if system is None:
                system = self._system
            elif type(system) is not str:
                raise _Bad(f"'system' is {kind_of(system)}, not a string")
            if system and messages[0]["role"] != "system":
                messages = [{"role": "system", "content": system}, *messages]
            if not _ROW_PARAM_SET.isdisjoint(obj):  # most rows set none: one pass in C
                for key in ROW_PARAMS:
                    value = obj.get(key)
                    if value is not None:
                        params[key] = _check_param(key, value)
            images = obj.get("images")
            if images is None:
                images = []
            elif type(images) is str:
                images = [images]
            elif type(images) is not list or not all(type(i) is str for i in images):
                # Whether each may be sent (a local file needs --allow-local-images) is checked when it is sent.
                raise _Bad("'images' must be a string or a list of strings (http(s) URLs, data:image URIs or paths)")
            keep = {c: obj.get(c) for c in self._keep} if self._keep else {}
        except _Bad as exc:
            return BadRow(index, f"{where} {number}", exc.reason, row_id)
        return Row(index, row_id, messages, params, images, keep, model)

    @property
    def leading_id_key(self) -> str:
        """The key whose value is the row's id whenever it is a record's first key."""
        return self._id_column or "id"

    def _row_id(self, obj: dict[str, Any], index: int) -> str | int:
        if self._id_column is not None:
            name = self._id_column
            value = obj.get(name, _MISSING)
            if value is _MISSING:
                raise _Bad(f"no '{name}' field (the id column); add it or drop --id-column")
        else:
            name = "id"
            value = obj.get("id", _MISSING)
            if value is _MISSING:
                name = "custom_id"
                value = obj.get("custom_id", _MISSING)
                if value is _MISSING:
                    return index
        # bool is an int subclass, and type() is the cheap way to refuse it.
        if type(value) is str or type(value) is int:
            return value
        shown = "" if value is None or type(value) in (dict, list) else f" ({_show(value)})"
        raise _Bad(f"'{name}' is {kind_of(value)}{shown}; an id must be a string or an integer")

    def _messages(self, obj: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any], str | None]:
        if self._template is not None:
            try:
                return [{"role": "user", "content": self._template.render(obj)}], {}, None
            except TemplateError as exc:
                raise _Bad(str(exc)) from None
        prompt = obj.get(self._prompt)
        if prompt is not None:
            if type(prompt) is not str:
                raise _Bad(f"'{self._prompt}' is {kind_of(prompt)}, not a string; it must hold the prompt text")
            return [{"role": "user", "content": prompt}], {}, None
        messages = obj.get("messages")
        if messages is not None:
            return self._check_messages(messages, "'messages'"), {}, None
        body = obj.get("body")
        if body is not None:
            return self._body(obj, body)
        if self._prompt in obj or "messages" in obj:
            raise _Bad(f"'{self._prompt}' is null and there are no 'messages'; give a prompt in each row")
        raise _Bad(f"no '{self._prompt}' or 'messages' field (use --prompt-column or --template)")

    def _check_messages(self, messages: Any, label: str) -> list[dict[str, Any]]:
        if type(messages) is not list:
            raise _Bad(f"{label} is {kind_of(messages)}, not a list of messages; {_MESSAGE_SHAPE}")
        if not messages:
            raise _Bad(f"{label} is empty; give at least one message")
        if self._nulls_in_structs:
            messages = [_strip_nulls(m) if type(m) is dict else m for m in messages]
        for i, message in enumerate(messages):
            if type(message) is not dict:
                raise _Bad(f"{label} item {i} is {kind_of(message)}, not an object; {_MESSAGE_SHAPE}")
            role = message.get("role")
            if type(role) is not str or not role:
                raise _Bad(f"{label} item {i} has no string 'role'; {_MESSAGE_SHAPE}")
            content = message.get("content")
            if type(content) is not str and type(content) is not list:
                raise _Bad(f"{label} item {i} 'content' is {kind_of(content)}; {_MESSAGE_SHAPE}")
        return messages  # type: ignore[no-any-return]

    def _body(self, obj: dict[str, Any], body: Any) -> tuple[list[dict[str, Any]], dict[str, Any], str | None]:
        if type(body) is not dict:
            raise _Bad(f"'body' is {kind_of(body)}, not an object; an OpenAI batch line has body.messages")
        url = obj.get("url")
        if url is not None and (type(url) is not str or not url.endswith("/chat/completions")):
            raise _Bad(f"'url' is {_show(url)}; hfbatch sends only /v1/chat/completions requests")
        method = obj.get("method")
        if method is not None and method != "POST":
            raise _Bad(f"'method' is {_show(method)}; a batch line must be POST")
        if body.get("messages") is None:
            raise _Bad("'body' has no 'messages'; an OpenAI batch line needs body.messages")
        messages = self._check_messages(body["messages"], "'body.messages'")
        params: dict[str, Any] = {}
        for key, value in body.items():
            if key in _BODY_PARAMS and value is not None:
                params[key] = _check_param(key, value) if key in ROW_PARAMS or key == "n" else value
        model = body.get("model")
        if model is not None and (type(model) is not str or not model):
            raise _Bad(f"'body.model' is {_show(model)}; a model id is a non-empty string")
        return messages, params, model


def _check_param(key: str, value: Any) -> Any:
    """Return a request override unchanged if its type is right, else raise _Bad."""
    kind = type(value)
    if key == "max_tokens":
        if kind is int and value > 0:
            return value
        raise _Bad(f"'max_tokens' must be a positive integer, got {_show(value)}")
    if key == "seed":
        if kind is int:
            return value
        raise _Bad(f"'seed' must be an integer, got {_show(value)}")
    if key == "n":
        if kind is int and value > 0:
            return value
        raise _Bad(f"'n' must be a positive integer, got {_show(value)}")
    if key == "stop":
        if kind is str or (kind is list and all(type(s) is str for s in value)):
            return value
        raise _Bad("'stop' must be a string or a list of strings")
    # temperature, top_p: JSON allows NaN and Infinity, which no request body can carry.
    if (kind is int or kind is float) and math.isfinite(value):
        return value
    raise _Bad(f"'{key}' must be a number, got {_show(value)}")
