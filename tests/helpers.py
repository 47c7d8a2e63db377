"""Small builders the tests share: one model served by the providers given, a test server in a thread."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from typing import Any

from aiohttp import web

from hfbatch.sim import SimConfig, SimModel, SimProvider

#: The model every batch test runs.
MODEL = "org/model"


def one_model(*providers: SimProvider, model: str = MODEL, **config: Any) -> SimConfig:
    """A simulator config serving `model` through `providers`, in that order."""
    return SimConfig(models=(SimModel(model, providers),), **config)


@contextlib.contextmanager
def app_in_thread(app: web.Application) -> Iterator[str]:
    """Serve an aiohttp app on loopback from a thread (reachable from sync and async tests); yield its URL."""
    ready = threading.Event()
    box: dict[str, Any] = {}

    async def main() -> None:
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        stop = asyncio.Event()
        box.update(url=f"http://127.0.0.1:{runner.addresses[0][1]}", loop=asyncio.get_running_loop(), stop=stop)
        ready.set()
        try:
            await stop.wait()
        finally:
            await runner.cleanup()

    thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
    thread.start()
    assert ready.wait(10), "the test server did not start"
    try:
        yield box["url"]
    finally:
        box["loop"].call_soon_threadsafe(box["stop"].set)
        thread.join(10)
