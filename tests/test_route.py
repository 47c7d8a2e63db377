"""`--route` orders the providers (cheapest, fastest); `[providers.NAME]` tables cap one provider's load."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from hfbatch.cli import cli
from hfbatch.errors import ExitCode, JobSpecError
from hfbatch.jobfile import build_spec, load_job_file
from hfbatch.jobspec import JobSpec
from hfbatch.pricing import Price, ProviderInfo
from hfbatch.route_order import order_providers
from hfbatch.runner import run_job
from hfbatch.sim import SimProvider, SimServer
from tests.helpers import MODEL, one_model

pytestmark = pytest.mark.usefixtures("fast_time")

ROUTED = one_model(
    SimProvider("pricey", price_in=3.0, price_out=15.0, throughput=200.0),
    SimProvider("cheap", price_in=0.1, price_out=0.3, throughput=20.0),
    SimProvider("plain"),
)

PRICES = {"a": Price(1.0, 1.0), "b": Price(0.1, 4.0), "c": None, "d": Price(0.5, 0.5)}
CATALOG = {"a": ProviderInfo("a", throughput=50.0), "b": ProviderInfo("b"), "d": ProviderInfo("d", throughput=90.0)}


@pytest.mark.parametrize(
    ("route", "max_tokens", "expected"),
    [
        ("order", None, ["a", "b", "c", "d"]),
        # 500 prompt + 500 completion tokens: b's dear output puts it last of the priced ones.
        ("cheapest", None, ["d", "a", "b", "c"]),
        # A short completion makes b's cheap prompt count most.
        ("cheapest", 10, ["b", "d", "a", "c"]),
        ("fastest", None, ["d", "a", "b", "c"]),
        # Replies so far had long prompts and short completions: b's cheap input wins.
        ("cheapest-seen", None, ["b", "d", "a", "c"]),
    ],
)
def test_routes_order_providers_and_keep_the_unranked_last(
    route: str, max_tokens: int | None, expected: list[str]
) -> None:
    """Ranked providers first by the route's measure; those it cannot rank follow in their own order."""
    seen = (2000.0, 20.0) if route == "cheapest-seen" else None
    route = route.removesuffix("-seen")
    assert (
        order_providers(list(PRICES), route, prices=PRICES, catalog=CATALOG, max_tokens=max_tokens, seen=seen)
        == expected
    )


def test_fastest_breaks_a_throughput_tie_by_first_token_latency() -> None:
    """Two providers with the same published throughput: the one that starts answering sooner goes first."""
    catalog = {
        "slow-start": ProviderInfo("slow-start", throughput=80.0, first_token_latency_ms=900.0),
        "quick-start": ProviderInfo("quick-start", throughput=80.0, first_token_latency_ms=150.0),
    }
    assert order_providers(["slow-start", "quick-start"], "fastest", prices={}, catalog=catalog) == [
        "quick-start",
        "slow-start",
    ]


def write_rows(path: Path, n: int) -> Path:
    """N prompt rows."""
    path.write_text("".join(json.dumps({"id": i, "prompt": f"question {i}"}) + "\n" for i in range(n)))
    return path


def spec_for(sim: SimServer, tmp_path: Path, **kw: Any) -> JobSpec:
    """A job over 40 rows against the simulator, few enough in flight for the first provider to take all."""
    kw.setdefault("concurrency", 4)
    return JobSpec(
        input=write_rows(tmp_path / "in.jsonl", 40),
        output=tmp_path / "out.jsonl",
        model=MODEL,
        api_base=sim.api_base,
        hub_url=sim.hub_url,
        max_tokens=16,
        **kw,
    )


@pytest.mark.parametrize("sim_config", [ROUTED], indirect=True)
@pytest.mark.parametrize(
    ("route", "first"), [("order", "pricey"), ("cheapest", "cheap"), ("fastest", "pricey")], ids=str
)
async def test_the_route_picks_the_provider_that_serves_the_rows(
    sim: SimServer, tmp_path: Path, route: str, first: str
) -> None:
    """With room on the first provider of the route, it gets every request; the stats keep the order."""
    spec = spec_for(sim, tmp_path, route=route)
    report = await run_job(spec)
    assert report.exit_code is ExitCode.OK
    counts = sim.counts()
    assert counts[first]["requests"] == 40
    assert sum(c["requests"] for c in counts.values()) == 40
    stats = json.loads(spec.stats_path.read_text())
    assert stats["provider_order"][0] == first and sorted(stats["provider_order"]) == ["cheap", "plain", "pricey"]
    assert stats["settings"]["route"] == route


