"""A run's events and progress on stderr: plain lines by default, one JSON object per line with --log-format json."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from hfbatch import defaults, events
from hfbatch.cli import cli
from hfbatch.errors import RateLimitError
from hfbatch.progress import Progress
from hfbatch.provider_pool import ProviderLimits, ProviderPool
from hfbatch.sim import Fault, SimConfig, SimProvider, SimServer
from hfbatch.stats import RunStats
from hfbatch.wire import ChatResult
from tests.helpers import MODEL, one_model

pytestmark = pytest.mark.usefixtures("fast_time")
ROWS = 120


@pytest.fixture
def sim_config(request: pytest.FixtureRequest) -> SimConfig:
    """The first provider is out of credits, the second fails every request with a 500, the third is healthy.

    A test parametrizing `sim_config` indirectly gets its own instead.
    """
    given: SimConfig | None = getattr(request, "param", None)
    return given or one_model(
        SimProvider("broke", faults=(Fault("402"),)),
        SimProvider("flaky", faults=(Fault("500"),)),
        # Slow enough that the run outlasts the flaky provider's four cool-downs (scaled down).
        SimProvider("ok", latency=0.05),
    )


def run(sim: SimServer, tmp_path: Path, *extra: str, rows: int = ROWS) -> Result:
    """`hfbatch run` of `rows` rows against the simulator, in-process."""
    inp = tmp_path / "in.jsonl"
    inp.write_text("".join(json.dumps({"id": i, "prompt": f"p {i}"}) + "\n" for i in range(rows)))
    args = ["run", "--input", str(inp), "--output", str(tmp_path / "out.jsonl"), "--model", MODEL]
    args += ["--api-base", sim.api_base, "--hub-url", sim.hub_url, "--concurrency", "8", *extra]
    return CliRunner().invoke(cli, args, catch_exceptions=False)


def kinds(lines: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    """The events of one kind."""
    return [e for e in lines if e["event"] == kind]


def test_json_log_lines_parse_and_carry_the_fault_runs_events(sim: SimServer, tmp_path: Path) -> None:
    """--log-format json: every stderr line is a JSON event; the 402, the breaker trips and the run's end are there."""
    result = run(sim, tmp_path, "--log-format", "json")
    assert result.exit_code == 0, result.stderr
    lines = [json.loads(line) for line in result.stderr.splitlines()]
    assert all({"event", "level", "time", "message"} <= set(e) for e in lines)
    out = {e["provider"]: e for e in kinds(lines, "provider_out")}
    assert len(out) == len(kinds(lines, "provider_out")) == 2  # each provider goes out once
    assert out["broke"]["status"] == 402 and out["broke"]["kind"] == "402" and out["broke"]["level"] == "warning"
    trips = kinds(lines, "breaker_trip")
    assert trips and {e["provider"] for e in trips} == {"flaky"}
    assert [e["trips"] for e in trips] == list(range(1, defaults.BREAKER_MAX_TRIPS + 1))
    assert trips[-1]["cooldown_s"] is None and "flaky" in out  # the last trip put it out
    assert "circuit-breaker trips" in out["flaky"]["reason"] and out["flaky"]["status"] == 500
    (end,) = kinds(lines, "run_end")
    assert end is lines[-1] and end["exit_code"] == 0 and end["reason"] is None
    assert end["rows"] == {"done": ROWS, "failed": 0, "bad_input": 0, "skipped": 0}
    assert "(all)" not in result.stderr  # no table among the JSON lines: the stats file has it


def test_plain_log_says_the_same_events_in_words(sim: SimServer, tmp_path: Path) -> None:
    """The default format tells the same events as lines of text, then the table, then how the run ended."""
    result = run(sim, tmp_path)
    assert result.exit_code == 0, result.stderr
    err = result.stderr
    assert "hfbatch: provider broke is out for this run: HTTP 402" in err
    assert "hfbatch: provider flaky: circuit breaker tripped (1 in a row" in err
    assert "hfbatch: provider flaky is out for this run" in err
    assert err.index("(all)") < err.index("hfbatch: run ended with exit code 0")
    assert err.rstrip().endswith(f"run ended with exit code 0 ({ROWS} done, 0 failed, 0 bad input)")


