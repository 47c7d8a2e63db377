"""`--shard K/N`: a stable hash of each id picks its shard; shards are disjoint, cover the input, resume alone."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from hfbatch.errors import ExitCode, JobSpecError, UsageError
from hfbatch.jobfile import build_spec
from hfbatch.runner import run_job
from hfbatch.shards import Shard, parse_shard, shard_from_env, shard_of
from hfbatch.sim import SimConfig, SimProvider, SimServer
from tests.helpers import MODEL, one_model
from tests.test_run import prompts, read_output, spec_for, write_jsonl

pytestmark = pytest.mark.usefixtures("fast_time")

#: Shards of a few ids, pinned: a change here moves rows between shards of jobs already running.
PINNED: dict[tuple[str | int, int], int] = {
    ("row-0", 8): 1,
    ("row-1", 8): 0,
    (0, 8): 3,
    (1, 8): 1,
    ("1", 8): 6,
    ("é", 3): 1,
    (2**64 + 7, 5): 2,
}


def test_shard_of_is_pinned_for_known_ids() -> None:
    """The shard of an id never changes between hfbatch versions (shards of one job may run different builds)."""
    assert {key: shard_of(*key) for key in PINNED} == PINNED


def test_shard_of_is_the_same_under_another_hash_seed_and_process() -> None:
    """Python's own hash is salted per process; the shard hash must not be."""
    ids: list[Any] = [f"row-{i}" for i in range(200)] + list(range(200))
    here = [shard_of(i, 7) for i in ids]
    code = f"import json; from hfbatch.shards import shard_of; print(json.dumps([shard_of(i, 7) for i in {ids!r}]))"
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    there = json.loads(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, check=True).stdout)
    assert there == here


def test_string_and_integer_ids_are_different_ids() -> None:
    """ "7" and 7 are two rows: their shards are drawn independently (some differ)."""
    assert any(shard_of(str(i), 4) != shard_of(i, 4) for i in range(50))


def test_shards_are_balanced() -> None:
    """100,000 ids over 8 shards: each within 2% of an eighth."""
    counts = Counter(shard_of(f"id-{i}", 8) for i in range(100_000))
    assert all(abs(c - 12_500) < 250 for c in counts.values()), counts


@pytest.mark.parametrize(
    ("text", "message"),
    [("3", "expected K/N"), ("8/8", "does not exist"), ("-1/4", "expected K/N"), ("a/b", "expected K/N")],
)
def test_a_bad_shard_is_a_usage_error(text: str, message: str) -> None:
    """A shard that is not K/N with 0 <= K < N is refused, naming the key."""
    with pytest.raises(JobSpecError, match=message):
        parse_shard(text)


@pytest.mark.parametrize(
    ("env", "shards", "expected"),
    [
        ({"JOB_COMPLETION_INDEX": "3"}, 8, Shard(3, 8)),
        ({"SLURM_ARRAY_TASK_ID": "5", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "2"}, None, Shard(3, 4)),
        ({"SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_COUNT": "4"}, None, Shard(0, 4)),
    ],
    ids=["kubernetes", "slurm-offset", "slurm"],
)
def test_shard_auto_reads_the_engines_variables(env: dict[str, str], shards: int | None, expected: Shard) -> None:
    """K from JOB_COMPLETION_INDEX or SLURM_ARRAY_TASK_ID (minus its MIN), N from --shards or the array's count."""
    assert shard_from_env(env, shards) == expected


@pytest.mark.parametrize(
    ("env", "shards", "message"),
    [
        ({}, 4, "neither JOB_COMPLETION_INDEX or SLURM_ARRAY_TASK_ID"),
        ({"JOB_COMPLETION_INDEX": "2"}, None, "--shards N"),
        ({"JOB_COMPLETION_INDEX": "8"}, 8, "outside 0 to 7"),
        ({"SLURM_ARRAY_TASK_ID": "x", "SLURM_ARRAY_TASK_COUNT": "2"}, None, "not a whole number"),
    ],
    ids=["unset", "no-count", "out-of-range", "garbage"],
)
def test_shard_auto_without_usable_variables_is_exit_2(env: dict[str, str], shards: int | None, message: str) -> None:
    """An unset, unparsable or out-of-range engine variable is a usage error before anything runs."""
    with pytest.raises(JobSpecError, match=message) as info:
        shard_from_env(env, shards)
    assert info.value.exit_code is ExitCode.USAGE


