"""Replies of the faults that do not answer a whole completion (errors, drops, broken bodies).

The content faults (`slow`, `empty`, `no_usage`, `surrogate`, `deep`, `invalid_json`) answer a
well-formed 200 and live in app.py. The three `echo` kinds quote the request's Authorization
header with its token straddling character 300 of the error message (see `wire.echo_message`):
- `echo`: a 500 JSON error `{"error": message}`;
- `echo_malformed`: a 200 whose body (or SSE payload, when streaming) is the bare message, not JSON;
- `echo_stream`: when streaming, a 200 stream with one content chunk, then an SSE event
  `{"error": {"message": message, "type": "server_error", "code": 500}}`, then the end of the
  stream (no finish chunk, no [DONE]); a non-streamed request gets `echo`'s 500.
"""

from __future__ import annotations

from aiohttp import web

from hfbatch.sim.completions import Call, Responder, Shape, drop, pause
from hfbatch.sim.config import Fault
from hfbatch.sim.wire import (
    BAD_GATEWAY_HTML,
    BAD_TOKEN,
    BAD_TOKEN_HEADERS,
    JSON_FAULTS,
    MALFORMED_BODY,
    dumps,
    echo_message,
    encode,
    model_not_supported,
)

__all__ = ["fault_response"]

_PLAIN = Shape()


def _json(data: object, status: int, headers: dict[str, str]) -> web.Response:
    return web.Response(
        body=encode(data), status=status, headers=headers, content_type="application/json", charset="utf-8"
    )


def _not_json(responder: Responder, call: Call, text: str) -> web.Response:
    """A 200 whose body (or only SSE payload) is `text`, which is not JSON."""
    if call.stream:
        resp = web.Response(body=responder.sse(text), headers=call.headers)
        resp.content_type = "text/event-stream"
        return resp
    return web.Response(text=text, content_type="application/json", headers=call.headers)


async def _echo_stream(request: web.Request, responder: Responder, call: Call, message: str) -> web.StreamResponse:
    pieces, _ = responder.events(call, call.answer, _PLAIN)
    error = {"error": {"message": message, "type": "server_error", "code": 500}}
    resp = responder.stream_response(call)
    try:
        await resp.prepare(request)
        for event in [*pieces[:1], responder.sse(dumps(error))]:
            await resp.write(event)
        await resp.write_eof()
    except ConnectionError:
        pass
    return resp


async def fault_response(request: web.Request, responder: Responder, call: Call, fault: Fault) -> web.StreamResponse:
    """The reply to `call` when `fault` (not a content fault) hit it; counts the outcome."""
    state = responder.state
    kind = fault.kind
    name = call.provider.name
    headers = dict(call.headers)
    auth = request.headers.get("Authorization", "")
    if kind in JSON_FAULTS:
        if kind == "429" and fault.retry_after is not None:
            headers["Retry-After"] = fault.retry_after
        state.record(name, int(kind))
        return _json(JSON_FAULTS[kind], int(kind), headers)
    if kind == "leak":
        # A misbehaving proxy that quotes the request back: the client must not repeat the token.
        state.record(name, 500)
        return _json({"error": f"upstream refused the request (Authorization: {auth})"}, 500, headers)
    if kind == "echo" or (kind == "echo_stream" and not call.stream):
        state.record(name, 500)
        return _json({"error": echo_message(auth)}, 500, headers)
    if kind == "echo_stream":
        state.record(name, "stream_error")
        return await _echo_stream(request, responder, call, echo_message(auth))
    if kind == "echo_malformed":
        state.record(name, "malformed")
        return _not_json(responder, call, echo_message(auth))
    if kind == "401":
        state.record(name, 401)
        return _json(BAD_TOKEN, 401, {**headers, **BAD_TOKEN_HEADERS})
    if kind == "model_not_supported":
        state.record(name, 400)
        return _json(model_not_supported(call.model), 400, headers)
    if kind == "404":
        state.record(name, 404)
        return web.Response(status=404, text="Not Found", content_type="text/plain", headers=headers)
    if kind == "502":
        state.record(name, 502)
        return web.Response(status=502, text=BAD_GATEWAY_HTML, content_type="text/html", headers=headers)
    if kind == "hang":
        state.record(name, "hang")
        # Held until the deadline or server shutdown, whichever is first; then dropped unanswered.
        await pause(state, responder.config.hang_seconds)
        drop(request, reset=False)
        return web.Response()
    if kind in ("reset", "down"):
        state.record(name, kind)
        drop(request, reset=kind == "reset")
        return web.Response()
    if kind == "malformed":
        state.record(name, "malformed")
        return _not_json(responder, call, MALFORMED_BODY)
    if kind == "truncate":
        if call.stream:
            return await responder.send_stream(request, call, call.answer, _PLAIN, cut=True)
        return await responder.send_truncated_json(request, call)
    raise AssertionError(f"unhandled fault kind {kind!r}")  # config validation prevents this
