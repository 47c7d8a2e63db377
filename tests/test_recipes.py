"""The recipes in jobs/recipes: the Kubernetes YAML parses into an Indexed Job, the Slurm and HF Jobs scripts run."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import yaml

from hfbatch.jobfile import build_spec, load_job_file
from hfbatch.shards import shard_of
from hfbatch.sim import SimConfig, SimProvider, SimServer
from tests.helpers import one_model

RECIPES = Path(__file__).resolve().parent.parent / "jobs" / "recipes"
JOBS = RECIPES.parent
#: The model the recipes name, served by the simulator so that they run as written.
RECIPE_MODEL = "openai/gpt-oss-120b"


@pytest.fixture
def sim_config() -> SimConfig:
    """The recipes' model, on one healthy provider."""
    return one_model(SimProvider("p1"), model=RECIPE_MODEL)


def engine_env(**extra: str) -> dict[str, str]:
    """The environment a scheduler gives a task: ours, with this venv's `hfbatch` first on PATH."""
    env = {**os.environ, "HFBATCH_TIME_SCALE": "0.001", **extra}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.pop("HFBATCH_DEBUG", None)
    return env


def merged_ids(path: Path) -> list[Any]:
    """The ids in a merged Parquet output."""
    return list(pq.read_table(path, columns=["id"]).column("id").to_pylist())


def source_ids() -> list[str]:
    """The ids of the input the recipes name."""
    lines = (JOBS / "data" / "quickstart.jsonl").read_text().splitlines()
    return [json.loads(line)["id"] for line in lines]


def test_kubernetes_recipe_is_an_indexed_job_with_a_secret_a_volume_and_a_merge(tmp_path: Path) -> None:
    """The YAML parses; pod K runs --shard K/completions with the token from a Secret; the merge reads the parts."""
    docs = {d["kind"]: d for d in yaml.safe_load_all((RECIPES / "kubernetes.yaml").read_text())}
    assert set(docs) == {"PersistentVolumeClaim", "ConfigMap", "Job"}
    job = docs["Job"]["spec"]
    assert job["completionMode"] == "Indexed" and 1 <= job["parallelism"] <= job["completions"]
    pod = job["template"]["spec"]
    assert pod["restartPolicy"] == "Never"  # required by podFailurePolicy
    (container,) = pod["containers"]
    command = container["command"][-1]
    match = re.search(r"--shard \$\(JOB_COMPLETION_INDEX\)/(\d+)", command)
    assert match is not None and int(match.group(1)) == job["completions"]
    (token,) = [e for e in container["env"] if e["name"] == "HF_TOKEN"]
    assert token["valueFrom"]["secretKeyRef"]["name"] == "hfbatch-token"
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert (
        volumes[mounts["/data"]]["persistentVolumeClaim"]["claimName"]
        == docs["PersistentVolumeClaim"]["metadata"]["name"]
    )
    assert volumes[mounts["/job"]]["configMap"]["name"] == docs["ConfigMap"]["metadata"]["name"]
    # The job file in the ConfigMap is valid, and pod 5's output lies on the volume.
    job_file = tmp_path / "sharded.toml"
    job_file.write_text(docs["ConfigMap"]["data"]["sharded.toml"])
    assert "/job/sharded.toml" in command
    spec = build_spec(load_job_file(job_file), {"shard": f"5/{job['completions']}"})
    assert spec.output == Path(f"/data/out/part-00005-of-{job['completions']:05d}.parquet")
    (merge,) = yaml.safe_load_all((RECIPES / "kubernetes-merge.yaml").read_text())
    merge_pod = merge["spec"]["template"]["spec"]
    merge_command = merge_pod["containers"][0]["command"][-1]
    assert (
        f"hfbatch merge --output /data/out/all.parquet /data/out/part-*-of-{job['completions']:05d}.parquet"
        in merge_command
    )
    assert merge_pod["volumes"] == [v for v in pod["volumes"] if v["name"] == "data"]


