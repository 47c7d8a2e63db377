"""A fast local OpenAI-compatible chat server for benchmarks: raw asyncio Protocols, HTTP/1.1 keep-alive.

    python bench/server.py --port 8099 --latency-ms 50

Routes:
  POST /v1/chat/completions  a fixed, small, non-streamed chat completion, sent `latency` ms after the request
  GET  /v1/models            the one model, `bench/model`
  GET  /stats                {"requests", "user_s", "sys_s", "latency_ms"}: its own CPU seconds so far
  POST /admin/latency        body: the new latency in milliseconds

It parses the request head and Content-Length body itself (no chunked request bodies), answers requests
on a connection in order, and on SIGTERM or SIGINT prints its request count and CPU seconds and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import signal
from typing import Any

MODEL = "bench/model"
REPLY_TEXT = "This is a short benchmark reply."
MAX_HEAD = 64 * 1024


def _response(status: str, body: bytes, *, close: bool = False) -> bytes:
    head = f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    if close:
        head += "Connection: close\r\n"
    return head.encode("latin-1") + b"\r\n" + body


def _json(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode()


CHAT_BODY = _json(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": REPLY_TEXT},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 8, "total_tokens": 20},
    }
)
CHAT_OK = _response("200 OK", CHAT_BODY)
CHAT_OK_CLOSE = _response("200 OK", CHAT_BODY, close=True)
MODELS_OK = _response("200 OK", _json({"object": "list", "data": [{"id": MODEL, "object": "model"}]}))


class State:
    """What every connection shares: the latency and the counters."""

    def __init__(self, latency_ms: float) -> None:
        self.latency = latency_ms / 1000
        self.requests = 0

    def stats(self) -> dict[str, Any]:
        """Requests served and this process's CPU seconds."""
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return {
            "requests": self.requests,
            "user_s": usage.ru_utime,
            "sys_s": usage.ru_stime,
            "latency_ms": self.latency * 1000,
        }


class HTTPProtocol(asyncio.Protocol):
    """One connection: requests are parsed from a buffer and answered one after the other."""

    __slots__ = ("buf", "busy", "loop", "state", "transport")

    def __init__(self, state: State, loop: asyncio.AbstractEventLoop) -> None:
        self.state = state
        self.loop = loop
        self.buf = bytearray()
        self.busy = False  # a reply is waiting for its latency; later requests wait in the buffer
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if not self.busy:
            self._process()

    def _process(self) -> None:
        buf = self.buf
        while self.transport is not None and not self.busy:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > MAX_HEAD:
                    self._send(_response("431 Request Header Fields Too Large", b"{}", close=True), close=True)
                return
            lines = bytes(buf[:end]).split(b"\r\n")
            try:
                method, target, version = lines[0].split(b" ", 2)
            except ValueError:
                self._send(_response("400 Bad Request", b"{}", close=True), close=True)
                return
            length = 0
            close = version == b"HTTP/1.0"
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"connection":
                    token = value.strip().lower()
                    close = token == b"close" or (close and token != b"keep-alive")
                elif name == b"transfer-encoding":
                    self._send(_response("501 Not Implemented", b"{}", close=True), close=True)
                    return
            total = end + 4 + length
            if len(buf) < total:
                return
            body = bytes(buf[end + 4 : total])
            del buf[:total]
            self._handle(method, target, body, close)

    def _handle(self, method: bytes, target: bytes, body: bytes, close: bool) -> None:
        state = self.state
        if method == b"POST" and target in (b"/v1/chat/completions", b"/chat/completions"):
            state.requests += 1
            reply = CHAT_OK_CLOSE if close else CHAT_OK
            if state.latency > 0:
                self.busy = True
                self.loop.call_later(state.latency, self._send_later, reply, close)
            else:
                self._send(reply, close)
        elif target == b"/stats":
            self._send(_response("200 OK", _json(state.stats()), close=close), close)
        elif method == b"POST" and target == b"/admin/latency":
            state.latency = float(body or b"0") / 1000
            self._send(_response("200 OK", _json(state.stats()), close=close), close)
        elif target in (b"/v1/models", b"/models"):
            self._send(MODELS_OK, close)
        else:
            self._send(_response("404 Not Found", b'{"error":"not found"}', close=close), close)

    def _send(self, data: bytes, close: bool) -> None:
        if self.transport is None:
            return
        self.transport.write(data)
        if close:
            self.transport.close()
            self.transport = None

    def _send_later(self, data: bytes, close: bool) -> None:
        self.busy = False
        self._send(data, close)
        if self.buf:
            self._process()


async def serve(port: int, latency_ms: float, host: str = "127.0.0.1") -> State:
    """Serve until SIGTERM or SIGINT; return the counters."""
    loop = asyncio.get_running_loop()
    state = State(latency_ms)
    server = await loop.create_server(lambda: HTTPProtocol(state, loop), host, port, backlog=4096)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"listening on http://{host}:{port}/v1 (latency {latency_ms:g} ms)", flush=True)
    await stop.wait()
    server.close()  # open keep-alive connections are dropped with the loop
    return state


def main() -> None:
    """Parse the flags, serve, and print the counters on exit."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=8099)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="delay before each chat reply (0: none)")
    args = parser.parse_args()
    state = asyncio.run(serve(args.port, args.latency_ms, args.host))
    print(json.dumps(state.stats()), flush=True)


if __name__ == "__main__":
    main()
