"""The token is a secret: after a run through every error path, it is in no file and nothing printed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hfbatch.sim import Fault, SimConfig, SimProvider, SimServer
from tests.helpers import MODEL, one_model

TOKEN = "hf_Recognisable_Secret_7Q9x2Lm4"


@pytest.fixture
def sim_config() -> SimConfig:
    """Providers that between them answer with every error hfbatch handles, one quoting the token back."""
    faults = (
        Fault("leak", rate=0.15),
        Fault("429", rate=0.1, retry_after="0"),
        Fault("500", rate=0.1),
        Fault("malformed", rate=0.05),
        Fault("truncate", rate=0.05),
        Fault("reset", rate=0.05),
        Fault("hang", rate=0.05),
        Fault("422", rate=0.05),
        Fault("401", after=150),
    )
    return one_model(
        SimProvider("broke", faults=(Fault("402"),)),
        SimProvider("messy", faults=faults),
        SimProvider("leaky", faults=(Fault("leak"),)),
        token=TOKEN,
    )


def hfbatch(*args: str, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the hfbatch command with the token in HF_TOKEN."""
    env = {**os.environ, "HF_TOKEN": TOKEN, "HFBATCH_TIME_SCALE": "0.001", **(env_extra or {})}
    return subprocess.run(
        [sys.executable, "-m", "hfbatch", *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_token_is_nowhere_after_every_error_path(sim: SimServer, tmp_path: Path) -> None:
    """402, 429, 5xx with the token quoted back, malformed, truncated, reset, hang, 422, bad rows, then 401."""
    inp = tmp_path / "in.jsonl"
    lines = [json.dumps({"id": i, "prompt": f"question {i}"}) for i in range(300)]
    lines[7] = "{broken json"
    inp.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out.jsonl"
    where = ["--api-base", sim.api_base, "--hub-url", sim.hub_url]
    runs = [
        hfbatch(
            "run",
            "--input",
            str(inp),
            "--output",
            str(out),
            "--model",
            MODEL,
            "--timeout",
            "0.3",
            "--concurrency",
            "8",
            *where,
        ),
        hfbatch(
            "run",
            "--input",
            str(inp),
            "--output",
            str(tmp_path / "leak.jsonl"),
            "--model",
            MODEL,
            "--providers",
            "leaky",
            "--max-retries",
            "1",
            *where,
        ),
        hfbatch("chat", MODEL, "hello", "--timeout", "0.3", *where),
        hfbatch("mapping", MODEL, *where),
        hfbatch("chat", MODEL, "hello", "--timeout", "0.3", *where, env_extra={"HFBATCH_DEBUG": "1"}),
    ]
    assert runs[0].returncode == 3, runs[0].stderr  # the 401 came and stopped the run
    assert runs[1].returncode == 1, runs[1].stderr  # every row failed with the leaking 500
    counts = sim.counts()
    assert counts["leaky"]["by_outcome"].get("500", 0) > 0 and counts["messy"]["requests"] > 150
    errors = (tmp_path / "leak.jsonl.errors.jsonl").read_text()
    assert "upstream refused the request" in errors  # the message is kept, the token is not
    for run in runs:
        assert TOKEN not in run.stdout and TOKEN not in run.stderr
    written = [p for p in tmp_path.iterdir() if p.is_file()]
    assert len(written) >= 6
    for path in written:
        assert TOKEN.encode() not in path.read_bytes(), path.name
