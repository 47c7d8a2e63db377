"""Money: prices from the router or by hand, cost per row, per provider and overall, and --bill-to.

The simulator bills what a real provider bills (whole 2xx replies, from their usage), so the
stats hfbatch writes are compared with `sim.billing()` over runs with faults in the mix.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from hfbatch.cli import cli
from hfbatch.errors import ExitCode, JobSpecError
from hfbatch.hub import find_model_entry
from hfbatch.jobfile import build_spec, load_job_file
from hfbatch.jobspec import JobSpec, ProviderSettings
from hfbatch.pricing import FROM_ROUTER, FROM_SETTINGS, FROM_TABLE, Price, ProviderInfo, parse_catalog, resolve_prices
from hfbatch.runner import run_job
from hfbatch.sim import Fault, SimProvider, SimServer
from hfbatch.stats import format_table
from tests.helpers import MODEL, one_model

pytestmark = pytest.mark.usefixtures("fast_time")

P1 = (0.2, 0.6)
P2 = (0.5, 1.5)


def write_prompts(path: Path, n: int) -> Path:
    """N rows with distinct ids and prompts of different lengths."""
    path.write_text("".join(json.dumps({"id": f"r{i}", "prompt": "word " * (i % 7 + 1)}) + "\n" for i in range(n)))
    return path


def spec_for(sim: SimServer, tmp_path: Path, rows: int = 120, **kw: Any) -> JobSpec:
    """A JobSpec over `rows` prompts, pointed at the simulator."""
    kw.setdefault("concurrency", 8)
    kw.setdefault("max_tokens", 32)
    inp = write_prompts(tmp_path / "in.jsonl", rows)
    return JobSpec(
        input=inp, output=tmp_path / "out.jsonl", model=MODEL, api_base=sim.api_base, hub_url=sim.hub_url, **kw
    )


def records(path: Path) -> list[dict[str, Any]]:
    """The JSON lines of a file."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


# --------------------------------------------------------------------------- what the router publishes


def test_the_catalog_reads_prices_and_metadata_and_tolerates_odd_shapes() -> None:
    """Published prices and speeds are read; a missing, negative or non-numeric price is unknown, never 0."""
    entry = {
        "id": MODEL,
        "providers": [
            {"provider": "a", "status": "live", "pricing": {"input": 0.2, "output": "0.6"}, "throughput": 80,
             "first_token_latency_ms": 300, "context_length": 8192, "supports_structured_output": False},
            {"provider": "b", "status": "error", "pricing": {"input": -1, "output": 2}},
            {"provider": "c", "pricing": {"input": True, "output": 1}},
            {"provider": "d", "is_free": True},
            {"provider": "e", "pricing": "cheap", "throughput": "fast"},
            "not an object",
            {"status": "live"},
        ],
    }  # fmt: skip
    catalog = parse_catalog(entry)
    assert list(catalog) == ["a", "b", "c", "d", "e"]
    a = catalog["a"]
    assert a.price == Price(0.2, 0.6) and a.throughput == 80 and a.first_token_latency_ms == 300
    assert a.context_length == 8192 and a.supports_structured_output is False and a.status == "live"
    assert catalog["b"].price is None and catalog["b"].status == "error"
    assert catalog["c"].price is None
    assert catalog["d"].price == Price(0.0, 0.0)
    assert catalog["e"].price is None and catalog["e"].throughput is None
    for plain in ({"id": MODEL, "object": "model"}, {"providers": "x"}, None, [1, 2], "text"):
        assert parse_catalog(plain) == {}


@pytest.mark.parametrize(
    "reply",
    [
        {"id": MODEL, "providers": []},
        {"object": "list", "data": [{"id": "other"}, {"id": MODEL, "providers": []}]},
        [{"id": MODEL, "providers": []}],
        {"data": {"id": MODEL, "providers": []}},
    ],
    ids=["one-model", "openai-list", "bare-list", "data-object"],
)
def test_the_model_entry_is_found_in_each_shape_of_reply(reply: Any) -> None:
    """`/models/{id}` and `/models` replies of every known shape give the model's entry."""
    assert find_model_entry(reply, MODEL) == {"id": MODEL, "providers": []}
    assert find_model_entry(reply, "absent/model") is None


