"""`hf://` inputs: a Hub dataset's files, read from the simulated Hub through the real huggingface_hub."""

from __future__ import annotations

import gzip
import io
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hfbatch.errors import AuthenticationError, ExitCode, InputError, RunError, UsageError
from hfbatch.inputs import BadRow, InputSpec, Row, open_input
from hfbatch.inputs.hub import parse_hub_url
from hfbatch.inputs.hub_layout import select_files, split_of
from hfbatch.jobspec import JobSpec
from hfbatch.outputs import OutputFiles
from hfbatch.runner import run_job
from hfbatch.sim import SimConfig, SimProvider, SimServer, reply_for
from hfbatch.sim.hub_repos import hub_repos
from hfbatch.sim.hub_repos_config import HubFault, SimDataset, SimHubRepos
from tests.helpers import MODEL, one_model

pytestmark = pytest.mark.usefixtures("fast_time")

TRAIN = [{"id": f"t{i}", "prompt": f"tell me about train item {i}"} for i in range(500)]
TEST = [{"id": f"x{i}", "prompt": f"tell me about test item {i}"} for i in range(20)]


def parquet_bytes(rows: list[dict[str, Any]], row_group_size: int = 50) -> bytes:
    """A Parquet file of `rows` in several row groups."""
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), buf, row_group_size=row_group_size)
    return buf.getvalue()


def jsonl_bytes(rows: list[dict[str, Any]]) -> bytes:
    """JSON lines."""
    return b"".join(json.dumps(r).encode() + b"\n" for r in rows)


PROMPTS = SimDataset(
    "org/prompts",
    {
        "data/train-00000-of-00002.parquet": parquet_bytes(TRAIN[:300]),
        "data/train-00001-of-00002.parquet": parquet_bytes(TRAIN[300:]),
        "data/test-00000-of-00001.parquet": parquet_bytes(TEST),
        "README.md": b"# Prompts\n",
    },
)
LINES = SimDataset(
    "org/lines",
    {
        "parts/a.jsonl": jsonl_bytes(TRAIN[:10]) + b"not json\n",
        "parts/b.jsonl.gz": gzip.compress(jsonl_bytes(TRAIN[10:25])),
        "notes.txt": b"not data",
    },
)


def hub_config(*providers: SimProvider, faults: tuple[HubFault, ...] = ()) -> SimConfig:
    """Two providers (or those given) and the module's dataset repos."""
    datasets = (
        PROMPTS,
        LINES,
        SimDataset("org/secret", {"data/train.jsonl": jsonl_bytes(TRAIN[:5])}, private=True),
        SimDataset("org/gated", {"data/train.jsonl": jsonl_bytes(TRAIN[:5])}, gated=True),
    )
    return one_model(
        *(providers or (SimProvider("p1"), SimProvider("p2"))),
        hub_repos=SimHubRepos(datasets=datasets, faults=faults),
    )


@pytest.fixture
def sim_config(request: pytest.FixtureRequest) -> SimConfig:
    """The module's repos on a healthy pair of providers, unless a test parametrizes its own."""
    param: SimConfig | None = getattr(request, "param", None)
    return param or hub_config()


def spec_for(sim: SimServer, tmp_path: Path, url: str, out: str = "out.parquet", **kw: Any) -> JobSpec:
    """A job reading `url` from the sim's Hub."""
    kw.setdefault("concurrency", 16)
    kw.setdefault("max_tokens", 32)
    return JobSpec(
        input=Path(url), output=tmp_path / out, model=MODEL, api_base=sim.api_base, hub_url=sim.hub_url, **kw
    )


def expected(prompt: str) -> str:
    """The sim's reply to a one-message prompt at max_tokens 32."""
    return reply_for([{"role": "user", "content": prompt}], 32).text


def records(path: Path) -> list[dict[str, Any]]:
    """An output's records, Parquet or JSONL."""
    if path.suffix == ".parquet":
        rows: list[dict[str, Any]] = pq.read_table(path).to_pylist()
        return rows
    return [json.loads(line) for line in path.read_text().splitlines()]


# --- reading ------------------------------------------------------------------------------


