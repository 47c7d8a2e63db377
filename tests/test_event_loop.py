"""The event loop `hfbatch` runs on: uvloop when installed, asyncio's own on request or without it."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from hfbatch.cli import cli
from hfbatch.errors import JobSpecError
from hfbatch.event_loop import EVENT_LOOP_ENV, loop_factory
from hfbatch.sim import SimServer
from tests.helpers import MODEL

pytestmark = pytest.mark.usefixtures("fast_time")
HAS_UVLOOP = importlib.util.find_spec("uvloop") is not None


def run(sim: SimServer, tmp_path: Path, rows: int = 30) -> tuple[int, str, dict[str, object] | None]:
    """`hfbatch run` over `rows` rows on the sim: exit code, stderr, and the stats (None when none were written)."""
    inp = tmp_path / "in.jsonl"
    inp.write_text("".join(json.dumps({"id": f"r{i}", "prompt": f"p {i}"}) + "\n" for i in range(rows)))
    out = tmp_path / "out.jsonl"
    args = ["run", "--input", str(inp), "--output", str(out), "--model", MODEL]
    result = CliRunner().invoke(cli, [*args, "--api-base", sim.api_base, "--hub-url", sim.hub_url])
    stats_path = tmp_path / "out.jsonl.stats.json"
    stats = json.loads(stats_path.read_text()) if stats_path.exists() else None
    return result.exit_code, result.stderr, stats


@pytest.mark.skipif(not HAS_UVLOOP, reason="uvloop is not installed (the fast extra)")
def test_a_run_goes_on_uvloop_when_installed_and_says_so_in_its_stats(sim: SimServer, tmp_path: Path) -> None:
    """With uvloop installed every row is done once on it, and the stats name the loop."""
    code, stderr, stats = run(sim, tmp_path)
    assert code == 0, stderr
    assert stats is not None and stats["event_loop"] == "uvloop"
    assert stats["rows"] == {**stats["rows"], "done": 30, "failed": 0}  # type: ignore[dict-item]
    assert sum(c["requests"] for c in sim.counts().values()) == 30  # each row sent once


def test_asyncio_is_chosen_by_the_environment(sim: SimServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """HFBATCH_EVENT_LOOP=asyncio runs the same job on asyncio's own loop, with the same result."""
    monkeypatch.setenv(EVENT_LOOP_ENV, "asyncio")
    code, stderr, stats = run(sim, tmp_path)
    assert code == 0, stderr
    assert stats is not None and stats["event_loop"] == "asyncio"
    assert sum(c["requests"] for c in sim.counts().values()) == 30


def test_an_unknown_loop_is_a_usage_error_before_anything_is_sent(
    sim: SimServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A misspelt HFBATCH_EVENT_LOOP exits 2 in one line naming the variable and the choices; nothing is sent."""
    monkeypatch.setenv(EVENT_LOOP_ENV, "uv-loop")
    code, stderr, stats = run(sim, tmp_path)
    assert code == 2
    assert stderr.strip().count("\n") == 0 and "Traceback" not in stderr
    assert EVENT_LOOP_ENV in stderr and "auto, uvloop, asyncio" in stderr
    assert stats is None
    assert sum(c["requests"] for c in sim.counts().values()) == 0


def test_asking_for_uvloop_without_it_names_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    """HFBATCH_EVENT_LOOP=uvloop where uvloop cannot be imported says how to install it; `auto` falls back."""
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop now raises ImportError
    with pytest.raises(JobSpecError, match=r"pip install 'hfbatch\[fast\]'"):
        loop_factory("uvloop")
    loop = loop_factory("auto")()
    try:
        assert isinstance(loop, asyncio.AbstractEventLoop) and type(loop).__module__.startswith("asyncio")
    finally:
        loop.close()
