"""A CLI that explains itself: the summary table, model lists that say where they come from, helps that are whole."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner, Result

from hfbatch.catalog import FALLBACK_MODELS, MODEL_ALIASES
from hfbatch.cli import cli
from hfbatch.sim import SimServer
from hfbatch.stats import TABLE_WIDTH, RunStats, format_table
from tests.helpers import MODEL

#: A port nothing listens on: connections are refused at once.
DEAD_URL = "http://127.0.0.1:1"


def invoke(*args: str) -> Result:
    """Run the CLI in-process."""
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def busy_stats() -> RunStats:
    """A long run's stats: long provider names, millions of requests, every failure class, slow replies, dollars."""
    stats = RunStats(["featherless-ai", "fireworks-ai"])
    for st in stats.providers.values():
        st.requests, st.successes, st.retries, st.failovers_out, st.breaker_trips = 4_321_000, 3_999_999, 12, 98_765, 3
        for kind, n in {"402": 1, "429": 250_000, "5xx": 99_999, "timeout": 12_345, "401": 1, "4xx": 2}.items():
            st.failures[kind] = n
        st.failures["connection"], st.failures["empty"], st.failures["invalid_output"] = 10, 20, 30
        st.priced, st.cost_usd, st.billed_replies, st.replies_without_usage = True, 12_345.678, 4_000_000, 1
        for seconds in (0.5, 1.5, 119.0):
            st.latency.add(seconds)
        stats.rows_done += 3_999_999
    return stats


def test_the_summary_table_fits_100_columns_with_a_legend() -> None:
    """Every line fits 100 columns; the columns are named, a legend says what 'other' holds, rare lines appear."""
    lines = format_table(busy_stats().to_dict(wall_time=3600.0)).splitlines()
    assert all(len(line) <= TABLE_WIDTH for line in lines), max(lines, key=len)
    head = lines[0].split()
    assert head[:4] == ["provider", "requests", "ok", "402"] and "failovers" in head and head[-2:] == ["cost", "$"]
    assert lines[1].startswith("featherless-ai ") and lines[3].startswith("(all) ")
    legend = lines[4]
    assert legend.startswith("402 to other: failed attempts") and "empty" in legend and "invalid output" in legend
    assert "retries on the same provider: featherless-ai 12, fireworks-ai 12" in lines
    assert "circuit-breaker trips: featherless-ai 3, fireworks-ai 3" in lines


def test_the_other_column_adds_up_the_rarer_failure_classes() -> None:
    """401, 4xx, connection, malformed, empty and invalid output are counted in 'other', exactly when small."""
    stats = RunStats(["p"])
    st = stats.provider("p")
    st.requests = 21
    for kind, n in {"401": 1, "4xx": 2, "connection": 3, "malformed": 4, "empty": 5, "invalid_output": 6}.items():
        st.failures[kind] = n
    lines = format_table(stats.to_dict(wall_time=1.0)).splitlines()
    cells = dict(zip(lines[0].replace(" ms", "_ms").replace("cost $", "cost").split(), lines[1].split(), strict=True))
    assert cells["other"] == "21" and cells["requests"] == "21" and cells["ok"] == "0"
    assert cells["402"] == cells["429"] == cells["5xx"] == cells["timeout"] == "0"


def test_big_counts_are_shortened_in_the_table_only() -> None:
    """Counts from 100,000 on read 123k or 4.3M; the stats dict keeps them exact."""
    data = busy_stats().to_dict(wall_time=1.0)
    row = format_table(data).splitlines()[1].split()
    assert row[1:4] == ["4.3M", "4.0M", "1"] and row[4] == "250k" and row[5] == "99999"
    assert data["providers"]["fireworks-ai"]["requests"] == 4_321_000


def test_models_says_when_it_shows_the_built_in_list(sim: SimServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """A Hub that refuses the token: the built-in list, flagged on stderr (exit 0); --strict fails with exit 3."""
    monkeypatch.setenv("HF_TOKEN", "hf_not_the_sims_token")
    where = ["--api-base", sim.api_base, "--hub-url", sim.hub_url]
    result = invoke("models", *where)
    assert result.exit_code == 0
    assert result.stdout.splitlines() == list(FALLBACK_MODELS)
    assert "built-in list" in result.stderr and "not live data" in result.stderr and "HTTP 401" in result.stderr
    strict = invoke("models", "--strict", *where)
    assert strict.exit_code == 3 and not strict.stdout
    assert strict.stderr.startswith("hfbatch: error: cannot list the live models")
    assert "hf_not_the_sims_token" not in result.output + strict.output


def test_models_strict_with_the_hub_down_exits_6(sim: SimServer) -> None:
    """A Hub that cannot be reached is a failure outside the rows: --strict exits 6."""
    result = invoke("models", "--strict", "--api-base", sim.api_base, "--hub-url", DEAD_URL)
    assert result.exit_code == 6 and "cannot connect" in result.stderr


def test_models_live_list_says_nothing_more(sim: SimServer) -> None:
    """The live list goes to stdout with no warning, --strict or not."""
    result = invoke("models", "--strict", "--api-base", sim.api_base, "--hub-url", sim.hub_url)
    assert result.exit_code == 0 and result.stdout.splitlines() == [MODEL] and not result.stderr


def test_models_aliases_lists_every_alias_without_asking_anyone() -> None:
    """`models --aliases` prints each short name and the model it stands for (no network, no token)."""
    result = invoke("models", "--aliases", "--hub-url", DEAD_URL)
    assert result.exit_code == 0
    assert [line.split() for line in result.stdout.splitlines()] == [[a, m] for a, m in MODEL_ALIASES.items()]


def test_mapping_with_api_base_alone_asks_no_hub(sim: SimServer) -> None:
    """--api-base without --hub-url: the server is the one provider, named by host and port; the Hub is not asked."""
    result = invoke("mapping", MODEL, "--api-base", sim.api_base)
    assert result.exit_code == 0, result.output
    host = sim.api_base.split("/")[2]
    assert result.stdout.splitlines() == [f"{host}\t{MODEL}\tlive\tconversational"]
    assert "no Hub is asked" in result.stderr
    assert sim.hub_requests == 0 and sum(c["requests"] for c in sim.counts().values()) == 0


def test_the_command_list_shows_whole_descriptions() -> None:
    """`hfbatch --help` names every command with a description that is not cut off."""
    result = invoke("--help")
    commands = result.stdout.split("Commands:")[1].splitlines()[1:]
    assert {line.split()[0] for line in commands} == set(cli.commands)
    assert not [line for line in commands if line.endswith("...")]


def test_sim_options_have_help() -> None:
    """`hfbatch sim --help` says what --host and --port are."""
    text = " ".join(invoke("sim", "--help").stdout.split())
    assert "--host TEXT Address to listen on" in text and "--port INTEGER Port to listen on" in text


def _without_default(command: click.Command) -> list[str]:
    """The options of `command` whose help shows no default (on/off flags are off unless given)."""
    missing = []
    for param in command.params:
        if not isinstance(param, click.Option) or (param.is_flag and not param.secondary_opts):
            continue
        shown = (param.show_default and param.default is not None) or param.required  # click says [required]
        text = (param.help or "").lower()
        if not (shown or "default" in text or "required" in text):
            missing.append(param.opts[0])
    return missing


@pytest.mark.parametrize("name", sorted(cli.commands))
def test_every_option_shows_its_default(name: str) -> None:
    """Each option's help shows its default, or says what happens without it, or that it is required."""
    assert _without_default(cli.commands[name]) == []
