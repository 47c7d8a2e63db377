"""`--push-to-hub`, `--push-every` and `hfbatch push`: outputs, stats and cards committed to the simulated Hub."""

from __future__ import annotations

import asyncio
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import yaml
from click.testing import CliRunner, Result
from huggingface_hub import HfFileSystem

from hfbatch.card import CARD_MARKER, CardInfo, OutputSummary, render_card, size_category
from hfbatch.cli import cli
from hfbatch.errors import ExitCode, PushError
from hfbatch.hubfiles import HubAccess
from hfbatch.jobspec import JobSpec
from hfbatch.outputs.manifest import hold_lock
from hfbatch.push import PushTarget, push_output
from hfbatch.runner import run_job
from hfbatch.sim import SimConfig, SimProvider, SimServer
from hfbatch.sim.hub_repos import hub_repos
from hfbatch.sim.hub_repos_config import HubFault, SimDataset, SimHubRepos
from tests.helpers import MODEL, one_model

REPO = "org/results"
ROWS = [{"id": f"r{i}", "prompt": f"write about topic {i}"} for i in range(120)]


def hub_config(*providers: SimProvider, faults: tuple[HubFault, ...] = (), **kw: Any) -> SimConfig:
    """Two providers (or those given) and a Hub whose repo endpoints inject `faults`."""
    datasets = (SimDataset("org/own-card", {"README.md": b"# My own card\n"}),)
    return one_model(
        *(providers or (SimProvider("p1"), SimProvider("p2"))),
        hub_repos=SimHubRepos(datasets=datasets, faults=faults),
        **kw,
    )


@pytest.fixture
def sim_config(request: pytest.FixtureRequest) -> SimConfig:
    """Healthy providers and Hub, unless a test parametrizes its own."""
    param: SimConfig | None = getattr(request, "param", None)
    return param or hub_config()


@pytest.fixture
def inp(tmp_path: Path) -> Path:
    """The prompts, as JSONL."""
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    return path


def spec_for(sim: SimServer, inp: Path, out: Path, **kw: Any) -> JobSpec:
    """A job on the sim that pushes to REPO."""
    kw.setdefault("push_to_hub", REPO)
    return JobSpec(input=inp, output=out, model=MODEL, api_base=sim.api_base, hub_url=sim.hub_url, max_tokens=32, **kw)


def pushed(sim: SimServer, path: str, revision: str | None = None) -> list[dict[str, Any]]:
    """A pushed Parquet file's rows, read back with huggingface_hub and pyarrow."""
    fs = HfFileSystem(endpoint=sim.hub_url, token=sim.config.token, skip_instance_cache=True)
    at = f"@{revision}" if revision else ""
    with fs.open(f"datasets/{REPO}{at}/{path}", "rb") as f:
        rows: list[dict[str, Any]] = pq.read_table(f).to_pylist()
        return rows


def titles(sim: SimServer) -> list[str]:
    """The repo's commit titles, oldest first."""
    repo = hub_repos(sim).repo(REPO)
    return [c.title for c in reversed(repo.history())] if repo is not None else []


# --- at the end of a run ----------------------------------------------------------------------


@pytest.mark.usefixtures("fast_time")
async def test_push_at_the_end_reads_back_row_for_row(sim: SimServer, inp: Path, tmp_path: Path) -> None:
    """A completed run pushes its Parquet output, stats and card in one named commit; the file reads back equal."""
    spec = spec_for(sim, inp, tmp_path / "results.parquet", private=True)
    report = await run_job(spec)
    assert report.exit_code is ExitCode.OK
    assert pushed(sim, "data/results.parquet") == pq.read_table(spec.output).to_pylist()
    assert titles(sim) == ["initial commit", "hfbatch: results.parquet, 120 rows (run completed)"]
    repo = hub_repos(sim).repo(REPO)
    assert repo is not None and repo.private
    files = hub_repos(sim).files(REPO)
    assert json.loads(files["stats/results.parquet.stats.json"])["rows"]["done"] == 120
    assert CARD_MARKER.encode() in files["README.md"]
    stats = json.loads(spec.stats_path.read_text())
    assert stats["push"]["commit"] == repo.head.sha and stats["push"]["failed_pushes"] == 0
    again = await run_job(spec)  # nothing left to send, nothing changed: no new commit
    assert again.exit_code is ExitCode.OK and len(titles(sim)) == 2
    assert again.stats["push"]["commit"] == repo.head.sha


