"""Shards as the engines run them: processes side by side, `--shard auto` from the engine's variables, one killed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from hfbatch.shards import shard_of
from hfbatch.sim import Fault, SimConfig, SimProvider, SimServer
from tests.helpers import MODEL, one_model

ROWS = 600
SHARDS = 3
#: Each engine's variables for shard K of SHARDS, and the flags it needs besides `--shard auto`.
ENGINES: dict[str, tuple[Any, list[str]]] = {
    "kubernetes": (lambda k: {"JOB_COMPLETION_INDEX": str(k)}, ["--shards", str(SHARDS)]),
    "slurm": (
        # An array declared as --array=1-3: task ids start at SLURM_ARRAY_TASK_MIN.
        lambda k: {
            "SLURM_ARRAY_TASK_ID": str(k + 1),
            "SLURM_ARRAY_TASK_MIN": "1",
            "SLURM_ARRAY_TASK_COUNT": str(SHARDS),
        },
        [],
    ),
}


@pytest.fixture
def sim_config() -> SimConfig:
    """Two providers with some latency (so a kill lands mid-flight), one failing now and then."""
    return one_model(
        SimProvider("p1", latency=0.02, faults=(Fault("500", rate=0.05),), price_in=1.0, price_out=2.0),
        SimProvider("p2", latency=0.02, price_in=0.5, price_out=0.5),
    )


def start(sim: SimServer, inp: Path, out: Path, engine: str, k: int) -> subprocess.Popen[bytes]:
    """Start shard `k` as its engine would: `hfbatch run --shard auto` with the engine's variables set."""
    variables, flags = ENGINES[engine]
    env = {**os.environ, "HFBATCH_TIME_SCALE": "0.001", **variables(k)}
    for name in ("JOB_COMPLETION_INDEX", "SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_MIN", "SLURM_ARRAY_TASK_COUNT"):
        if name not in variables(k):
            env.pop(name, None)  # the test runner's own, if any
    env.pop("HFBATCH_DEBUG", None)
    cmd = [sys.executable, "-m", "hfbatch", "run", "--input", str(inp), "--output", str(out), "--model", MODEL]
    cmd += ["--api-base", sim.api_base, "--hub-url", sim.hub_url, "--concurrency", "8", "--max-tokens", "32"]
    return subprocess.Popen([*cmd, "--shard", "auto", *flags], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def results_so_far(out: Path) -> int:
    """Whole result lines written so far."""
    try:
        return out.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def stats_of(path: Path) -> dict[str, Any]:
    """The stats file beside an output."""
    data: dict[str, Any] = json.loads(path.with_name(path.name + ".stats.json").read_text())
    return data


@pytest.mark.parametrize("engine", sorted(ENGINES))
def test_shards_side_by_side_one_killed_and_rerun_then_merged(sim: SimServer, tmp_path: Path, engine: str) -> None:
    """Every id once in the merge, shards disjoint and near ROWS/SHARDS each, merged stats the sum of the parts."""
    inp = tmp_path / "in.jsonl"
    inp.write_text("".join(json.dumps({"id": f"row-{i}", "prompt": f"item {i}"}) + "\n" for i in range(ROWS)))
    template = tmp_path / "part-{shard}.jsonl"
    parts = [tmp_path / f"part-{k:05d}-of-{SHARDS:05d}.jsonl" for k in range(SHARDS)]
    procs = [start(sim, inp, template, engine, k) for k in range(SHARDS)]
    victim = 1
    deadline = time.monotonic() + 60
    while results_so_far(parts[victim]) < 20:
        assert time.monotonic() < deadline and procs[victim].poll() is None, "shard 1 made no progress"
        time.sleep(0.005)
    procs[victim].send_signal(signal.SIGKILL)  # a pod evicted, a node lost
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode in (0, 1) or proc is procs[victim], err.decode()
    assert procs[victim].returncode == -signal.SIGKILL
    assert not parts[victim].with_name(parts[victim].name + ".stats.json").exists()
    # The engine retries the pod or task: it resumes the part.
    rerun = start(sim, inp, template, engine, victim)
    _, err = rerun.communicate(timeout=120)
    assert rerun.returncode in (0, 1), err.decode()
    assert stats_of(parts[victim])["runs"][0]["killed"] is True  # the killed run is in the history
    out = tmp_path / "all.jsonl"
    merge = subprocess.run(
        [sys.executable, "-m", "hfbatch", "merge", "--output", str(out), *map(str, parts)],
        capture_output=True,
        timeout=120,
    )
    assert merge.returncode == 0, merge.stderr.decode()
    merged = Counter(json.loads(line)["id"] for line in out.read_text().splitlines())
    errors = out.with_name("all.jsonl.errors.jsonl")
    failed = [json.loads(line)["id"] for line in errors.read_text().splitlines()] if errors.exists() else []
    assert set(merged.values()) == {1} and not set(merged) & set(failed)
    assert sorted([*merged, *failed]) == sorted(f"row-{i}" for i in range(ROWS))
    for k, part in enumerate(parts):
        ids = [json.loads(line)["id"] for line in part.read_text().splitlines()]
        assert {shard_of(i, SHARDS) for i in ids} == {k}
        owned = sum(shard_of(f"row-{i}", SHARDS) == k for i in range(ROWS))
        assert abs(owned - ROWS / SHARDS) <= 0.2 * ROWS / SHARDS
    stats, shards = stats_of(out), [stats_of(p) for p in parts]
    for key in ("requests", "successes", "retries", "prompt_tokens", "completion_tokens", "billed_replies"):
        assert stats["overall"][key] == sum(s["overall"][key] for s in shards), key
    assert stats["overall"]["cost_usd"] == pytest.approx(sum(s["overall"]["cost_usd"] for s in shards))
    assert stats["rows"]["done"] == len(merged) and stats["rows"]["failed"] == len(failed)
    # A killed run's requests after its last timeline snapshot are lost to the stats: at most the server's count.
    assert stats["overall"]["requests"] <= sum(c["requests"] for c in sim.counts().values())
    assert sorted({r["shard"] for r in stats["runs"]}) == [f"{k}/{SHARDS}" for k in range(SHARDS)]
    assert len(stats["runs"]) == SHARDS + 1  # the victim has two: the killed run and its rerun
