"""Shared fixtures: a clean environment, fast time, one family of simulated servers, and clients on them.

The simulator family:
- `sim`: the server most tests need, serving `sim_config` from a background thread (so sync
  tests, async tests and `hfbatch` subprocesses can all reach it), with its token in HF_TOKEN.
  A module overrides the `sim_config` fixture, or a test parametrizes it indirectly.
- `start_sim(config)`: more servers, or servers in the test's own event loop.
- `sim_in_thread(config)`: more servers in threads, for sync tests.
- `make_client(sim, ...)`: an HuggingFaceAPI on a server, with the fast retry policy.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from hfbatch.client import HuggingFaceAPI
from hfbatch.retry import RetryPolicy
from hfbatch.sim import SimConfig, SimProvider, SimServer
from tests.helpers import one_model

#: Per-attempt deadline for clients in tests: long enough never to fire by accident, short enough not to hang CI.
TEST_TIMEOUT = 10.0
#: `make_client`'s default token: whichever token the sim accepts.
SIM_TOKEN: Any = object()
_CLEARED_ENV = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_ENDPOINT")

StartSim = Callable[..., Awaitable[SimServer]]
MakeClient = Callable[..., HuggingFaceAPI]
SimInThread = Callable[..., SimServer]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Hide the developer's token, Hub endpoint, HF cache and HFBATCH_* settings; return the HF_HOME used."""
    for name in _CLEARED_ENV:
        monkeypatch.delenv(name, raising=False)
    for name in list(os.environ):
        if name.startswith("HFBATCH_"):
            monkeypatch.delenv(name, raising=False)
    hf_home = tmp_path / "hf-home"
    monkeypatch.setenv("HF_HOME", str(hf_home))
    # Learned limits go to a cache of the test's own, never the developer's.
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return hf_home


@pytest.fixture
def fast_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every retry delay and cool-down a run takes a thousandfold shorter (HFBATCH_TIME_SCALE)."""
    monkeypatch.setenv("HFBATCH_TIME_SCALE", "0.001")


@pytest.fixture
def sim_config(request: pytest.FixtureRequest) -> SimConfig:
    """What `sim` serves: two healthy providers, unless a module overrides this or a test parametrizes it."""
    param: SimConfig | None = getattr(request, "param", None)
    return param or one_model(SimProvider("p1"), SimProvider("p2"))


@pytest.fixture
def sim(sim_config: SimConfig, sim_in_thread: SimInThread, monkeypatch: pytest.MonkeyPatch) -> SimServer:
    """A running simulator serving `sim_config` from a thread, with its token in HF_TOKEN."""
    server = sim_in_thread(sim_config)
    monkeypatch.setenv("HF_TOKEN", sim_config.token)
    return server


@pytest.fixture
def fast_policy() -> RetryPolicy:
    """The default retry policy with every delay scaled down a thousandfold."""
    return RetryPolicy(time_scale=0.001)


@pytest.fixture
async def start_sim() -> AsyncIterator[StartSim]:
    """A factory: `await start_sim(config)` starts a SimServer in this loop; all stop at teardown."""
    async with contextlib.AsyncExitStack() as stack:

        async def start(config: SimConfig | None = None) -> SimServer:
            return await stack.enter_async_context(SimServer(config))

        yield start


@pytest.fixture
async def make_client(fast_policy: RetryPolicy) -> AsyncIterator[MakeClient]:
    """A factory: `make_client(sim, token=..., **kw)` builds an HuggingFaceAPI on the sim; closed at teardown.

    The token defaults to the one the sim accepts (`token=None` gives none); keyword arguments override the
    sim's addresses, the fast retry policy, the test timeout, or anything else `HuggingFaceAPI` takes
    (pass `hub_url=None` for plain OpenAI-compatible mode).
    """
    clients: list[HuggingFaceAPI] = []

    def make(sim: SimServer, token: str | None = SIM_TOKEN, **kw: Any) -> HuggingFaceAPI:
        kw.setdefault("api_base", sim.api_base)
        kw.setdefault("hub_url", sim.hub_url)
        kw.setdefault("retry", fast_policy)
        kw.setdefault("timeout", TEST_TIMEOUT)
        api = HuggingFaceAPI(sim.config.token if token is SIM_TOKEN else token, **kw)
        clients.append(api)
        return api

    try:
        yield make
    finally:
        for api in clients:
            await api.close()


@pytest.fixture
def sim_in_thread() -> Iterator[SimInThread]:
    """A factory for sync tests: `sim_in_thread(config)` serves a SimServer from a thread until teardown."""
    with contextlib.ExitStack() as stack:

        def start(config: SimConfig | None = None) -> SimServer:
            return stack.enter_context(SimServer(config).in_thread())

        yield start