def test_a_providers_own_table_beats_the_run_setting_which_beats_the_router() -> None:
    """Price precedence: [providers.NAME], then price_in/price_out, then the router, else unknown."""
    catalog = {"a": ProviderInfo("a", price=Price(1, 1)), "b": ProviderInfo("b", price=Price(2, 2))}
    table = {"a": Price(9, 9, FROM_TABLE)}
    assert resolve_prices(["a", "b", "c"], catalog) == {"a": Price(1, 1), "b": Price(2, 2), "c": None}
    setting = Price(5, 5, FROM_SETTINGS)
    got = resolve_prices(["a", "b", "c"], catalog, default=setting, per_provider=table)
    assert got == {"a": table["a"], "b": setting, "c": setting}
    assert got["a"] is not None and got["a"].source == FROM_TABLE and Price(1, 1).source == FROM_ROUTER


# --------------------------------------------------------------------------- cost equals the bill


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize(
    "sim_config",
    [
        one_model(
            SimProvider(
                "p1",
                price_in=P1[0],
                price_out=P1[1],
                faults=(Fault("429", rate=0.1, retry_after="0"), Fault("500", rate=0.1), Fault("empty", rate=0.1)),
            ),
            # Reached by fail-over only; it never reports usage, so what it bills is not known to the client.
            SimProvider("p2", price_in=P2[0], price_out=P2[1], faults=(Fault("no_usage"),)),
            seed=5,
        )
    ],
    indirect=True,
)
async def test_cost_in_stats_equals_what_the_providers_billed_with_faults(
    sim: SimServer, tmp_path: Path, stream: bool
) -> None:
    """Per provider and overall, cost_usd is usage x price of exactly the billed replies, empty ones included."""
    spec = spec_for(sim, tmp_path, rows=200, max_retries=1, stream=stream)
    report = await run_job(spec)
    assert report.exit_code is ExitCode.OK
    stats = json.loads(spec.stats_path.read_text())
    bill = sim.billing()["providers"]
    p1, p2, overall = stats["providers"]["p1"], stats["providers"]["p2"], stats["overall"]
    assert p1["failures"]["429"] and p1["failures"]["5xx"] and p1["failures"]["empty"]  # the mix happened
    assert p1["billed_replies"] == bill["p1"]["replies"] == p1["successes"] + p1["failures"]["empty"]
    assert p1["cost_usd"] == pytest.approx(bill["p1"]["cost_usd"], abs=1e-9) and p1["cost_exact"] is True
    assert (p1["prompt_tokens"], p1["completion_tokens"]) == (
        bill["p1"]["prompt_tokens"],
        bill["p1"]["completion_tokens"],
    )
    # p2's replies came without usage: counted as billed, their cost a lower bound (0 here), said so.
    assert bill["p2"]["replies"] > 0 and p2["replies_without_usage"] == p2["billed_replies"] == bill["p2"]["replies"]
    assert p2["cost_usd"] == 0 and p2["cost_exact"] is False
    assert overall["cost_usd"] == pytest.approx(sim.billing()["total"]["cost_usd"] - bill["p2"]["cost_usd"], abs=1e-9)
    assert overall["cost_exact"] is False and overall["replies_without_usage"] == bill["p2"]["replies"]
    # Each row carries its reply's cost: known on p1, unknown (null) without usage on p2.
    for rec in records(spec.output):
        if rec["provider"] == "p1":
            expected = (rec["prompt_tokens"] * P1[0] + rec["completion_tokens"] * P1[1]) / 1e6
            assert rec["cost_usd"] == pytest.approx(expected, abs=1e-12)
        else:
            assert rec["cost_usd"] is None
    assert stats["pricing"]["providers"]["p1"] | {"published": None} == {
        "price_in": P1[0], "price_out": P1[1], "source": FROM_ROUTER, "published": None,
    }  # fmt: skip


@pytest.mark.parametrize(
    "sim_config",
    [one_model(SimProvider("p1", price_in=P1[0], price_out=P1[1], faults=(Fault("500", rate=0.2),)), seed=2)],
    indirect=True,
)
async def test_cost_is_exact_when_every_billed_reply_has_usage(sim: SimServer, tmp_path: Path) -> None:
    """With usage on every reply, the overall cost equals the bill and is marked exact."""
    spec = spec_for(sim, tmp_path, rows=100)
    report = await run_job(spec)
    overall = report.stats["overall"]
    assert overall["cost_usd"] == pytest.approx(sim.billing()["total"]["cost_usd"], abs=1e-9)
    assert overall["cost_exact"] is True and overall["cost_usd"] > 0
    assert sum(r["cost_usd"] for r in records(spec.output)) == pytest.approx(overall["cost_usd"], abs=1e-9)


