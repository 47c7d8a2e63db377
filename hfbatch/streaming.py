"""Streaming a reply with fail-over: text is passed on as it arrives; a provider is changed only before any text.

Once part of a reply has been shown, another provider's reply would not continue it, so
a failure after the first text is raised, not failed over.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from hfbatch.errors import APIError
from hfbatch.failover import call_with_failover
from hfbatch.messages import Message
from hfbatch.wire import ChatResult

if TYPE_CHECKING:
    from hfbatch.client import HuggingFaceAPI

__all__ = ["stream_with_failover"]


async def stream_with_failover(
    api: HuggingFaceAPI,
    model: str,
    prepared: Sequence[Message],
    params: Mapping[str, Any],
    order: Sequence[str],
    api_key: str | None,
) -> AsyncGenerator[str | ChatResult, None]:
    """Yield the reply's text chunks from the first provider that starts one, then its ChatResult."""
    queue: asyncio.Queue[str | ChatResult | None] = asyncio.Queue()
    attempts = 0

    async def send(provider: str) -> ChatResult:
        nonlocal attempts
        attempts += 1
        started = False
        try:
            async for item in api.stream(model, prepared, provider=provider, params=params, api_key=api_key):
                if isinstance(item, ChatResult):
                    return item
                started = True
                queue.put_nowait(item)
        except APIError as exc:
            if started:
                # The caller has shown part of this reply: another provider's would not continue it.
                # It leaves the fail-over loop before that loop counts attempts, so count them here.
                exc.attempts = attempts
                raise _StreamBroken(exc) from exc
            raise
        raise AssertionError("stream() ends with its result")

    async def run() -> ChatResult:
        try:
            return await call_with_failover(send, order, api.retry, api.scheduler, patient=False)
        except _StreamBroken as exc:
            raise exc.error from None
        finally:
            queue.put_nowait(None)

    task = asyncio.create_task(run())
    try:
        while (item := await queue.get()) is not None:
            yield item
        yield await task
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


class _StreamBroken(Exception):
    """A stream failed after some of its text was delivered; not retried elsewhere."""

    def __init__(self, error: APIError) -> None:
        super().__init__(str(error))
        self.error = error