def test_shard_in_paths_is_filled_in(tmp_path: Path) -> None:
    """`{shard}` in the output, errors and stats paths becomes 00003-of-00008; without --shard it is refused."""
    values = {"input": str(tmp_path / "in.jsonl"), "output": str(tmp_path / "part-{shard}.jsonl"), "model": MODEL}
    spec = build_spec({}, {**values, "shard": "3/8", "stats": str(tmp_path / "s-{shard}.json")})
    assert spec.output.name == "part-00003-of-00008.jsonl" and spec.stats is not None
    assert spec.stats.name == "s-00003-of-00008.json" and spec.shard == "3/8"
    assert spec.manifest_settings()["shard"] == "3/8"
    with pytest.raises(JobSpecError, match=r"only a sharded run"):
        build_spec({}, values)


def test_shard_auto_in_build_spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`--shard auto --shards 4` under a Kubernetes index resolves when the job is built."""
    monkeypatch.setenv("JOB_COMPLETION_INDEX", "1")
    flags = {"input": str(tmp_path / "i.jsonl"), "output": str(tmp_path / "o.jsonl"), "shard": "auto", "shards": 4}
    assert build_spec({}, flags).shard == "1/4"
    monkeypatch.delenv("JOB_COMPLETION_INDEX")
    with pytest.raises(JobSpecError, match="neither"):
        build_spec({}, flags)


def _lines_with_a_broken_one(n: int) -> list[str]:
    rows = [json.dumps(r) for r in prompts(n)]
    rows.insert(n // 2, "{not json")
    return [line + "\n" for line in rows]


async def test_shards_are_disjoint_and_cover_the_input(sim: SimServer, tmp_path: Path) -> None:
    """Three shards of 600 rows: each id in exactly one output, each shard 200 +-20%; a broken line reported once."""
    inp = tmp_path / "in.jsonl"
    inp.write_text("".join(_lines_with_a_broken_one(600)))
    seen: Counter[str] = Counter()
    bad = 0
    for k in range(3):
        spec = spec_for(sim, tmp_path, inp, f"part-{k}.jsonl", shard=f"{k}/3")
        report = await run_job(spec)
        ids = [r["id"] for r in read_output(spec.output)]
        assert 160 <= len(ids) <= 240 and all(shard_of(i, 3) == k for i in ids)
        seen.update(ids)
        rows = report.stats["rows"]
        assert rows["other_shards"] + rows["done"] + rows["bad_input"] == 601
        bad += rows["bad_input"]
    assert set(seen) == {r["id"] for r in prompts(600)} and set(seen.values()) == {1}
    assert bad == 1
    assert sim.billing()["total"]["replies"] == 600


async def test_resuming_a_shard_as_another_shard_is_refused(sim: SimServer, tmp_path: Path) -> None:
    """The manifest records the shard: the same output resumed as 2/4 after 1/4 names the change."""
    inp = write_jsonl(tmp_path / "in.jsonl", prompts(40))
    await run_job(spec_for(sim, tmp_path, inp, shard="1/4"))
    with pytest.raises(UsageError, match=r"shard was '1/4', now '2/4'"):
        await run_job(spec_for(sim, tmp_path, inp, shard="2/4"))
    with pytest.raises(UsageError, match=r"shard was '1/4', now unset"):
        await run_job(spec_for(sim, tmp_path, inp))


@pytest.fixture
def sim_config() -> SimConfig:
    """One slow provider, so requests overlap and the server sees how many are in flight."""
    return one_model(SimProvider("p1", latency=0.05))


async def test_concurrency_applies_to_each_shard_process(sim: SimServer, tmp_path: Path) -> None:
    """Two shards at once with --concurrency 4 each put up to 8 requests in flight: settings are per process."""
    inp = write_jsonl(tmp_path / "in.jsonl", prompts(80))
    specs = [spec_for(sim, tmp_path, inp, f"part-{k}.jsonl", shard=f"{k}/2", concurrency=4) for k in range(2)]
    reports = await asyncio.gather(*(run_job(s) for s in specs))
    assert all(r.exit_code is ExitCode.OK for r in reports)
    assert 4 < sim.max_in_flight()["p1"] <= 8
