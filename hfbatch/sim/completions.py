"""Sending a chat answer: a JSON completion or an SSE stream, billed once fully sent.

A `Shape` bends a well-formed reply the way the content faults need: no `usage` at all
(`no_usage`), or an extra field nested `deep` levels down (`deep`, spliced in as text because
building it as a Python object would overflow the encoder).
"""

from __future__ import annotations

import asyncio
import secrets
import socket
import struct
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from hfbatch.sim.answers import SimAnswer, SimChoice, text_pieces
from hfbatch.sim.config import SimProvider
from hfbatch.sim.state import SimState
from hfbatch.sim.wire import encode

__all__ = ["DEEP_FIELD", "Call", "Responder", "Shape", "drop", "pause"]

# The extra field the `deep` fault adds to a reply.
DEEP_FIELD = "x_trace"


@dataclass(frozen=True, slots=True)
class Call:
    """One admitted chat request, as the reply builders need it."""

    model: str  # as the client sent it
    provider: SimProvider
    stream: bool
    include_usage: bool
    answer: SimAnswer
    headers: dict[str, str]  # x-inference-provider, x-request-id and any x-ratelimit-*
    key: str  # billing.request_key of the body


@dataclass(frozen=True, slots=True)
class Shape:
    """How a 200 reply departs from the norm."""

    usage: bool = True
    deep: int | None = None


def drop(request: web.BaseRequest, *, reset: bool) -> None:
    """Close the connection with no (further) reply: a TCP reset if `reset`, else a bare FIN."""
    transport = request.transport
    if transport is None:
        return
    if reset:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # Linger 0 turns close() into an RST, as a crashed proxy would send.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


async def pause(state: SimState, seconds: float) -> None:
    """Sleep `seconds`, or less if the server is stopping."""
    try:
        await asyncio.wait_for(state.stopping.wait(), seconds)
    except TimeoutError:
        pass


def _with_deep(payload: bytes, depth: int | None) -> bytes:
    if depth is None:
        return payload
    nested = b'{"n":' * depth + b"1" + b"}" * depth
    return payload[:-1] + b',"' + DEEP_FIELD.encode() + b'":' + nested + b"}"


def _message(choice: SimChoice) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": choice.content}
    if choice.reasoning is not None:
        message["reasoning_content"] = choice.reasoning
    return message


def _deltas(choice: SimChoice) -> list[dict[str, Any]]:
    """One delta per stream chunk: reasoning pieces, then content pieces; the first names the role."""
    deltas: list[dict[str, Any]] = [{"reasoning_content": p} for p in text_pieces(choice.reasoning or "")]
    if choice.content is not None:
        deltas += [{"content": p} for p in text_pieces(choice.content) or [""]]
    if not deltas:
        deltas = [{"content": None}]
    deltas[0] = {"role": "assistant", **deltas[0]}
    return deltas


