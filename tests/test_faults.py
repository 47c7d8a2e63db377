"""The fault matrix: each fault the simulator can inject, with two providers, in a run of a few hundred rows."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from hfbatch.errors import ExitCode
from hfbatch.jobspec import JobSpec
from hfbatch.runner import RunReport, run_job
from hfbatch.sim import Fault, SimProvider, SimServer
from tests.conftest import StartSim
from tests.helpers import MODEL, one_model

ROWS = 300

# Each fault, and the class a row that failed with it is recorded under.
FAULTS: list[tuple[Fault, str]] = [
    (Fault("402"), "402"),
    (Fault("429", retry_after="1"), "429"),
    (Fault("429"), "429"),
    (Fault("500"), "5xx"),
    (Fault("503"), "5xx"),
    (Fault("hang"), "timeout"),
    (Fault("reset"), "connection"),
    (Fault("down"), "connection"),
    (Fault("malformed"), "malformed"),
    (Fault("truncate"), "malformed"),
]
IDS = ["402", "429-retry-after", "429-bare", "500", "503", "hang", "reset", "down", "malformed", "truncate"]


pytestmark = pytest.mark.usefixtures("fast_time")


@pytest.fixture
def server(start_sim: StartSim, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Awaitable[SimServer]]:
    """A factory: `await server(p1, p2)` starts a simulator with those two providers, its token in HF_TOKEN."""

    async def make(p1: SimProvider, p2: SimProvider) -> SimServer:
        config = one_model(p1, p2, seed=11, hang_seconds=30.0)
        monkeypatch.setenv("HF_TOKEN", config.token)
        return await start_sim(config)

    return make


async def run(sim: SimServer, tmp_path: Path, **kw: Any) -> tuple[RunReport, JobSpec]:
    """Run ROWS rows against `sim`; fail the test if it hangs.

    The per-attempt deadline is short only where a provider hangs: elsewhere a deadline that a
    loaded machine can miss would count requests the server never read.
    """
    hangs = any(f.kind == "hang" for m in sim.config.models for p in m.providers for f in p.faults)
    kw.setdefault("timeout", 0.5 if hangs else 10.0)
    inp = tmp_path / "in.jsonl"
    inp.write_text("".join(json.dumps({"id": i, "prompt": f"question {i}"}) + "\n" for i in range(ROWS)))
    spec = JobSpec(
        input=inp,
        output=tmp_path / "out.jsonl",
        model=MODEL,
        api_base=sim.api_base,
        hub_url=sim.hub_url,
        concurrency=32,
        max_tokens=16,
        max_retries=2,
        **kw,
    )
    report = await asyncio.wait_for(run_job(spec), timeout=60)
    return report, spec


def outcome(spec: JobSpec) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The output records and the error records."""
    done = [json.loads(x) for x in spec.output.read_text().splitlines()] if spec.output.exists() else []
    errors = [json.loads(x) for x in spec.errors_path.read_text().splitlines()] if spec.errors_path.exists() else []
    return done, errors


def assert_stats_match_server(spec: JobSpec, sim: SimServer) -> dict[str, Any]:
    """Per provider, the requests in the stats file equal the requests the server received."""
    stats: dict[str, Any] = json.loads(spec.stats_path.read_text())
    counts = sim.counts()
    for name in ("p1", "p2"):
        assert stats["providers"][name]["requests"] == counts.get(name, {}).get("requests", 0), name
    return stats


@pytest.mark.parametrize(("fault", "kind"), FAULTS, ids=IDS)
async def test_one_faulty_provider_every_row_done_and_counts_match(
    server: Any, tmp_path: Path, fault: Fault, kind: str
) -> None:
    """A provider failing a third of its requests: every row is done (via retries or the other provider)."""
    faulty = Fault(fault.kind, rate=1.0 if fault.kind == "402" else 0.3, retry_after=fault.retry_after)
    sim = await server(SimProvider("p1", latency=0.002, faults=(faulty,)), SimProvider("p2", latency=0.002))
    report, spec = await run(sim, tmp_path)
    done, errors = outcome(spec)
    assert report.exit_code is ExitCode.OK, errors[:3]
    assert sorted(r["id"] for r in done) == list(range(ROWS))
    stats = assert_stats_match_server(spec, sim)
    assert stats["providers"]["p1"]["failures"][kind] > 0


@pytest.mark.parametrize(("fault", "kind"), FAULTS, ids=IDS)
async def test_both_providers_failing_every_row_is_done_or_an_error_of_that_class(
    server: Any, tmp_path: Path, fault: Fault, kind: str
) -> None:
    """Both providers always failing: each row reached is in the errors file with the fault's class.

    429s never fail a row by themselves: there the rows wait for room until the deadline they were given.
    """
    sim = await server(SimProvider("p1", faults=(fault,)), SimProvider("p2", faults=(fault,)))
    report, spec = await run(sim, tmp_path, **({"max_wait": 0.3} if kind == "429" else {}))
    done, errors = outcome(spec)
    assert not done
    assert errors and {e["kind"] for e in errors} == {kind}
    assert all(e["provider"] in ("p1", "p2") for e in errors) or kind == "429"
    assert len(Counter(e["id"] for e in errors)) == len(errors)
    assert report.exit_code is ExitCode.FAILED_ROWS
    if len(errors) < ROWS:
        # The run stopped early: every provider was out, so the rest waits for a rerun.
        assert "every provider is out" in (report.message or "")
    assert_stats_match_server(spec, sim)


async def test_401_stops_at_once_and_keeps_what_was_done(server: Any, tmp_path: Path) -> None:
    """When the token is refused mid-run, the run stops with the auth code and the results so far stay."""
    sim = await server(SimProvider("p1", faults=(Fault("401", after=60),)), SimProvider("p2"))
    report, spec = await run(sim, tmp_path, providers=("p1", "p2"))
    assert report.exit_code is ExitCode.AUTH
    done, errors = outcome(spec)
    assert len(done) >= 1
    assert not errors  # rows cut short by the stop are not failures: the next run sends them
    counts = sim.counts()
    answered = sum(c["by_outcome"].get("200", 0) for c in counts.values())
    assert answered - len(done) <= 32  # every answered row was kept, but for the ones in flight at the stop
    assert counts["p1"]["by_outcome"].get("401", 0) >= 1
    assert json.loads(spec.stats_path.read_text())["exit_code"] == int(ExitCode.AUTH)