def test_slurm_array_script_runs_as_an_array_and_the_merge_joins_it(sim: SimServer, tmp_path: Path) -> None:
    """Each task of the array runs the script's lines with Slurm's variables; the merge script makes one output."""
    array = re.search(r"^#SBATCH --array=(\d+)-(\d+)$", (RECIPES / "slurm-array.sh").read_text(), re.MULTILINE)
    assert array is not None
    tasks = range(int(array.group(1)), int(array.group(2)) + 1)
    # The submit directory: the recipes as shipped, the job file pointed at the simulator.
    recipes = tmp_path / "jobs" / "recipes"
    recipes.mkdir(parents=True)
    for name in ("slurm-array.sh", "slurm-merge.sh"):
        shutil.copy(RECIPES / name, recipes / name)
    shutil.copytree(JOBS / "data", tmp_path / "jobs" / "data")
    (tmp_path / "jobs" / "out").mkdir()
    values = {**tomllib.loads((RECIPES / "sharded.toml").read_text()), "api_base": sim.api_base, "hub_url": sim.hub_url}
    (recipes / "sharded.toml").write_text("".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items()))
    base = {"SLURM_SUBMIT_DIR": str(tmp_path), "SLURM_ARRAY_JOB_ID": "77", "SLURM_ARRAY_TASK_MIN": str(tasks[0])}
    procs = [
        subprocess.Popen(
            ["bash", str(recipes / "slurm-array.sh")],
            cwd="/",  # the scripts cd to SLURM_SUBMIT_DIR themselves
            env=engine_env(**base, SLURM_ARRAY_TASK_ID=str(k), SLURM_ARRAY_TASK_COUNT=str(len(tasks))),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for k in tasks
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()
    merge = subprocess.run(
        ["bash", str(recipes / "slurm-merge.sh")],
        cwd="/",
        env=engine_env(SLURM_SUBMIT_DIR=str(tmp_path)),
        capture_output=True,
        timeout=120,
    )
    assert merge.returncode == 0, merge.stderr.decode()
    ids = merged_ids(tmp_path / "jobs" / "out" / "all.parquet")
    assert sorted(ids) == sorted(source_ids())
    stats = json.loads((tmp_path / "jobs" / "out" / "all.parquet.stats.json").read_text())
    assert sorted(r["shard"] for r in stats["runs"]) == sorted(f"{k}/{len(tasks)}" for k in range(len(tasks)))


def test_hugging_face_jobs_script_starts_one_job_per_shard_and_the_commands_run(sim: SimServer, tmp_path: Path) -> None:
    """`hf jobs run` once per shard, the token as a secret; each job's command, run here, makes its part."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls.jsonl"
    fake_hf = bin_dir / "hf"
    fake_hf.write_text(
        f"#!{sys.executable}\nimport json, sys\nopen({str(calls)!r}, 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n"
    )
    fake_hf.chmod(0o755)
    secret = "hf_never_on_a_command_line"
    env = engine_env(HF_TOKEN=secret, HFBATCH_DATASET="me/prompts", HFBATCH_BUCKET="me/out")
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    n = 3
    for args in ([str(n)], ["merge", str(n)]):
        done = subprocess.run(["bash", str(RECIPES / "hf-jobs.sh"), *args], env=env, capture_output=True, timeout=60)
        assert done.returncode == 0, done.stderr.decode()
    runs = [json.loads(line) for line in calls.read_text().splitlines()]
    assert len(runs) == n + 1 and all(r[:2] == ["jobs", "run"] for r in runs)
    assert not any(secret in arg for r in runs for arg in r)
    assert all(r[r.index("--secrets") + 1] == "HF_TOKEN" for r in runs)
    # Each job's command (the image's argv), run here with /data and /out as local folders.
    (tmp_path / "data").mkdir()
    (tmp_path / "out").mkdir()
    shutil.copy(JOBS / "data" / "quickstart.jsonl", tmp_path / "data" / "prompts.jsonl")
    local = {**env, "HF_TOKEN": sim.config.token}
    for k, run in enumerate(runs):
        argv = run[run.index("python:3.12-slim") + 1 :]
        assert argv[:2] == ["sh", "-c"]
        command = argv[2].replace("pip install --quiet hfbatch", "true")
        command = command.replace("/data/", f"{tmp_path}/data/").replace("/out/", f"{tmp_path}/out/")
        if k < n:
            assert f"--shard {k}/{n}" in command
            command += f" --api-base {shlex.quote(sim.api_base)} --hub-url {shlex.quote(sim.hub_url)}"
        done = subprocess.run(["sh", "-c", command], env=local, capture_output=True, timeout=120)
        assert done.returncode == 0, done.stderr.decode()
    ids = merged_ids(tmp_path / "out" / "all.parquet")
    assert sorted(ids) == sorted(source_ids())
    for k in range(n):
        part = pq.read_table(tmp_path / "out" / f"part-{k:05d}-of-{n:05d}.parquet", columns=["id"])
        assert {shard_of(i, n) for i in part.column("id").to_pylist()} == {k}


def test_crontab_line_runs_the_nightly_job() -> None:
    """The crontab has one valid line: five time fields, then a command running jobs/nightly.toml."""
    lines = [line for line in (RECIPES / "crontab").read_text().splitlines() if line and not line.startswith("#")]
    (line,) = lines
    fields = line.split(None, 5)
    assert all(re.fullmatch(r"[\d*/,-]+", f) for f in fields[:5]) and "%" not in fields[5]
    assert "hfbatch run jobs/nightly.toml" in fields[5] and (JOBS / "nightly.toml").exists()