@pytest.mark.parametrize("sim_config", [ROUTED], indirect=True)
def test_a_providers_table_caps_its_load_and_the_rest_spills_over(sim: SimServer, tmp_path: Path) -> None:
    """[providers.pricey] concurrency = 2 holds it to 2 in flight, the rest spill over; --route on the CLI too."""
    write_rows(tmp_path / "in.jsonl", 120)
    (tmp_path / "job.toml").write_text(
        f'input = "in.jsonl"\noutput = "out.jsonl"\nmodel = "{MODEL}"\napi_base = "{sim.api_base}"\n'
        f'hub_url = "{sim.hub_url}"\nconcurrency = 16\nmax_tokens = 16\n'
        "[providers.pricey]\nconcurrency = 2\nrpm = 60000\n",
        encoding="utf-8",
    )
    result = CliRunner().invoke(cli, ["run", str(tmp_path / "job.toml"), "--route", "cheapest"])
    assert result.exit_code == 0, result.output
    counts = sim.counts()
    assert sum(c["requests"] for c in counts.values()) == 120
    assert counts["pricey"]["requests"] > 0 and counts["cheap"]["requests"] > 0
    assert sim.max_in_flight().get("pricey", 0) <= 2
    stats = json.loads((tmp_path / "out.jsonl.stats.json").read_text())
    assert stats["provider_order"][0] == "cheap" and stats["settings"]["route"] == "cheapest"
    assert stats["providers"]["pricey"]["limits"]["limit"] <= 2


def test_route_from_the_cli_and_the_job_file_and_a_wrong_one_named(tmp_path: Path) -> None:
    """`route` is a job key and a flag (the flag wins); an unknown route names the key and the choices."""
    path = tmp_path / "job.toml"
    path.write_text('input = "in.jsonl"\noutput = "out.jsonl"\nmodel = "m"\nroute = "cheapest"\n', encoding="utf-8")
    assert build_spec(load_job_file(path), {}).route == "cheapest"
    assert build_spec(load_job_file(path), {"route": "fastest"}).route == "fastest"
    path.write_text('input = "in.jsonl"\noutput = "out.jsonl"\nmodel = "m"\nroute = "cheap"\n', encoding="utf-8")
    with pytest.raises(
        JobSpecError, match=r"key 'route': unknown route 'cheap' \(choose from order, cheapest, fastest\)"
    ):
        build_spec(load_job_file(path), {})


def test_a_providers_table_rejects_a_bad_limit(tmp_path: Path) -> None:
    """A provider's concurrency below 1 is refused, naming the table's key."""
    path = tmp_path / "job.toml"
    path.write_text(
        'input = "in.jsonl"\noutput = "out.jsonl"\nmodel = "m"\n[providers.a]\nconcurrency = 0\n', encoding="utf-8"
    )
    with pytest.raises(JobSpecError, match=r"key 'providers.a.concurrency': must be at least 1"):
        load_job_file(path)


# At a nominal row (500 prompt tokens) "dear-out" is cheaper; at the short prompts sent, "even" is.
RERANKED = one_model(
    SimProvider("dear-out", price_in=0.1, price_out=10.0),
    SimProvider("even", price_in=1.0, price_out=1.0),
)


@pytest.mark.parametrize("sim_config", [RERANKED], indirect=True)
async def test_cheapest_ranks_again_at_the_tokens_seen(sim: SimServer, tmp_path: Path) -> None:
    """The first rows go to the provider cheapest for a nominal row; once replies show short prompts, the other."""
    spec = spec_for(sim, tmp_path, route="cheapest")
    spec.input.write_text("".join(json.dumps({"id": i, "prompt": f"q{i}"}) + "\n" for i in range(400)))
    report = await run_job(spec)
    assert report.exit_code is ExitCode.OK
    counts = sim.counts()
    assert counts["dear-out"]["requests"] >= 100
    assert counts["even"]["requests"] >= 200
