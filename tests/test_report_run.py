"""The report, the timeline and `hfbatch status` on real runs against the simulator."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from hfbatch.cli import cli
from hfbatch.report import build_report
from hfbatch.sim import Fault, SimConfig, SimProvider, SimServer
from tests.helpers import MODEL, one_model
from tests.report_helpers import Page

pytestmark = pytest.mark.usefixtures("fast_time")


@pytest.fixture
def sim_config() -> SimConfig:
    """Two providers: one flaky (429s, 5xx), one healthy."""
    flaky = SimProvider(
        "flaky", latency=0.005, faults=(Fault("429", rate=0.1, retry_after="0"), Fault("500", rate=0.1))
    )
    return one_model(flaky, SimProvider("steady", latency=0.005))


def run(sim: SimServer, out: Path, rows: int = 120, *extra: str) -> int:
    """`hfbatch run` over `rows` prompts into `out`; its exit code."""
    inp = out.with_name("in.jsonl")
    inp.write_text("".join(json.dumps({"id": i, "prompt": f"question {i}"}) + "\n" for i in range(rows)))
    args = ["run", "--input", str(inp), "--output", str(out), "--model", MODEL, "--max-tokens", "16"]
    result = CliRunner().invoke(cli, [*args, "--api-base", sim.api_base, "--hub-url", sim.hub_url, *extra])
    return result.exit_code


def test_a_run_leaves_a_timeline_and_its_report_draws_every_chart(sim: SimServer, tmp_path: Path) -> None:
    """After a run with faults, the report shows each chart with each provider, and its numbers equal the stats."""
    out = tmp_path / "out.jsonl"
    assert run(sim, out) == 0
    lines = [json.loads(x) for x in (tmp_path / "out.jsonl.timeline.jsonl").read_text().splitlines()]
    assert lines and lines[-1]["rows_done"] == 120
    assert set(lines[-1]["providers"]) == {"flaky", "steady"}
    page = Page(build_report(out).read_text())
    stats = json.loads((tmp_path / "out.jsonl.stats.json").read_text())
    for chart in ("chart-throughput", "chart-latency", "chart-failures", "chart-limits", "chart-finish-reasons"):
        assert chart in page.svgs, chart
    assert set(page.series["chart-latency"]) >= {"flaky"}
    assert {"429", "5xx"} <= set(page.series["chart-failures"])
    assert page.value("rows_done") == str(stats["rows"]["done"])
    assert stats["finish_reasons"] and stats["settings"]["model"] == MODEL


def test_status_of_a_finished_and_an_unfinished_output(sim: SimServer, tmp_path: Path) -> None:
    """`hfbatch status` exits 0 for a complete output and 1 for one whose run stopped with rows left."""
    out = tmp_path / "out.jsonl"
    assert run(sim, out) == 0
    done = CliRunner().invoke(cli, ["status", str(out)])
    assert done.exit_code == 0 and "complete" in done.output and "120 done" in done.output
    bad = tmp_path / "bad.jsonl"
    bad_in = tmp_path / "in.jsonl"
    bad_in.write_text('{"id": 1, "prompt": "q"}\n{"id": 2}\n')
    args = ["run", "--input", str(bad_in), "--output", str(bad), "--model", MODEL]
    assert CliRunner().invoke(cli, [*args, "--api-base", sim.api_base, "--hub-url", sim.hub_url]).exit_code == 1
    unfinished = CliRunner().invoke(cli, ["status", str(bad), "--json"])
    assert unfinished.exit_code == 1 and json.loads(unfinished.output)["complete"] is False


def test_status_while_a_run_holds_the_output_exits_4(sim_in_thread: object, tmp_path: Path) -> None:
    """From another terminal, a run that is going is reported as running, with its pid, and exit 4."""
    server = sim_in_thread(one_model(SimProvider("slow", latency=0.05)))  # type: ignore[operator]
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    inp.write_text("".join(json.dumps({"id": i, "prompt": f"q {i}"}) + "\n" for i in range(2000)))
    cmd = [sys.executable, "-m", "hfbatch", "run", "--input", str(inp), "--output", str(out), "--model", MODEL]
    cmd += ["--api-base", server.api_base, "--hub-url", server.hub_url, "--concurrency", "4"]
    env = {**os.environ, "HF_TOKEN": server.config.token}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not (tmp_path / "out.jsonl.lock").exists() or not out.exists():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        going = CliRunner().invoke(cli, ["status", str(out)])
        assert going.exit_code == 4 and f"pid {proc.pid}" in going.output
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    after = CliRunner().invoke(cli, ["status", str(out)])
    assert after.exit_code == 1 and "incomplete" in after.output