async def test_reads_a_split_of_several_parquet_files_in_ranged_reads(sim: SimServer, tmp_path: Path) -> None:
    """--split train reads both train files (not the test file) through ranged reads; each row once, replied to."""
    spec = spec_for(sim, tmp_path, "hf://datasets/org/prompts", split="train")
    report = await run_job(spec)
    assert report.exit_code is ExitCode.OK
    out = records(spec.output)
    by_id = {r["id"]: r["prompt"] for r in TRAIN}
    assert sorted(r["id"] for r in out) == sorted(by_id)
    assert all(r["output"] == expected(by_id[r["id"]]) for r in out)
    reads = [r for r in hub_repos(sim).logged("resolve") if r.path != "README.md"]  # the card: for its configs
    assert reads and all(r.status == 206 and r.range for r in reads)
    assert {r.path for r in reads} == {"data/train-00000-of-00002.parquet", "data/train-00001-of-00002.parquet"}
    fingerprint = json.loads(OutputFiles(spec.output).paths.manifest.read_text())["input"]
    head = hub_repos(sim).repo("org/prompts").head.sha  # type: ignore[union-attr]
    assert fingerprint["commit"] == head and len(fingerprint["files"]) == 2
    assert report.stats["input"] == "hf://datasets/org/prompts" and report.stats["rows"]["input_estimate"] == 500


async def test_a_repo_with_several_splits_asks_for_one(sim: SimServer, tmp_path: Path) -> None:
    """Without --split, a repo with train and test files is a usage error naming both; nothing is sent."""
    with pytest.raises(InputError, match=r"has the splits test, train; choose one with --split"):
        await run_job(spec_for(sim, tmp_path, "hf://datasets/org/prompts"))
    assert all(c["requests"] == 0 for c in sim.counts().values())


async def test_jsonl_files_by_glob_at_a_revision(sim: SimServer, tmp_path: Path) -> None:
    """A glob at a pinned sha reads plain and gzipped JSONL parts in order; a bad line is named by its file."""
    sha = hub_repos(sim).repo("org/lines").head.sha  # type: ignore[union-attr]
    hub_repos(sim).put_files("org/lines", {"parts/c.jsonl": jsonl_bytes(TEST)})  # after the sha: not read
    spec = spec_for(sim, tmp_path, f"hf://datasets/org/lines@{sha[:10]}/parts/*.jsonl*", out="out.jsonl")
    report = await run_job(spec)
    assert report.exit_code is ExitCode.FAILED_ROWS
    assert sorted(r["id"] for r in records(spec.output)) == sorted(r["id"] for r in TRAIN[:25])
    errors = [json.loads(line) for line in spec.errors_path.read_text().splitlines()]
    assert [e["where"] for e in errors] == ["a.jsonl line 11"]


async def test_resume_notices_an_updated_dataset(sim: SimServer, tmp_path: Path) -> None:
    """A new commit to the dataset makes a rerun refuse to resume; pinned to the old sha, it resumes."""
    spec = spec_for(sim, tmp_path, "hf://datasets/org/prompts", split="test")
    assert (await run_job(spec)).exit_code is ExitCode.OK
    old = hub_repos(sim).repo("org/prompts").head.sha  # type: ignore[union-attr]
    hub_repos(sim).put_files("org/prompts", {"data/test-00000-of-00001.parquet": parquet_bytes(TEST[:5])})
    with pytest.raises(UsageError, match="the input file changed"):
        await run_job(spec)
    sent = sim.counts()
    pinned = spec_for(sim, tmp_path, f"hf://datasets/org/prompts@{old}", split="test")
    with pytest.raises(UsageError, match="the input file changed"):
        await run_job(pinned)  # the URL differs, so the fingerprint does too
    report = await run_job(pinned, force=True)
    assert report.exit_code is ExitCode.OK and report.stats["rows"]["skipped_already_done"] == len(TEST)
    assert sim.counts() == sent


def open_hub(sim: SimServer, url: str, **kw: Any) -> list[Any]:
    """Open `url` on the sim's Hub and read every item."""
    with open_input(InputSpec(path=Path(url), hub_url=sim.hub_url, **kw)) as reader:
        return list(reader)


