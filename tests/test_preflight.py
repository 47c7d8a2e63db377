"""Failing fast on systematic mistakes: each is one line on stderr and an exit code within seconds.

Unknown provider names and unreachable endpoints are found before any request; a run whose
first rows all fail the same way stops there; and a run that wrote no result reruns with
corrected settings without --restart.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from hfbatch.cli import cli
from hfbatch.errors import BadRequestError, ModelNotSupportedError, ServerError
from hfbatch.failfast import FailFast, refused_everywhere
from hfbatch.sim import Fault, SimProvider, SimServer
from tests.helpers import MODEL, one_model

pytestmark = pytest.mark.usefixtures("fast_time")

#: A fail-fast case must end within this many seconds (no cool-downs, no minutes of retries).
QUICK = 10.0


def write_prompts(path: Path, n: int, column: str = "prompt") -> Path:
    """N rows with distinct ids, their text under `column`."""
    path.write_text("".join(json.dumps({"id": i, column: f"question {i}"}) + "\n" for i in range(n)))
    return path


def run_cli(sim: SimServer | None, tmp_path: Path, *extra: str, rows: int = 100, hub: bool = True) -> Result:
    """`hfbatch run` over `rows` prompts against the simulator (or only the flags given), in-process."""
    inp = tmp_path / "in.jsonl"
    if not inp.exists():
        write_prompts(inp, rows)
    args = ["run", "--input", str(inp), "--output", str(tmp_path / "out.jsonl"), "--model", MODEL]
    if sim is not None:
        args += ["--api-base", sim.api_base, *(["--hub-url", sim.hub_url] if hub else [])]
    return CliRunner().invoke(cli, [*args, "--concurrency", "4", "--max-tokens", "16", *extra])


def sent(sim: SimServer) -> int:
    """Chat requests the simulator received."""
    return sum(c["requests"] for c in sim.counts().values())


def one_error_line(result: Result) -> str:
    """The run's single 'hfbatch: error:' line on stderr."""
    lines = [line for line in result.stderr.splitlines() if line.startswith("hfbatch: error:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


# --------------------------------------------------------------------------- before any request


def test_an_unknown_provider_name_exits_2_before_any_request(sim: SimServer, tmp_path: Path) -> None:
    """--providers naming a provider the Hub does not map for the model: exit 2, naming it and the real ones."""
    result = run_cli(sim, tmp_path, "--providers", "p1,tgether")
    assert result.exit_code == 2, result.output
    line = one_error_line(result)
    assert "'tgether'" in line and "p1, p2" in line
    assert sent(sim) == 0 and not (tmp_path / "out.jsonl.manifest.json").exists()


def test_a_plain_server_is_one_provider_named_by_its_host(sim: SimServer, tmp_path: Path) -> None:
    """Without a Hub there is one provider, its host: another name exits 2; the host's name runs."""
    host = sim.api_base.split("/")[2]
    wrong = run_cli(sim, tmp_path, "--providers", "together", hub=False, rows=5)
    assert wrong.exit_code == 2 and host in one_error_line(wrong) and sent(sim) == 0
    right = run_cli(sim, tmp_path, "--providers", host, "--api-key-env", "HF_TOKEN", hub=False)
    assert right.exit_code == 0, right.output


def test_a_providers_table_for_a_provider_not_serving_the_model_exits_2(sim: SimServer, tmp_path: Path) -> None:
    """A [providers.NAME] table whose NAME does not serve the model is refused before any request."""
    write_prompts(tmp_path / "in.jsonl", 5)
    path = tmp_path / "job.toml"
    path.write_text(
        f'input = "in.jsonl"\noutput = "out.jsonl"\nmodel = "{MODEL}"\napi_base = "{sim.api_base}"\n'
        f'hub_url = "{sim.hub_url}"\n[providers.p9]\nprice_in = 1\nprice_out = 1\n'
    )
    result = CliRunner().invoke(cli, ["run", str(path)])
    assert result.exit_code == 2 and "providers.p9" in one_error_line(result) and sent(sim) == 0


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("hub", [True, False], ids=["with-hub", "plain"])
def test_an_unreachable_endpoint_exits_6_at_once_with_one_line(sim: SimServer, tmp_path: Path, hub: bool) -> None:
    """--api-base where nothing answers: exit 6 in seconds, one line naming it, nothing written."""
    base = f"http://127.0.0.1:{closed_port()}/v1"
    args = ["run", "--input", str(write_prompts(tmp_path / "in.jsonl", 50)), "--output", str(tmp_path / "o.jsonl")]
    args += ["--model", MODEL, "--api-base", base, *(["--hub-url", sim.hub_url] if hub else [])]
    started = time.monotonic()
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 6, result.output
    assert time.monotonic() - started < QUICK
    line = one_error_line(result)
    assert f"cannot reach the API at {base}" in line and "nothing was sent" in line
    assert not (tmp_path / "o.jsonl").exists() and not (tmp_path / "o.jsonl.manifest.json").exists()


# --------------------------------------------------------------------------- the first rows all failing alike


def test_rows_all_missing_the_prompt_column_stop_the_run_with_exit_2(sim: SimServer, tmp_path: Path) -> None:
    """A prompt column no row has: the run stops after 20 bad rows with the reason on stderr, nothing sent."""
    write_prompts(tmp_path / "in.jsonl", 5000, column="text")
    started = time.monotonic()
    result = run_cli(sim, tmp_path)
    assert result.exit_code == 2, result.output
    assert time.monotonic() - started < QUICK
    assert "the first 20 rows all failed the same way" in result.stderr and "'prompt'" in result.stderr
    assert sent(sim) == 0
    errors = (tmp_path / "out.jsonl.errors.jsonl").read_text().splitlines()
    assert 20 <= len(errors) <= 1024  # the reader yields every 512 rows: the stop lands by then


@pytest.mark.parametrize(
    ("fault", "shown"),
    [("400", "HTTP 400"), ("422", "HTTP 422"), ("404", "HTTP 404"), ("model_not_supported", "HTTP 400")],
)
def test_every_provider_refusing_every_row_stops_the_run_with_exit_2(
    sim_in_thread: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fault: str, shown: str
) -> None:
    """The same non-retryable 400/404/422 from every provider on the first rows: exit 2 with the reason, in seconds."""
    config = one_model(SimProvider("p1", faults=(Fault(fault),)), SimProvider("p2", faults=(Fault(fault),)))
    sim = sim_in_thread(config)
    monkeypatch.setenv("HF_TOKEN", config.token)
    started = time.monotonic()
    result = run_cli(sim, tmp_path, rows=1000)
    assert result.exit_code == 2, result.output
    assert time.monotonic() - started < QUICK
    assert shown in result.stderr
    assert sent(sim) < 100  # it stopped early: the other rows wait for the corrected rerun


@pytest.mark.parametrize("sim_config", [one_model(SimProvider("p1", faults=(Fault("400", after=10),)))], indirect=True)
def test_rows_failing_after_some_succeeded_are_not_a_systematic_mistake(sim: SimServer, tmp_path: Path) -> None:
    """Once a row succeeded, later failures alike do not stop the run: it ends with exit 1."""
    result = run_cli(sim, tmp_path, "--concurrency", "1", rows=60)
    assert result.exit_code == 1, result.output
    assert len((tmp_path / "out.jsonl.errors.jsonl").read_text().splitlines()) == 50


def test_fail_fast_waits_for_every_one_of_the_first_rows_whatever_order_replies_come_in() -> None:
    """The first rows by input order decide, all of them: numbers in messages aside, replies in any order."""
    check = FailFast(threshold=20)
    for index in range(30):
        check.row_read(index)
    too_long = [BadRequestError(f"input of {n} tokens is too long", status=400) for n in range(30)]
    # Rows 20..29 come back first: they are not among the first rows and decide nothing.
    assert not any(check.failed_row(i, too_long[i]) for i in range(29, 19, -1))
    tripped = [check.failed_row(i, too_long[i]) for i in range(19, -1, -1)]
    assert tripped == [False] * 19 + [True] and check.reason and "HTTP 400" in check.reason


@pytest.mark.parametrize("settle", ["success", "other reason", "5xx", "disabled"])
def test_fail_fast_is_settled_by_a_success_another_reason_or_a_transient_failure(settle: str) -> None:
    """Any success, a first row failing for another reason or a 5xx, or a resume: it never trips after."""
    check = FailFast(threshold=3, enabled=settle != "disabled")
    check.bad_row(0, "no 'prompt' field")
    check.row_read(1)
    if settle == "success":
        check.row_ok()
    elif settle == "other reason":
        check.bad_row(2, "'id' is null")
    elif settle == "5xx":
        check.failed_row(1, ServerError("boom", status=500))
    assert not any(check.bad_row(i, "no 'prompt' field") for i in range(3, 13)) and check.reason is None


def test_every_provider_refusing_is_told_apart_from_providers_out_for_other_reasons() -> None:
    """All providers out for 400/404/422: a reason to stop with exit 2; any other cause is not."""
    refused = refused_everywhere({"a": ModelNotSupportedError("x", status=404), "b": BadRequestError("y", status=422)})
    assert refused is not None and "a: HTTP 404: x; b: HTTP 422: y" in refused
    assert refused_everywhere({"a": ModelNotSupportedError("x", status=404), "b": None}) is None
    assert refused_everywhere({"a": ModelNotSupportedError("no live provider", status=None)}) is None
    assert refused_everywhere({}) is None


def test_good_rows_before_many_bad_ones_alike_are_no_systematic_mistake(sim: SimServer, tmp_path: Path) -> None:
    """Ten good rows, then thirty without a prompt: the first rows did not all fail, so the run ends with exit 1."""
    rows = [{"id": i, "prompt": f"q {i}"} for i in range(10)] + [{"id": i, "text": "x"} for i in range(10, 40)]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = run_cli(sim, tmp_path)
    assert result.exit_code == 1, result.output
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == 10
    # The rerun has only the thirty bad rows left: these settings worked before, so it is still exit 1.
    again = run_cli(sim, tmp_path)
    assert again.exit_code == 1 and "failed the same way" not in again.stderr


# --------------------------------------------------------------------------- rerun after nothing was written


def test_a_run_that_wrote_no_result_reruns_with_other_settings_without_restart(sim: SimServer, tmp_path: Path) -> None:
    """Wrong prompt column, exit 2; the rerun with the right one (a setting in the manifest) just runs."""
    write_prompts(tmp_path / "in.jsonl", 40, column="text")
    first = run_cli(sim, tmp_path)
    assert first.exit_code == 2 and (tmp_path / "out.jsonl.manifest.json").exists()
    fixed = run_cli(sim, tmp_path, "--prompt-column", "text")
    assert fixed.exit_code == 0, fixed.output
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == 40
    manifest = json.loads((tmp_path / "out.jsonl.manifest.json").read_text())
    assert manifest["settings"]["prompt_column"] == "text"
    # With results written, a change of settings is refused as before.
    changed = run_cli(sim, tmp_path, "--prompt-column", "text", "--max-tokens", "8")
    assert changed.exit_code == 2 and "max_tokens was 16, now 8" in one_error_line(changed)
