"""`hfbatch run` as a separate process: killed with SIGKILL, stopped with SIGINT/SIGTERM, locked out."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from hfbatch.outputs import OutputFiles
from hfbatch.sim import Fault, SimConfig, SimProvider, SimServer, reply_for
from tests.helpers import MODEL, one_model

TOKEN = "hf_crash_test_token"
ROWS = 600


@pytest.fixture
def sim_config(request: pytest.FixtureRequest) -> SimConfig:
    """Some latency, so kills land while requests are in flight; a test may give its own providers."""
    providers = getattr(request, "param", None) or (
        SimProvider("p1", latency=0.02, faults=(Fault("500", rate=0.05),)),
        SimProvider("p2", latency=0.02),
    )
    return one_model(*providers, token=TOKEN)


def make_input(tmp_path: Path, rows: int = ROWS) -> tuple[Path, dict[str, str]]:
    """A JSONL input; returns its path and the prompt of each id."""
    prompts = {f"row-{i}": f"tell me about item {i} {'and more ' * (i % 5)}".strip() for i in range(rows)}
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps({"id": k, "prompt": v}) + "\n" for k, v in prompts.items()))
    return path, prompts


def start(sim: SimServer, inp: Path, out: Path, *extra: str, grace: str = "30") -> subprocess.Popen[bytes]:
    """Start `hfbatch run` as its own process."""
    cmd = [
        sys.executable,
        "-m",
        "hfbatch",
        "run",
        "--input",
        str(inp),
        "--output",
        str(out),
        "--model",
        MODEL,
        "--api-base",
        sim.api_base,
        "--hub-url",
        sim.hub_url,
        "--concurrency",
        "16",
        "--max-tokens",
        "32",
        "--grace",
        grace,
        *extra,
    ]
    env = {**os.environ, "HF_TOKEN": TOKEN, "HFBATCH_TIME_SCALE": "0.001"}
    env.pop("HFBATCH_DEBUG", None)
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def kill(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the run and reap it."""
    proc.send_signal(signal.SIGKILL)
    proc.communicate()


def results_so_far(out: Path) -> int:
    """How many whole result lines have been written (JSONL output or a Parquet output's journal)."""
    path = OutputFiles(out).paths.journal
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def wait_for_results(proc: subprocess.Popen[bytes], out: Path, at_least: int, limit: float = 60.0) -> None:
    """Wait until the run has written `at_least` results (or has ended)."""
    deadline = time.monotonic() + limit
    while results_so_far(out) < at_least and proc.poll() is None:
        assert time.monotonic() < deadline, "the run made no progress"
        time.sleep(0.005)


def read_records(out: Path) -> list[dict[str, Any]]:
    """Every output record; JSONL lines must each parse (no torn record). OpenAI batch lines become {id, output}."""
    if out.suffix == ".parquet":
        records: list[dict[str, Any]] = pq.read_table(out).to_pylist()
        return records
    text = out.read_text(encoding="utf-8")
    assert text.endswith("\n")
    lines = [json.loads(line) for line in text.splitlines()]
    return [
        {"id": r["custom_id"], "output": r["response"]["body"]["choices"][0]["message"]["content"]}
        if "custom_id" in r
        else r
        for r in lines
    ]


def check_complete(out: Path, prompts: dict[str, str]) -> None:
    """Each input id once, each output the reply to its own prompt, manifest and stats readable."""
    records = read_records(out)
    counts = Counter(r["id"] for r in records)
    assert set(counts) == set(prompts) and set(counts.values()) == {1}
    for r in records:
        assert r["output"] == reply_for([{"role": "user", "content": prompts[r["id"]]}], 32).text, r["id"]
    json.loads(out.with_name(out.name + ".manifest.json").read_text())
    stats = json.loads(out.with_name(out.name + ".stats.json").read_text())
    # The stats file adds up every run into the output: `done` counts every result in it.
    assert stats["rows"]["done"] == len(prompts)