def test_private_and_gated_datasets_need_the_token(sim: SimServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the token, private and gated datasets read; without it they are usage errors saying why."""
    assert len(open_hub(sim, "hf://datasets/org/secret")) == 5
    assert len(open_hub(sim, "hf://datasets/org/gated")) == 5
    monkeypatch.setenv("NO_TOKEN", "")
    with pytest.raises(InputError, match="no such dataset repo, or the token cannot see it"):
        open_hub(sim, "hf://datasets/org/secret", api_key_env="NO_TOKEN")
    with pytest.raises(InputError, match=r"gated.*accept its conditions"):
        open_hub(sim, "hf://datasets/org/gated", api_key_env="NO_TOKEN")


@pytest.mark.parametrize(
    ("url", "kw", "error", "message"),
    [
        pytest.param("hf://datasets/org/none", {}, InputError, "no such dataset repo", id="missing-repo"),
        pytest.param("hf://datasets/org/prompts@nope", {}, InputError, "no such revision", id="missing-revision"),
        pytest.param("hf://datasets/org/prompts/data/x.parquet", {}, InputError, "no such file", id="missing-file"),
        pytest.param("hf://models/org/m", {}, InputError, "hfbatch reads datasets only", id="a-model"),
        pytest.param("hf://datasets/org/lines/notes.txt", {}, InputError, "no .parquet, .jsonl", id="no-data"),
        pytest.param("hf://datasets/org/prompts", {"split": "dev"}, InputError, "no split 'dev'", id="split"),
        pytest.param("hf://datasets/org/prompts", {"api_key_env": "BAD"}, AuthenticationError, "refused", id="401"),
    ],
)
def test_unusable_hub_inputs_say_why(
    sim: SimServer,
    monkeypatch: pytest.MonkeyPatch,
    url: str,
    kw: dict[str, Any],
    error: type[Exception],
    message: str,
) -> None:
    """Each way an hf:// input cannot be read is one error naming the input and what to fix, never the token."""
    monkeypatch.setenv("BAD", "hf_not_the_right_token_at_all")
    with pytest.raises(error, match=message) as caught:
        open_hub(sim, url, **kw)
    assert "hf_not_the_right" not in str(caught.value) and sim.config.token not in str(caught.value)


@pytest.mark.parametrize("sim_config", [hub_config(faults=(HubFault("500", on=("info",)),))], indirect=True)
def test_a_failing_hub_is_exit_6(sim: SimServer) -> None:
    """A Hub answering 500 (or not at all) is a failure outside the rows, not a usage error."""
    with pytest.raises(RunError, match=r"cannot be reached or is failing \(HTTP 500"):
        open_hub(sim, "hf://datasets/org/prompts")
    with pytest.raises(RunError, match="ConnectError") as caught:
        open_input(InputSpec(path=Path("hf://datasets/org/prompts"), hub_url="http://127.0.0.1:9"))
    assert caught.value.exit_code is ExitCode.ERROR


def test_rows_stream_with_ids_across_files(sim: SimServer) -> None:
    """Row numbers (the default ids) run on across files, and every row is built as a local file's would be."""
    items = open_hub(sim, "hf://datasets/org/lines/parts", id_column=None)
    rows = [i for i in items if isinstance(i, Row)]
    assert [r.index for r in rows] == [*range(10), *range(11, 26)]
    assert [i.where for i in items if isinstance(i, BadRow)] == ["a.jsonl line 11"]


# --- which files ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "repo", "revision", "path"),
    [
        ("hf://datasets/org/n", "org/n", None, None),
        ("hf://datasets/org/n@v1.0/data/*.parquet", "org/n", "v1.0", "data/*.parquet"),
        ("hf://datasets/org/n@refs/convert/parquet/default/train", "org/n", "refs/convert/parquet", "default/train"),
        ("hf://datasets/org/n@refs%2Fpr%2F3", "org/n", "refs/pr/3", None),
    ],
)
def test_hub_urls_parse(url: str, repo: str, revision: str | None, path: str | None) -> None:
    """An hf:// URL gives the repo, the revision (special refs included) and the path inside."""
    loc = parse_hub_url(url)
    assert (loc.repo, loc.revision, loc.path) == (repo, revision, path)