@pytest.mark.parametrize(
    "sim_config", [one_model(SimProvider("p1"), SimProvider("p2"), publish_prices=False)], indirect=True
)
async def test_a_server_without_prices_gives_unknown_cost_never_zero(sim: SimServer, tmp_path: Path) -> None:
    """No published prices: cost_usd is null per row, per provider and overall, and the table says '?'."""
    spec = spec_for(sim, tmp_path, rows=20)
    report = await run_job(spec)
    assert report.exit_code is ExitCode.OK
    stats = json.loads(spec.stats_path.read_text())
    assert stats["providers"]["p1"]["cost_usd"] is None and stats["overall"]["cost_usd"] is None
    assert stats["overall"]["cost_exact"] is False and stats["overall"]["billed_replies"] == 20
    assert {r["cost_usd"] for r in records(spec.output)} == {None}
    assert any("no price" in n for n in stats["pricing"]["notes"])
    table = format_table(stats)
    assert "cost: unknown" in table and table.splitlines()[1].endswith("?")


@pytest.mark.parametrize(
    "sim_config", [one_model(SimProvider("p1"), SimProvider("p2"), publish_prices=False)], indirect=True
)
async def test_prices_set_by_hand_price_the_billed_tokens(sim: SimServer, tmp_path: Path) -> None:
    """price_in/price_out price every provider; a [providers.NAME] table prices its own provider instead."""
    spec = spec_for(
        sim,
        tmp_path,
        rows=60,
        providers=("p2", "p1"),
        price_in=1.0,
        price_out=2.0,
        provider_settings={"p2": ProviderSettings(price_in=3.0, price_out=4.0)},
    )
    report = await run_job(spec)
    bill = sim.billing()["providers"]["p2"]
    p2 = report.stats["providers"]["p2"]
    assert p2["cost_usd"] == pytest.approx((bill["prompt_tokens"] * 3 + bill["completion_tokens"] * 4) / 1e6)
    assert report.stats["providers"]["p1"]["cost_usd"] == 0  # priced by the run's setting, and unused
    sources = {n: p["source"] for n, p in report.stats["pricing"]["providers"].items()}
    assert sources == {"p2": FROM_TABLE, "p1": FROM_SETTINGS}


async def test_a_plain_server_is_priced_by_hand_under_its_host_name(sim: SimServer, tmp_path: Path) -> None:
    """Without a Hub, the one provider is the server's host; --price-in/--price-out price it."""
    inp = write_prompts(tmp_path / "in.jsonl", 10)
    plain = JobSpec(
        input=inp,
        output=tmp_path / "out.jsonl",
        model=MODEL,
        api_base=sim.api_base,
        api_key_env="HF_TOKEN",
        price_in=1.0,
        price_out=1.0,
    )
    report = await run_job(plain)
    assert report.exit_code is ExitCode.OK and report.stats["rows"]["done"] == 10
    host = sim.api_base.split("/")[2]
    stats = report.stats["providers"][host]
    assert stats["cost_usd"] == pytest.approx((stats["prompt_tokens"] + stats["completion_tokens"]) / 1e6)


def test_the_end_of_run_table_has_a_cost_column_and_marks_lower_bounds() -> None:
    """The cost column shows dollars, '+' after a lower bound, and a line says why."""
    from hfbatch.stats import RunStats

    stats = RunStats(["a"])
    a = stats.provider("a")
    a.priced, a.billed_replies, a.replies_without_usage, a.cost_usd = True, 3, 1, 0.0125
    table = format_table(stats.to_dict(wall_time=1.0))
    lines = table.splitlines()
    assert lines[0].rstrip().endswith("cost$") and lines[1].endswith("0.012500+")
    assert "cost: $0.012500 for 3 billed replies (at least: 1 replies came without usage)" in table


# --------------------------------------------------------------------------- --bill-to


