"""Hedging in the run's tail: a slow request gets a second try elsewhere; the first answer wins."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from hfbatch.errors import ExitCode
from hfbatch.hedging import HEDGE_MIN_SAMPLES, hedge_delay
from hfbatch.jobspec import JobSpec
from hfbatch.runner import run_job
from hfbatch.sim import Fault, SimProvider, SimServer
from tests.helpers import MODEL, one_model

pytestmark = pytest.mark.usefixtures("fast_time")

# Two requests in a hundred to "slow" take 30 s (so they never count in its p99); "quick" answers at once.
SLOW_TAIL = one_model(
    SimProvider("slow", faults=(Fault("slow", rate=0.02, delay=30.0),)), SimProvider("quick"), seed=11
)
# The same with 2 s stragglers, for the run without hedging (it waits for them).
SHORT_TAIL = one_model(
    SimProvider("slow", faults=(Fault("slow", rate=0.02, delay=2.0),)), SimProvider("quick"), seed=11
)


@pytest.mark.parametrize(
    ("p99", "samples", "scale", "expected"),
    [
        (None, 100, 1.0, None),  # no reply yet: nothing says what is slow
        (0.5, HEDGE_MIN_SAMPLES - 1, 1.0, None),  # too few replies
        (0.5, HEDGE_MIN_SAMPLES, 1.0, 1.5),  # three p99s
        (0.1, 100, 1.0, 1.0),  # never sooner than a second
        (0.0001, 100, 0.001, 0.001),  # ... scaled down in tests
    ],
)
def test_hedge_delay(p99: float | None, samples: int, scale: float, expected: float | None) -> None:
    """A request is hedged after three p99 latencies of its provider, once 20 replies have set the p99."""
    assert hedge_delay(p99, samples, scale) == (None if expected is None else pytest.approx(expected))


def spec_for(sim: SimServer, tmp_path: Path, **kw: object) -> JobSpec:
    """200 rows over both providers, few enough in flight that the slow provider takes most of them."""
    inp = tmp_path / "in.jsonl"
    inp.write_text("".join(json.dumps({"id": f"r{i}", "prompt": f"question {i}"}) + "\n" for i in range(200)))
    return JobSpec(
        input=inp,
        output=tmp_path / "out.jsonl",
        model=MODEL,
        api_base=sim.api_base,
        hub_url=sim.hub_url,
        concurrency=8,
        max_tokens=16,
        timeout=60.0,
        **kw,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("sim_config", [SLOW_TAIL], indirect=True)
async def test_slow_requests_in_the_tail_are_hedged_and_each_row_is_written_once(
    sim: SimServer, tmp_path: Path
) -> None:
    """Requests still in flight at the end get a hedge that answers; the slow ones are cancelled and counted."""
    spec = spec_for(sim, tmp_path)
    report = await run_job(spec)
    assert report.exit_code is ExitCode.OK
    out = [json.loads(line) for line in spec.output.read_text().splitlines()]
    assert Counter(r["id"] for r in out) == Counter(f"r{i}" for i in range(200))
    stats = json.loads(spec.stats_path.read_text())
    providers = stats["providers"]
    hedges = sum(p["hedges"] for p in providers.values())
    won = sum(p["hedges_won"] for p in providers.values())
    assert hedges >= 1 and won >= 1
    # A won hedge cancelled a slow request; the stats count it as sent, as the server did.
    assert providers["slow"]["cancelled"] >= 1
    counts = sim.counts()
    for name, p in providers.items():
        assert p["requests"] == counts[name]["requests"], name
    hedged = [r for r in out if r["attempts"] > 1]
    assert len(hedged) >= won


@pytest.mark.parametrize("sim_config", [SHORT_TAIL], indirect=True)
async def test_no_hedge_waits_for_the_slow_requests(sim: SimServer, tmp_path: Path) -> None:
    """With --no-hedge every request is sent once: no hedges, nothing cancelled, one request per row."""
    spec = spec_for(sim, tmp_path, hedge=False)
    report = await run_job(spec)
    assert report.exit_code is ExitCode.OK
    providers = json.loads(spec.stats_path.read_text())["providers"]
    assert all(p["hedges"] == 0 and p["cancelled"] == 0 for p in providers.values())
    assert sum(c["requests"] for c in sim.counts().values()) == 200
