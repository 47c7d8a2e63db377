"""Hard caps: --max-cost, --max-requests and --max-tokens-total are never passed, exit 5, and a rerun resumes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from hfbatch.budget import Budget
from hfbatch.cli import cli
from hfbatch.errors import BudgetReached
from hfbatch.pricing import Price
from hfbatch.sim import Fault, SimConfig, SimProvider, SimServer
from hfbatch.wire import ChatResult
from tests.conftest import SimInThread
from tests.helpers import MODEL, one_model

pytestmark = pytest.mark.usefixtures("fast_time")
PRICE = (2.0, 10.0)  # USD per million tokens, in and out


@pytest.fixture
def sim_config() -> SimConfig:
    """Two priced providers, one of them with a few 5xx (retries cost too)."""
    return one_model(
        SimProvider("p1", latency=0.01, price_in=PRICE[0], price_out=PRICE[1], faults=(Fault("500", rate=0.1),)),
        SimProvider("p2", latency=0.01, price_in=PRICE[0], price_out=PRICE[1]),
    )


def run(sim: SimServer, tmp_path: Path, *extra: str, rows: int = 400) -> Result:
    """`hfbatch run` over `rows` prompts at concurrency 64."""
    inp = tmp_path / "in.jsonl"
    if not inp.exists():
        inp.write_text("".join(json.dumps({"id": i, "prompt": f"tell me about {i} " * 5}) + "\n" for i in range(rows)))
    args = ["run", "--input", str(inp), "--output", str(tmp_path / "out.jsonl"), "--model", MODEL]
    args += ["--api-base", sim.api_base, "--hub-url", sim.hub_url, "--concurrency", "64", "--max-tokens", "32"]
    return CliRunner().invoke(cli, [*args, *extra])


def test_max_cost_is_never_passed_at_concurrency_64_and_a_larger_budget_resumes(sim: SimServer, tmp_path: Path) -> None:
    """Spend stays under --max-cost with 64 in flight; exit 5; a rerun with more budget finishes each row once."""
    first = run(sim, tmp_path, "--max-cost", "0.0005")
    assert first.exit_code == 5, first.output
    assert "budget reached" in first.output
    billed = sim.billing()["total"]["cost_usd"]
    assert 0 < billed <= 0.0005
    done_first = len((tmp_path / "out.jsonl").read_text().splitlines())
    assert 0 < done_first < 400
    second = run(sim, tmp_path, "--max-cost", "1")
    assert second.exit_code == 0, second.output
    ids = [json.loads(x)["id"] for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert sorted(ids) == list(range(400)) and sim.paid_twice() == 0


@pytest.mark.parametrize(
    ("flag", "value", "counter"),
    [("--max-requests", "50", "requests"), ("--max-tokens-total", "5000", "tokens")],
)
def test_plain_caps_stop_with_exit_5(sim: SimServer, tmp_path: Path, flag: str, value: str, counter: str) -> None:
    """--max-requests and --max-tokens-total stop admitting at their cap, with exit 5."""
    result = run(sim, tmp_path, flag, value)
    assert result.exit_code == 5, result.output
    counts = sim.counts()
    if counter == "requests":
        assert sum(c["requests"] for c in counts.values()) <= 50
    else:
        total = sim.billing()["total"]
        assert total["prompt_tokens"] + total["completion_tokens"] <= 5000


def test_max_cost_without_prices_is_refused_before_any_request(
    sim_in_thread: SimInThread, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A provider that publishes no price cannot be held to --max-cost: exit 2, nothing sent."""
    server = sim_in_thread(one_model(SimProvider("free")))
    monkeypatch.setenv("HF_TOKEN", server.config.token)
    result = run(server, tmp_path, "--max-cost", "1")
    assert result.exit_code == 2 and "--max-cost needs" in result.output
    assert sum(c["requests"] for c in server.counts().values()) == 0


def test_budget_reserves_the_worst_case_and_counts_what_was_billed() -> None:
    """A reservation holds prompt x in + max_tokens x out; settling counts the usage billed instead."""
    b = Budget(max_cost=0.001, prices={"p": Price(*PRICE)})
    held = b.reserve("p", 100, 50)
    assert held.cost == pytest.approx((100 * 2 + 50 * 10) / 1e6)
    b.settle(held, ChatResult("x", "stop", 80, 20, "p", "m"))
    assert b.spent == pytest.approx((80 * 2 + 20 * 10) / 1e6)
    with pytest.raises(BudgetReached):
        b.reserve("p", 100, 100_000)
    assert b.reached is not None
