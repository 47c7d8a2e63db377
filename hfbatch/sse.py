"""Server-sent events as OpenAI-compatible servers send them.

Real servers differ: `data:` with or without a space, `\\r\\n` line ends, comment
lines, usage in the finish chunk or in a usage-only chunk after it, and some end
without `data: [DONE]`. The decoder is incremental, so any split of the byte
stream into chunks yields the same payloads.
"""

from __future__ import annotations

__all__ = ["DONE", "SSEDecoder"]

DONE = "[DONE]"


class SSEDecoder:
    """Feed bytes, get the `data` payloads of complete lines, in order."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, chunk: bytes) -> list[str]:
        """Return the payloads of the `data:` lines completed by `chunk`."""
        buffer = self._buffer + chunk
        if b"\n" not in buffer and b"\r" not in buffer:
            self._buffer = buffer
            return []
        lines = buffer.splitlines(keepends=True)
        # A trailing "\r" may be half of a "\r\n" split across chunks: keep it for the next feed.
        self._buffer = b"" if lines[-1].endswith(b"\n") else lines.pop()
        return [p for p in map(_payload, lines) if p is not None]

    def close(self) -> list[str]:
        """Return the payload of a last line the server did not end with a newline."""
        rest, self._buffer = self._buffer, b""
        payload = _payload(rest)
        return [payload] if payload is not None else []


def _payload(line: bytes) -> str | None:
    if not line.startswith(b"data:"):
        return None  # blank separators, comments (":"), "event:", "id:", "retry:"
    value = line[5:].rstrip(b"\r\n")
    if value.startswith(b" "):
        value = value[1:]
    if not value.strip():
        return None
    return value.decode("utf-8", errors="replace")