def test_json_errors_are_json_too(sim: SimServer, tmp_path: Path) -> None:
    """A run that cannot start says why in one JSON line, with the exit code."""
    result = run(sim, tmp_path, "--log-format", "json", "--providers", "nobody")
    assert result.exit_code == 2
    (line,) = result.stderr.splitlines()
    error = json.loads(line)
    assert error["event"] == "error" and error["exit_code"] == 2 and "nobody" in error["message"]


def test_a_bad_job_file_is_a_json_error_with_the_flag(tmp_path: Path) -> None:
    """With --log-format json on the command line, even an error in the job file is one JSON line."""
    job = tmp_path / "job.toml"
    job.write_text('input = "in.jsonl"\noutput = "out.jsonl"\nmodel = "m"\nconcurrncy = 4\n')
    result = CliRunner().invoke(cli, ["run", str(job), "--log-format", "json"])
    assert result.exit_code == 2
    (line,) = result.stderr.splitlines()
    error = json.loads(line)
    assert error["event"] == "error" and "did you mean 'concurrency'" in error["message"]


def test_log_format_takes_plain_or_json_only(tmp_path: Path) -> None:
    """Another value is a job-file error naming the key and the choices."""
    job = tmp_path / "job.toml"
    job.write_text('input = "in.jsonl"\noutput = "out.jsonl"\nmodel = "m"\nlog_format = "xml"\n')
    result = CliRunner().invoke(cli, ["run", str(job)])
    assert result.exit_code == 2
    assert "key 'log_format': expected plain or json, got 'xml'" in result.stderr


def test_plain_progress_names_providers_answering_429() -> None:
    """A provider answering 429 since the last line is named in it, with its count over that window."""
    stream = io.StringIO()
    progress = Progress(stream, interval=0.0)
    stats = RunStats(["alpha", "beta"])
    stats.provider("beta").failures["429"] = 37
    progress(stats)
    progress(stats)  # no new 429 since: not named again
    first, second = stream.getvalue().splitlines()
    assert "beta: 37 429s in the last" in first and "alpha" not in first
    assert "429" not in second


def test_json_progress_is_one_object_per_line() -> None:
    """With log_format json, progress is a JSON `progress` event, never a bar, with the rows and the 429s."""
    stream = io.StringIO()
    progress = Progress(stream, interval=0.0, log_format="json")
    stats = RunStats(["beta"])
    stats.rows_total, stats.rows_done, stats.rows_failed = 100, 40, 2
    stats.provider("beta").failures["429"] = 5
    progress(stats)
    progress.close(stats)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [e["event"] for e in lines] == ["progress", "progress"]
    assert lines[0]["rows_done"] == 40 and lines[0]["rows_failed"] == 2 and lines[0]["rows_total"] == 100
    assert lines[0]["rate_limited"] == {"beta": 5} and lines[1]["rate_limited"] == {}


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def reply(provider: str) -> ChatResult:
    """A short successful reply."""
    return ChatResult("x", "stop", 1, 1, provider, "m", latency=0.01)


async def test_the_pool_tells_when_a_providers_learned_limit_moves() -> None:
    """Four in flight taken, the fifth refused again and again: at the next look, one event says the cap is four."""
    clock = Clock()
    seen: list[events.Event] = []
    limits = {"*": ProviderLimits(concurrency=8)}
    pool = ProviderPool(["a", "b"], RunStats(), limits=limits, clock=clock, on_event=seen.append)
    held = [await pool.acquire(["a"]) for _ in range(4)]
    for _ in range(20):  # at the fifth place, one at a time: the provider took five then
        clock.now += 0.01
        pool.on_success(await pool.acquire(["a"]), reply("a"))
    clock.now += 1.0
    for _ in range(10):  # until the capacity code puts the 429s down to places, not chance
        clock.now += 0.001
        pool.on_failure(await pool.acquire(["a"]), RateLimitError("slow down", provider="a", status=429), 0.001)
        if pool.limits_now()["a"]["ceiling"] is not None:
            break
    assert not seen  # looked at every RATE_LIMIT_CHECK_INTERVAL seconds, not at every outcome
    clock.now += events.RATE_LIMIT_CHECK_INTERVAL
    pool.on_success(held[0], reply("a"))
    (event,) = seen
    assert event["event"] == "rate_limit" and event["provider"] == "a" and event["level"] == "warning"
    assert event["ceiling"] == 4 and event["before"]["ceiling"] is None and event["cause"] == "concurrency"
    assert "at most 4 in flight" in event["message"] and "put down to requests in flight" in event["message"]
    clock.now += events.RATE_LIMIT_CHECK_INTERVAL
    pool.on_success(held[1], reply("a"))
    assert len(seen) == 1  # nothing moved since