@pytest.mark.parametrize(
    ("path", "split"),
    [
        ("data/train-00000-of-00003.parquet", "train"),
        ("data/my_split-00001-of-00002.parquet", "my_split"),
        ("train/part-0.parquet", "train"),
        ("data/test.jsonl", "test"),
        ("en/dataset-dev-0.jsonl", "validation"),
        ("data/latest.parquet", None),
        ("contest/a.parquet", None),
    ],
)
def test_split_names_in_paths(path: str, split: str | None) -> None:
    """Files carry their split as the Hub's viewer reads it: push_to_hub's shards, folders, name words."""
    assert split_of(path) == split


README = """---
configs:
- config_name: en
  data_files:
  - split: train
    path: en/train-*.parquet
  - split: test
    path: en/test.parquet
- config_name: fr
  default: true
  data_files: fr/*.parquet
---
# Card
"""
FILES = ["en/train-0.parquet", "en/train-1.parquet", "en/test.parquet", "fr/a.parquet", "fr/b.parquet", "x.jsonl"]


@pytest.mark.parametrize(
    ("split", "subset", "chosen"),
    [
        (None, None, ["fr/a.parquet", "fr/b.parquet"]),
        ("train", "en", ["en/train-0.parquet", "en/train-1.parquet"]),
        ("test", "en", ["en/test.parquet"]),
    ],
)
def test_readme_configs_choose_the_files(split: str | None, subset: str | None, chosen: list[str]) -> None:
    """A card's `configs` map subsets and splits to files; the default subset is the one marked so."""
    fmt, files = select_files(FILES, readme=README, split=split, subset=subset, explicit=False, where="hf://x")
    assert (fmt, files) == ("parquet", chosen)


def test_choosing_among_subsets_and_formats_is_explained() -> None:
    """A missing split of a subset, an unknown subset, and mixed formats are errors saying what to give."""
    with pytest.raises(InputError, match=r"has the splits train, test; choose one with --split"):
        select_files(FILES, readme=README, split=None, subset="en", explicit=False, where="hf://x")
    with pytest.raises(InputError, match=r"has no subset 'de' .*fix --subset"):
        select_files(FILES, readme=README, split=None, subset="de", explicit=False, where="hf://x")
    with pytest.raises(InputError, match="mix Parquet and JSONL"):
        select_files(FILES, readme=None, split=None, subset=None, explicit=True, where="hf://x")
    assert select_files(FILES, readme=None, split=None, subset="fr", explicit=False, where="hf://x") == (
        "parquet",
        ["fr/a.parquet", "fr/b.parquet"],
    )


# --- kill -9 -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sim_config", [hub_config(SimProvider("p1", latency=0.02), SimProvider("p2", latency=0.02))], indirect=True
)
def test_kill_9_then_resume_reads_the_hub_dataset_exactly_once(sim: SimServer, tmp_path: Path) -> None:
    """A run of an hf:// input killed mid-way resumes from the same commit: every train row once, replied to."""
    out = tmp_path / "out.parquet"
    cmd = [
        sys.executable,
        "-m",
        "hfbatch",
        "run",
        "--input",
        "hf://datasets/org/prompts",
        "--split",
        "train",
        "--output",
        str(out),
        "--model",
        MODEL,
        "--api-base",
        sim.api_base,
        "--hub-url",
        sim.hub_url,
        "--concurrency",
        "8",
        "--max-tokens",
        "32",
    ]
    env = {**os.environ, "HF_TOKEN": sim.config.token, "HFBATCH_TIME_SCALE": "0.001"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    journal = OutputFiles(out).paths.journal
    deadline = time.monotonic() + 60
    while proc.poll() is None and (not journal.exists() or journal.read_bytes().count(b"\n") < 100):
        assert time.monotonic() < deadline, "the run made no progress"
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    done = subprocess.run(cmd, env=env, capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    out_rows = records(out)
    counts = Counter(r["id"] for r in out_rows)
    assert set(counts) == {r["id"] for r in TRAIN} and set(counts.values()) == {1}
    by_id = {r["id"]: r["prompt"] for r in TRAIN}
    assert all(r["output"] == expected(by_id[r["id"]]) for r in out_rows)
    assert sim.config.token.encode() not in done.stderr