@pytest.mark.parametrize(
    "sim_config", [hub_config(SimProvider("p1", latency=0.05), SimProvider("p2", latency=0.05))], indirect=True
)
async def test_push_every_pushes_the_results_so_far(
    sim: SimServer, inp: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--push-every commits consistent snapshots while the run goes on, then the complete output."""
    monkeypatch.setenv("HFBATCH_TIME_SCALE", "0.005")  # one minute is 0.3 s
    spec = spec_for(sim, inp, tmp_path / "results.parquet", push_every=1, concurrency=4)
    report = await run_job(spec)
    assert report.exit_code is ExitCode.OK
    history = list(reversed(hub_repos(sim).repo(REPO).history()))  # type: ignore[union-attr]
    snapshots = [c for c in history if c.title.endswith("(run in progress)")]
    assert len(snapshots) >= 2 and history[-1].title.endswith("(run completed)")
    final_ids = {r["id"] for r in pq.read_table(spec.output).to_pylist()}
    sizes = []
    for commit in snapshots:
        rows = pushed(sim, "data/results.parquet", commit.sha)
        ids = [r["id"] for r in rows]
        assert len(ids) == len(set(ids)) and set(ids) < final_ids
        sizes.append(len(ids))
        stats = json.loads(commit.files["stats/results.parquet.stats.json"].data)
        assert stats["in_progress"] is True
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]
    assert pushed(sim, "data/results.parquet") == pq.read_table(spec.output).to_pylist()
    assert report.stats["push"]["pushes"] == len(snapshots) + 1


# --- failures ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sim_config", "why"),
    [
        pytest.param(hub_config(faults=(HubFault("500", on=("commit",), first=1),)), "HTTP 500", id="500"),
        pytest.param(hub_config(faults=(HubFault("401", on=("create",), first=1),)), "refused the token", id="401"),
    ],
    indirect=["sim_config"],
)
@pytest.mark.usefixtures("fast_time")
async def test_a_failing_hub_never_loses_the_output(sim: SimServer, inp: Path, tmp_path: Path, why: str) -> None:
    """A push the Hub refuses exits 7 with the output complete locally; the rerun sends nothing and pushes it."""
    spec = spec_for(sim, inp, tmp_path / "results.parquet")
    report = await run_job(spec)
    assert report.exit_code is ExitCode.PUSH_FAILED
    assert report.message is not None and why in report.message and "is intact" in report.message
    assert sim.config.token not in report.message
    assert Counter(r["id"] for r in pq.read_table(spec.output).to_pylist()) == Counter(r["id"] for r in ROWS)
    stats = json.loads(spec.stats_path.read_text())
    assert stats["exit_code"] == 7 and stats["push"]["failed_pushes"] == 1
    sent = sim.counts()
    rerun = await run_job(spec)
    assert rerun.exit_code is ExitCode.OK and sim.counts() == sent
    assert pushed(sim, "data/results.parquet") == pq.read_table(spec.output).to_pylist()


def test_an_unreachable_hub_is_a_push_error(tmp_path: Path) -> None:
    """A Hub that does not answer is a PushError saying so; the output is untouched."""
    out = tmp_path / "o.jsonl"
    out.write_text('{"id": 1, "output": "x"}\n')
    target = PushTarget(REPO, HubAccess("http://127.0.0.1:9", "hf_some_token_value"))
    with pytest.raises(PushError, match="cannot be reached or is failing") as caught:
        push_output(out, target)
    assert caught.value.exit_code == 7 and "hf_some_token_value" not in str(caught.value)
    assert out.read_text() == '{"id": 1, "output": "x"}\n'


# --- without the extra ------------------------------------------------------------------------


def invoke(*args: str) -> Result:
    """Run the CLI in-process."""
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.mark.parametrize(
    "how",
    [
        pytest.param(("--push-to-hub", REPO), id="run-push"),
        pytest.param(("--input", "hf://datasets/org/prompts"), id="run-hf-input"),
        pytest.param((), id="push-command"),
    ],
)
def test_without_huggingface_hub_it_says_how_to_install(
    sim: SimServer, inp: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: tuple[str, ...]
) -> None:
    """Without the extra, a push or an hf:// input exits 2 naming `pip install 'hfbatch[hub]'`, before any request."""
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # as if it were not installed
    out = tmp_path / "o.jsonl"
    if how:
        args = ["run", "--input", str(inp), "--output", str(out), "--model", MODEL, *how]
        result = invoke(*args, "--api-base", sim.api_base, "--hub-url", sim.hub_url)
    else:
        out.write_text('{"id": 1, "output": "x"}\n')
        result = invoke("push", str(out), REPO, "--hub-url", sim.hub_url)
    assert result.exit_code == 2, result.output
    assert "pip install 'hfbatch[hub]'" in result.output
    assert all(c["requests"] == 0 for c in sim.counts().values()) and not hub_repos(sim).logged()


# --- hfbatch push ---------------------------------------------------------------------------


@pytest.mark.usefixtures("fast_time")
def test_push_command_pushes_an_existing_output(sim: SimServer, inp: Path, tmp_path: Path) -> None:
    """`hfbatch push` sends an output a run made, with its card; pushing it again changes nothing."""
    spec = spec_for(sim, inp, tmp_path / "merged.jsonl", push_to_hub=None)
    assert asyncio.run(run_job(spec)).exit_code is ExitCode.OK
    args = ["push", str(spec.output), REPO, "--hub-url", sim.hub_url, "--hub-path", "data/train.jsonl"]
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    assert "pushed 120 rows" in result.output and "data/train.jsonl" in result.output
    files = hub_repos(sim).files(REPO)
    assert files["data/train.jsonl"] == spec.output.read_bytes()
    meta = yaml.safe_load(files["README.md"].decode().split("---")[1])
    assert meta["configs"][0]["data_files"] == [{"split": "train", "path": "data/train.jsonl"}]
    assert invoke(*args).exit_code == 0 and len(titles(sim)) == 2


@pytest.mark.usefixtures("fast_time")
def test_push_command_pushes_a_merged_shard_output(sim: SimServer, inp: Path, tmp_path: Path) -> None:
    """Two shards merged with `hfbatch merge`, then pushed: the file reads back row for row, the card counts all."""
    parts = [tmp_path / f"part-{k}.parquet" for k in range(2)]
    for k, part in enumerate(parts):
        spec = spec_for(sim, inp, part, push_to_hub=None, shard=f"{k}/2")
        assert asyncio.run(run_job(spec)).exit_code is ExitCode.OK
    merged = tmp_path / "merged.parquet"
    assert invoke("merge", *map(str, parts), "--output", str(merged)).exit_code == 0
    result = invoke("push", str(merged), REPO, "--hub-url", sim.hub_url)
    assert result.exit_code == 0, result.output
    assert pushed(sim, "data/merged.parquet") == pq.read_table(merged).to_pylist()
    assert {r["id"] for r in pushed(sim, "data/merged.parquet")} == {r["id"] for r in ROWS}
    card = hub_repos(sim).files(REPO)["README.md"].decode()
    assert "120" in card and CARD_MARKER in card


def test_push_command_keeps_the_users_own_card(sim: SimServer, tmp_path: Path) -> None:
    """A README.md hfbatch did not write is left as it is."""
    out = tmp_path / "o.jsonl"
    out.write_text('{"id": 1, "output": "x", "provider": "p1"}\n')
    result = invoke("push", str(out), "org/own-card", "--hub-url", sim.hub_url)
    assert result.exit_code == 0 and "the repo's own README.md was kept" in result.output
    assert hub_repos(sim).files("org/own-card")["README.md"] == b"# My own card\n"


@pytest.mark.parametrize(
    ("setup", "args", "code", "message"),
    [
        pytest.param("lock", (), 4, "being written by another hfbatch run", id="locked"),
        pytest.param("none", (), 2, "no such output file", id="missing"),
        pytest.param("file", ("--hub-path", "../x"), 2, "not a relative path inside a repo", id="hub-path"),
        pytest.param("token", (), 3, "needs a Hugging Face token", id="no-token"),
    ],
)
def test_push_command_refusals(
    sim: SimServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    setup: str,
    args: tuple[str, ...],
    code: int,
    message: str,
) -> None:
    """A push that cannot be made exits with the code that says why, and sends nothing."""
    out = tmp_path / "o.jsonl"
    if setup != "none":
        out.write_text('{"id": 1, "output": "x"}\n')
    if setup == "token":
        monkeypatch.delenv("HF_TOKEN")
    with hold_lock(out) if setup == "lock" else _nothing():
        result = invoke("push", str(out), REPO, "--hub-url", sim.hub_url, *args)
    assert result.exit_code == code and message in result.output
    assert hub_repos(sim).repo(REPO) is None


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


# --- the card ---------------------------------------------------------------------------------


def test_the_card_renders_the_runs_numbers(tmp_path: Path) -> None:
    """The card says rows, shares, tokens, cost, the deciding settings and the command, with metadata the Hub reads."""
    summary = OutputSummary()
    for i in range(1234):
        provider, cost = ("alpha", 0.00001) if i % 4 else ("beta", None)
        summary.add({"id": i, "provider": provider, "model": MODEL, "prompt_tokens": 10, "completion_tokens": 5,
                     "cost_usd": cost, "finish_reason": "stop"})  # fmt: skip
    settings = {
        **JobSpec(input=Path("/home/me/private/in.parquet"), output=Path("/srv/x/out.parquet")).public_settings(),
        "model": MODEL,
        "max_tokens": 256,
        "temperature": 0.7,
        "push_to_hub": REPO,
        "api_key_env": "MY_TOKEN",
    }
    stats = {"settings": settings, "hfbatch_version": "9.9.9", "input": "/home/me/private/in.parquet"}
    card = render_card(CardInfo(REPO, "data/out.parquet", "stats/out.parquet.stats.json", summary, stats))
    meta = yaml.safe_load(card.split("---")[1])
    assert meta["size_categories"] == ["1K<n<10K"] and meta["task_categories"] == ["text-generation"]
    assert meta["configs"] == [
        {"config_name": "default", "data_files": [{"split": "train", "path": "data/out.parquet"}]}
    ]
    assert (
        "| rows | 1,234 |" in card and "| prompt tokens | 12,340 |" in card and "| completion tokens | 6,170 |" in card
    )
    assert "$0.009250 at least (309 rows without a known cost)" in card
    assert "| `alpha` | 925 | 75.0% |" in card and "| `beta` | 309 | 25.0% |" in card
    assert "| `temperature` | `0.7` |" in card and "hfbatch 9.9.9" in card
    command = card.split("```sh\n")[1].split("\n")[0]
    assert command == (
        "hfbatch run --input in.parquet --output out.parquet --model org/model --api-key-env MY_TOKEN "
        "--max-tokens 256 --temperature 0.7 --push-to-hub org/results"
    )
    assert "/home/me" not in card and card.endswith(CARD_MARKER + "\n")


@pytest.mark.parametrize(("rows", "category"), [(0, "n<1K"), (999, "n<1K"), (1000, "1K<n<10K"), (2 * 10**9, "n>1B")])
def test_size_categories(rows: int, category: str) -> None:
    """Rows map to the Hub's size categories."""
    assert size_category(rows) == category