async def test_a_chance_429_moves_no_limit_and_makes_no_event() -> None:
    """One 429 amid successes is put down to chance: the next look finds nothing to tell."""
    clock = Clock()
    seen: list[events.Event] = []
    pool = ProviderPool(
        ["a"], RunStats(), limits={"*": ProviderLimits(concurrency=8)}, clock=clock, on_event=seen.append
    )
    leases = [await pool.acquire(["a"]) for _ in range(6)]
    clock.now += 0.1
    for lease in leases[:-1]:
        pool.on_success(lease, reply("a"))
    pool.on_failure(leases[-1], RateLimitError("busy", provider="a", status=429), 0.1)
    clock.now += events.RATE_LIMIT_CHECK_INTERVAL
    pool.on_success(await pool.acquire(["a"]), reply("a"))
    assert seen == []


def test_a_small_move_of_a_learned_pace_is_not_news() -> None:
    """A pace that moved by under a tenth makes no event; one that halved, or appeared, does."""
    before = {"a": {"ceiling": None, "rate_rps": 10.0}, "b": {"ceiling": None, "rate_rps": 10.0}}
    after = {"a": {"ceiling": None, "rate_rps": 10.5}, "b": {"ceiling": None, "rate_rps": 5.0}}
    (event,) = events.rate_limit_changes(before, after)
    assert event["provider"] == "b" and event["rate_rps"] == 5.0 and event["before"]["rate_rps"] == 10.0
    (new,) = events.rate_limit_changes({"c": {"rate_rps": None}}, {"c": {"rate_rps": 2.0}})
    assert "2 requests/s" in new["message"] and "unpaced" in new["message"]


def test_a_budget_cap_is_one_json_event_then_the_runs_end(sim: SimServer, tmp_path: Path) -> None:
    """--max-requests reached: one budget_reached event with the cap and the requests sent, then run_end, exit 5."""
    result = run(sim, tmp_path, "--log-format", "json", "--providers", "ok", "--max-requests", "30")
    assert result.exit_code == 5, result.stderr
    lines = [json.loads(line) for line in result.stderr.splitlines()]
    (budget,) = kinds(lines, "budget_reached")
    assert budget["level"] == "warning" and "--max-requests 30" in budget["reason"]
    assert budget["requests"] == 30 and budget["caps"] == {
        "max_cost": None,
        "max_requests": 30,
        "max_tokens_total": None,
    }
    (end,) = kinds(lines, "run_end")
    assert end is lines[-1] and end["exit_code"] == 5 and "budget reached" in end["reason"]
    assert lines.index(budget) < lines.index(end) and end["rows"]["done"] == 30


@pytest.mark.parametrize(
    # 50 ms a request: with the simulator in this process, a reply waits for the GIL on its way back, and at
    # 10 ms that wait is as long as the request, so our count of requests in flight says little about the cap.
    "sim_config",
    [one_model(SimProvider("capped", latency=0.05, max_concurrency=4))],
    indirect=True,
)
def test_json_logs_tell_when_a_providers_cap_is_learned(
    sim: SimServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A provider refusing more than four at once: rate_limit events say the lower limits learned, and why."""
    monkeypatch.setattr(events, "RATE_LIMIT_CHECK_INTERVAL", 0.0)  # look at every outcome, not every 10 s
    args = ("--log-format", "json", "--concurrency", "16", "--no-learned-limits")
    result = run(sim, tmp_path, *args, rows=300)  # enough refusals to tell a cap from chance
    assert result.exit_code == 0, result.stderr
    lines = [json.loads(line) for line in result.stderr.splitlines()]
    # The capacity code puts these 429s down to places (or, on a loaded machine, sometimes the pace).
    learned = [e for e in kinds(lines, "rate_limit") if e["cause"] is not None]
    assert learned and all(e["provider"] == "capped" and e["level"] == "warning" for e in learned)
    assert {e["cause"] for e in learned} <= {"concurrency", "requests"}
    assert all("its 429s were put down to" in e["message"] for e in learned)
    capped = [e for e in learned if e["cause"] == "concurrency"]
    assert all(e["ceiling"] < (e["before"]["ceiling"] or 16) for e in capped)