@pytest.mark.parametrize(
    ("suffix", "extra"),
    [
        pytest.param(".jsonl", (), id="jsonl"),
        pytest.param(".parquet", (), id="parquet"),
        pytest.param(".jsonl", ("--output-format", "openai"), id="openai"),
    ],
)
def test_kill_9_at_random_moments_then_resume_loses_and_repeats_nothing(
    sim: SimServer, tmp_path: Path, suffix: str, extra: tuple[str, ...]
) -> None:
    """Six SIGKILLs at random moments, each followed by a resume; in the end every id once, no torn record."""
    inp, prompts = make_input(tmp_path)
    out = tmp_path / f"out{suffix}"
    rng = random.Random({".jsonl": 1234, ".parquet": 4321}[suffix] + len(extra))
    kills = 0
    target = 0
    while kills < 6:
        proc = start(sim, inp, out, *extra)
        target = min(ROWS - 1, target + rng.randint(20, 80))
        wait_for_results(proc, out, target)
        time.sleep(rng.random() * 0.02)  # land anywhere: mid-request, mid-write, mid-flush
        if proc.poll() is not None:
            proc.communicate()
            break  # finished before the kill: nothing left to interrupt
        kill(proc)
        kills += 1
    assert kills >= 5
    proc = start(sim, inp, out, *extra)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()
    check_complete(out, prompts)
    # What was paid twice is at most what was in flight at each kill (16 requests): results are
    # handed to the OS in the tick they arrive, not held back for a batch.
    assert sim.paid_twice() <= kills * 16, (sim.paid_twice(), kills)
    assert not OutputFiles(out).paths.journal.exists() or suffix == ".jsonl"
    if extra:
        assert all(line.startswith('{"id": "batch_req_') for line in out.read_text().splitlines())


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_drains_in_flight_rows_and_exits_interrupted(sim: SimServer, tmp_path: Path, sig: int) -> None:
    """SIGINT or SIGTERM: stop taking rows, finish the ones in flight, write stats, exit 130; resume completes."""
    inp, prompts = make_input(tmp_path)
    out = tmp_path / "out.jsonl"
    proc = start(sim, inp, out)
    wait_for_results(proc, out, 100)
    sent_before = sum(c["requests"] for c in sim.counts().values())
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err.decode()
    assert b"stopping" in err and b"Traceback" not in err
    stats = json.loads(out.with_name("out.jsonl.stats.json").read_text())
    assert stats["exit_code"] == 130 and "rerun" in stats["stopped_because"]
    done = len(read_records(out))
    assert 100 <= done < ROWS
    # Rows in flight when the signal came were finished, not dropped: few more requests than rows were sent.
    assert sum(c["requests"] for c in sim.counts().values()) >= sent_before
    proc = start(sim, inp, out)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()
    check_complete(out, prompts)


@pytest.mark.parametrize(
    "sim_config", [(SimProvider("p1", latency=0.01, faults=(Fault("hang", after=40),)),)], indirect=True
)
def test_second_ctrl_c_stops_at_once_without_corrupting_output(sim: SimServer, tmp_path: Path) -> None:
    """With requests hanging, a second SIGINT ends the run long before the grace period; the output stays whole."""
    inp, _ = make_input(tmp_path, 200)
    out = tmp_path / "out.jsonl"
    proc = start(sim, inp, out, grace="600")
    wait_for_results(proc, out, 40)
    time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.2)
    assert proc.poll() is None  # still waiting for the hanging requests
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err.decode()
    assert b"stopping now" in err
    records = read_records(out)
    assert len(records) == len({r["id"] for r in records}) == 40


@pytest.mark.parametrize("sim_config", [(SimProvider("p1", latency=0.01, faults=(Fault("hang"),)),)], indirect=True)
def test_grace_period_cancels_requests_that_do_not_finish(sim: SimServer, tmp_path: Path) -> None:
    """Requests still in flight when the grace period ends are cancelled; the run exits 130 with stats."""
    inp, _ = make_input(tmp_path, 50)
    out = tmp_path / "out.jsonl"
    proc = start(sim, inp, out, grace="0.3")
    deadline = time.monotonic() + 30
    while sim.counts().get("p1", {}).get("requests", 0) < 4:
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err.decode()
    assert json.loads(out.with_name("out.jsonl.stats.json").read_text())["exit_code"] == 130


def test_a_lock_left_by_a_dead_run_is_taken_over(sim: SimServer, tmp_path: Path) -> None:
    """A lock file whose holder was killed does not block the next run."""
    inp, prompts = make_input(tmp_path, 30)
    out = tmp_path / "out.jsonl"
    proc = start(sim, inp, out, "--concurrency", "1")
    wait_for_results(proc, out, 1)
    kill(proc)
    assert out.with_name("out.jsonl.lock").read_text().strip() == str(proc.pid)
    proc = start(sim, inp, out)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()
    check_complete(out, prompts)


def test_second_run_on_the_same_output_exits_4_naming_the_pid(sim: SimServer, tmp_path: Path) -> None:
    """While one run writes an output, another on the same output exits 4 at once and names the first's pid."""
    inp, _ = make_input(tmp_path)
    out = tmp_path / "out.jsonl"
    first = start(sim, inp, out, "--concurrency", "2")
    wait_for_results(first, out, 1)
    second = start(sim, inp, out)
    _, err = second.communicate(timeout=60)
    kill(first)
    assert second.returncode == 4
    assert f"pid {first.pid}".encode() in err
