"""Running the simulated servers: in the caller's event loop, in a thread, or until cancelled."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any

from aiohttp import web

from hfbatch.sim.app import make_app
from hfbatch.sim.config import SimConfig, default_sim_config
from hfbatch.sim.state import ProviderCounts, SimState

__all__ = ["SimServer", "serve"]

# A hanging request is woken at shutdown; this only bounds handlers that ignore that.
_SHUTDOWN_TIMEOUT = 0.5
_THREAD_START_TIMEOUT = 30.0
_THREAD_STOP_TIMEOUT = 10.0


class SimServer:
    """The simulated Hub and router on a loopback port, with counters tests can read."""

    def __init__(
        self,
        config: SimConfig | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config if config is not None else default_sim_config()
        self.host = host
        self.port = port
        self.state = SimState(self.config, clock)
        self._runner: web.AppRunner | None = None
        self._url: str | None = None

    # --- addresses ---------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The server's base URL, e.g. `http://127.0.0.1:PORT`."""
        if self._url is None:
            raise RuntimeError("the sim server is not running")
        return self._url

    @property
    def api_base(self) -> str:
        """The OpenAI-compatible base URL (the router's `/v1`)."""
        return self.url + "/v1"

    @property
    def hub_url(self) -> str:
        """The Hub API base URL."""
        return self.url

    # --- inspection --------------------------------------------------------------------

    @property
    def stats(self) -> dict[str, ProviderCounts]:
        """Per provider name: requests routed to it and outcomes sent (live objects)."""
        return self.state.stats

    @property
    def hub_requests(self) -> int:
        """Hub mapping and model-list requests received."""
        return self.state.hub_requests

    @property
    def requests(self) -> deque[tuple[str, dict[str, Any]]]:
        """The last 200 routed chat request bodies, each with the provider that got it."""
        return self.state.requests

    @property
    def request_headers(self) -> deque[dict[str, str]]:
        """The headers of those requests, in the same order, without Authorization."""
        return self.state.request_headers

    def counts(self) -> dict[str, dict[str, Any]]:
        """A JSON-able snapshot: {provider: {"requests": n, "by_outcome": {outcome: n}}}."""
        return self.state.counts()

    def max_in_flight(self) -> dict[str, int]:
        """Per provider: the most requests it held in flight at once."""
        return self.state.max_in_flight()

    def billing(self) -> dict[str, Any]:
        """What was billed, per provider and in total (see `SimState.billing`)."""
        return self.state.billing()

    def paid_twice(self) -> int:
        """Billed replies beyond the first for the same request (same messages, n, seed, response_format)."""
        return self.state.paid_twice()

    def paid_keys(self) -> int:
        """Distinct requests billed at least once."""
        return self.state.paid_keys()

    def reset_counts(self) -> None:
        """Zero every counter and the bill, forget logged requests, restart the fault draws and windows."""
        self.state.reset_counts()

    # --- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Bind the port and start serving."""
        if self._runner is not None:
            raise RuntimeError("the sim server is already running")
        self.state.stopping = asyncio.Event()
        runner = web.AppRunner(
            make_app(self.state),
            access_log=None,
            handle_signals=False,
            shutdown_timeout=_SHUTDOWN_TIMEOUT,
            # A client that gives up on a hanging request frees its handler.
            handler_cancellation=True,
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self.port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        port = runner.addresses[0][1]
        host = f"[{self.host}]" if ":" in self.host else self.host
        self._url = f"http://{host}:{port}"

    async def stop(self) -> None:
        """Stop serving; hanging requests are dropped, so this is prompt."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        self.state.stopping.set()
        await runner.cleanup()
        self._url = None

    async def __aenter__(self) -> SimServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @contextlib.contextmanager
    def in_thread(self) -> Iterator[SimServer]:
        """Run the server in a background thread with its own event loop until the block exits."""
        started = threading.Event()
        errors: list[BaseException] = []
        # Filled by the thread: its loop and the event that ends it.
        handles: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []

        async def main() -> None:
            done = asyncio.Event()
            handles.append((asyncio.get_running_loop(), done))
            try:
                await self.start()
            except BaseException as exc:
                errors.append(exc)
                return
            finally:
                started.set()
            try:
                await done.wait()
            finally:
                await self.stop()

        thread = threading.Thread(target=asyncio.run, args=(main(),), name="hfbatch-sim", daemon=True)
        thread.start()
        if not started.wait(_THREAD_START_TIMEOUT):
            raise RuntimeError("the sim server did not start")
        if errors:
            thread.join()
            raise errors[0]
        loop, done = handles[0]
        try:
            yield self
        finally:
            loop.call_soon_threadsafe(done.set)
            thread.join(_THREAD_STOP_TIMEOUT)


async def serve(
    config: SimConfig,
    host: str,
    port: int,
    ready: Callable[[SimServer], None] | None = None,
) -> None:
    """Serve until cancelled; `ready` is called with the running server once it listens."""
    sim = SimServer(config, host, port)
    await sim.start()
    try:
        if ready is not None:
            ready(sim)
        await asyncio.Event().wait()
    finally:
        await sim.stop()