def test_bill_to_is_sent_on_every_chat_request(sim: SimServer, tmp_path: Path) -> None:
    """--bill-to ORG sends X-HF-Bill-To: ORG with each generation request; without it, no such header."""
    inp, out = write_prompts(tmp_path / "in.jsonl", 5), tmp_path / "out.jsonl"
    args = ["run", "--input", str(inp), "--output", str(out), "--model", MODEL]
    args += ["--api-base", sim.api_base, "--hub-url", sim.hub_url]
    result = CliRunner().invoke(cli, [*args, "--bill-to", "my-org"])
    assert result.exit_code == 0, result.output
    headers = list(sim.request_headers)
    assert len(headers) == 5 and all(h.get("X-HF-Bill-To") == "my-org" for h in headers)
    assert all("Authorization" not in h for h in headers)  # the sim never logs the token
    sim.reset_counts()
    again = CliRunner().invoke(cli, [*args, "--restart"])
    assert again.exit_code == 0 and all("X-HF-Bill-To" not in h for h in sim.request_headers)


# --------------------------------------------------------------------------- job-file settings


def job(tmp_path: Path, body: str) -> Path:
    """A job file with the required keys and `body`."""
    path = tmp_path / "job.toml"
    path.write_text(f'input = "in.jsonl"\noutput = "out.jsonl"\nmodel = "m"\n{body}', encoding="utf-8")
    return path


def test_providers_tables_give_per_provider_prices_and_the_order(tmp_path: Path) -> None:
    """[providers.NAME] sets that provider's prices; providers.order keeps the order a list would give."""
    path = job(tmp_path, '[providers]\norder = ["b", "a"]\n[providers.a]\nprice_in = 1\nprice_out = 2.5\n')
    spec = build_spec(load_job_file(path), {})
    assert spec.providers == ("b", "a")
    assert spec.provider("a") == ProviderSettings(price_in=1.0, price_out=2.5)
    assert spec.provider("b") == ProviderSettings()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("[providers.a]\nprice_ot = 1\n", "unknown key 'providers.a.price_ot' (did you mean 'price_out'?)"),
        ("[providers.a]\nprice_in = 1\n", "table 'providers.a': price_in and price_out are set together"),
        ('[providers.a]\nprice_in = "x"\nprice_out = 1\n', "key 'providers.a.price_in': expected a number"),
        ("[providers.a]\nprice_in = -1\nprice_out = 1\n", "key 'providers.a.price_in': must be at least 0"),
        ("[providers]\na = 3\n", "key 'providers.a': expected a table"),
        ("price_in = 0.5\n", "'price_in' and 'price_out' are set together"),
        ('bill_to = "my org"\n', "key 'bill_to': 'my org' is not an organization name"),
    ],
    ids=["unknown-key", "half-a-price", "wrong-type", "negative", "not-a-table", "half-a-setting", "bad-org"],
)
def test_bad_money_settings_name_the_file_and_the_key(tmp_path: Path, body: str, message: str) -> None:
    """Each mistake in a providers table or a money setting is refused, naming the file and the key."""
    path = job(tmp_path, body)
    with pytest.raises(JobSpecError) as raised:
        build_spec(load_job_file(path), {})
    assert str(raised.value).startswith(str(path)) and message in str(raised.value)


@pytest.mark.parametrize("sim_config", [one_model(SimProvider("p1"), publish_prices=False)], indirect=True)
async def test_a_parquet_output_without_prices_takes_costs_when_resumed_with_prices(
    sim: SimServer, tmp_path: Path
) -> None:
    """A first run with no price writes a typed, all-null cost column; a resume with prices adds to it."""
    import pyarrow.parquet as pq

    spec = spec_for(sim, tmp_path, rows=10)
    first = JobSpec(**{**_fields(spec), "output": tmp_path / "out.parquet"})
    assert (await run_job(first)).exit_code is ExitCode.OK
    write_prompts(spec.input, 20)
    priced = JobSpec(**{**_fields(first), "price_in": 1.0, "price_out": 1.0})
    assert (await run_job(priced, force=True)).exit_code is ExitCode.OK
    costs = pq.read_table(priced.output).column("cost_usd").to_pylist()
    assert len(costs) == 20 and costs.count(None) == 10 and all(c and c > 0 for c in costs if c is not None)


def _fields(spec: JobSpec) -> dict[str, Any]:
    """A JobSpec's settings, to build a changed copy."""
    return {f: getattr(spec, f) for f in ("input", "output", "model", "api_base", "hub_url", "max_tokens")}