class Responder:
    """Writes answers for one SimState's config, and bills what it sent whole."""

    def __init__(self, state: SimState) -> None:
        self.state = state
        self.config = state.config

    def completion(self, call: Call, answer: SimAnswer, shape: Shape = Shape()) -> dict[str, Any]:
        """The non-streamed completion object."""
        body: dict[str, Any] = {
            "id": f"chatcmpl-{secrets.token_hex(12)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": call.model,
            "choices": [
                {"index": i, "message": _message(c), "logprobs": None, "finish_reason": c.finish_reason}
                for i, c in enumerate(answer.choices)
            ],
        }
        if shape.usage:
            body["usage"] = answer.usage()
        return body

    def sse(self, data: str | bytes) -> bytes:
        """One SSE event carrying `data`."""
        sep = b" " if self.config.sse_space else b""
        raw = data.encode() if isinstance(data, str) else data
        return b"data:" + sep + raw + b"\n\n"

    def events(self, call: Call, answer: SimAnswer, shape: Shape) -> tuple[list[bytes], list[bytes]]:
        """The stream's events: (the pieces, then the tail: finish chunks, usage and [DONE])."""
        base: dict[str, Any] = {
            "id": f"chatcmpl-{secrets.token_hex(12)}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": call.model,
        }
        with_usage = call.include_usage and shape.usage
        usage_in_finish = with_usage and self.config.usage_in_finish_chunk

        def chunk(choices: list[dict[str, Any]], usage: dict[str, Any] | None = None) -> bytes:
            data = {**base, "choices": choices}
            if with_usage:
                data["usage"] = usage
            return encode(data)

        def choice(index: int, delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
            return {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish_reason}

        per_choice = [_deltas(c) for c in answer.choices]
        # Choices interleave piece by piece, as a server sampling them in parallel sends them.
        pieces = [
            chunk([choice(i, deltas[k])])
            for k in range(max(map(len, per_choice), default=0))
            for i, deltas in enumerate(per_choice)
            if k < len(deltas)
        ]
        if pieces:
            pieces[0] = _with_deep(pieces[0], shape.deep)
        last = len(answer.choices) - 1
        tail = [
            chunk([choice(i, {}, c.finish_reason)], answer.usage() if usage_in_finish and i == last else None)
            for i, c in enumerate(answer.choices)
        ]
        if with_usage and not usage_in_finish:
            tail.append(chunk([], answer.usage()))
        return [self.sse(p) for p in pieces], [self.sse(t) for t in tail]

    def bill(self, call: Call, answer: SimAnswer) -> None:
        """Record a whole reply to `call` as billed."""
        self.state.bill(call.provider, call.key, answer.prompt_tokens, answer.completion_tokens)

    async def send_json(self, request: web.Request, call: Call, answer: SimAnswer, shape: Shape) -> web.StreamResponse:
        """Answer with a completion object; bill it once written."""
        payload = _with_deep(encode(self.completion(call, answer, shape)), shape.deep)
        self.state.record(call.provider.name, 200)
        resp = web.Response(body=payload, headers=call.headers, content_type="application/json", charset="utf-8")
        try:
            await resp.prepare(request)
            await resp.write_eof()
        except ConnectionError:
            return resp  # the client went away; nothing was delivered, nothing billed
        self.bill(call, answer)
        return resp

    async def send_stream(
        self, request: web.Request, call: Call, answer: SimAnswer, shape: Shape, *, cut: bool = False
    ) -> web.StreamResponse:
        """Stream the answer (or, if `cut`, half its pieces and then a bare close); bill it once whole."""
        pieces, tail = self.events(call, answer, shape)
        if self.config.sse_done:
            tail.append(self.sse("[DONE]"))
        events = pieces[: max(1, len(pieces) // 2)] if cut else pieces + tail
        self.state.record(call.provider.name, "truncate" if cut else 200)
        resp = self.stream_response(call)
        try:
            await resp.prepare(request)
            for event in events:
                await resp.write(event)
            if not cut:
                await resp.write_eof()
        except ConnectionError:
            return resp  # the client went away; nothing to tell it
        if cut:
            drop(request, reset=False)
        else:
            self.bill(call, answer)
        return resp

    def stream_response(self, call: Call) -> web.StreamResponse:
        """An unprepared 200 event-stream response."""
        resp = web.StreamResponse(status=200, headers={**call.headers, "Cache-Control": "no-cache"})
        resp.content_type = "text/event-stream"
        return resp

    async def send_truncated_json(self, request: web.Request, call: Call) -> web.StreamResponse:
        """Promise the whole body in Content-Length, send half, then close."""
        payload = encode(self.completion(call, call.answer))
        self.state.record(call.provider.name, "truncate")
        resp = web.StreamResponse(status=200, headers=call.headers)
        resp.content_type = "application/json"
        resp.content_length = len(payload)
        try:
            await resp.prepare(request)
            await resp.write(payload[: len(payload) // 2])
        except ConnectionError:
            return resp
        drop(request, reset=False)
        return resp
