"""The simulated Hub's dataset repos, driven by the real huggingface_hub over loopback HTTP."""

from __future__ import annotations

import io
import json
import re
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi, HfFileSystem, hf_hub_download
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from hfbatch.errors import JobSpecError
from hfbatch.sim import SimConfig, SimServer, default_sim_config, sim_config_from_dict
from hfbatch.sim.hub_repos import GITATTRIBUTES, SIM_USER, hub_repos
from hfbatch.sim.hub_repos_config import HubFault, SimDataset, SimHubRepos
from hfbatch.sim.hub_repos_wire import TREE_PAGE_SIZE

SimInThread = Callable[..., SimServer]
ROWS = 20_000


def prompts_parquet(rows: int = ROWS, row_group_size: int = 2_000) -> bytes:
    """A Parquet file of `rows` prompts in several row groups."""
    table = pa.table({"id": list(range(rows)), "prompt": [f"prompt number {i} " * 4 for i in range(rows)]})
    buf = io.BytesIO()
    pq.write_table(table, buf, row_group_size=row_group_size)
    return buf.getvalue()


PARQUET = prompts_parquet()
SMALL_PARQUET = prompts_parquet(100)
JSONL = b"".join(json.dumps({"id": i, "prompt": f"p{i}"}).encode() + b"\n" for i in range(50))


def with_repos(*datasets: SimDataset, faults: tuple[HubFault, ...] = ()) -> SimConfig:
    """The stock sim config plus these dataset repos and repo-endpoint faults."""
    return replace(default_sim_config(), hub_repos=SimHubRepos(datasets=datasets, faults=faults))


PROMPTS = SimDataset(
    "org/prompts",
    {
        "data/train-00000.parquet": PARQUET,
        "data/train-00001.parquet": SMALL_PARQUET,
        "data/extra.jsonl": JSONL,
        "README.md": b"# Prompts\n",
    },
)


@pytest.fixture
def sim(sim_in_thread: SimInThread) -> SimServer:
    """A sim serving `org/prompts`, a private `org/secret` and a gated `org/gated`."""
    return sim_in_thread(
        with_repos(
            PROMPTS,
            SimDataset("org/secret", {"data/a.jsonl": JSONL}, private=True),
            SimDataset("org/gated", {"data/a.jsonl": JSONL}, gated=True),
        )
    )


def api(sim: SimServer, token: str | bool | None = None) -> HfApi:
    """An HfApi on the sim with its token (or `token`; False sends none)."""
    return HfApi(endpoint=sim.hub_url, token=sim.config.token if token is None else token)


def hffs(sim: SimServer, token: str | bool | None = None) -> HfFileSystem:
    """A fresh (uncached) HfFileSystem on the sim with its token (or `token`)."""
    return HfFileSystem(
        endpoint=sim.hub_url, token=sim.config.token if token is None else token, skip_instance_cache=True
    )


def http(
    sim: SimServer, path: str, method: str = "GET", headers: dict[str, str] | None = None
) -> tuple[int, Any, bytes]:
    """A raw request to the sim: (status, headers, body)."""
    request = urllib.request.Request(sim.hub_url + path, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.headers, exc.read()


# --- reading ------------------------------------------------------------------------------


def test_lists_a_datasets_files(sim: SimServer) -> None:
    """Dataset info and the recursive tree list every file, with sizes, and the repo's .gitattributes."""
    info = api(sim).dataset_info("org/prompts", files_metadata=True)
    sizes = {s.rfilename: s.size for s in info.siblings or []}
    assert sizes == {
        ".gitattributes": len(GITATTRIBUTES),
        "README.md": 10,
        "data/extra.jsonl": len(JSONL),
        "data/train-00000.parquet": len(PARQUET),
        "data/train-00001.parquet": len(SMALL_PARQUET),
    }
    assert info.private is False and info.gated is False and info.sha is not None and len(info.sha) == 40
    tree = api(sim).list_repo_tree("org/prompts", repo_type="dataset", recursive=True)
    assert {entry.path for entry in tree} == {"data", *sizes}


def test_glob_finds_the_parquet_shards(sim: SimServer) -> None:
    """HfFileSystem.glob matches files inside the repo, with or without the hf:// prefix."""
    fs = hffs(sim)
    expected = ["datasets/org/prompts/data/train-00000.parquet", "datasets/org/prompts/data/train-00001.parquet"]
    assert fs.glob("datasets/org/prompts/data/*.parquet") == expected
    assert fs.glob("hf://datasets/org/prompts/**/*.jsonl") == ["datasets/org/prompts/data/extra.jsonl"]
    assert fs.info("datasets/org/prompts/data/train-00000.parquet")["size"] == len(PARQUET)


def test_parquet_streams_in_record_batches_over_ranged_reads(sim: SimServer) -> None:
    """A Parquet file opened through HfFileSystem reads batch by batch, never in one whole-file GET."""
    fs = hffs(sim)
    with fs.open("datasets/org/prompts/data/train-00000.parquet", "rb", block_size=64 * 1024) as f:
        # pre_buffer=False: pyarrow would otherwise fetch every row group at once.
        parquet = pq.ParquetFile(f, pre_buffer=False)
        ids = [i for batch in parquet.iter_batches(batch_size=1_000) for i in batch.column("id").to_pylist()]
    assert ids == list(range(ROWS))
    reads = hub_repos(sim).logged("resolve")
    assert len(reads) > 3
    for read in reads:
        assert read.status == 206 and read.range is not None
        start, end = (int(n) for n in read.range.removeprefix("bytes=").split("-"))
        assert end - start + 1 < len(PARQUET) // 2


def test_jsonl_reads_line_by_line_at_a_pinned_revision(sim: SimServer) -> None:
    """A JSONL file reads line by line at `@sha`, and keeps that content after main moves on."""
    sha = api(sim).dataset_info("org/prompts").sha
    hub_repos(sim).put_files("org/prompts", {"data/extra.jsonl": b'{"id": "new"}\n'})
    with hffs(sim).open(f"hf://datasets/org/prompts@{sha}/data/extra.jsonl", "rb") as f:
        rows = [json.loads(line) for line in f]
    assert [r["id"] for r in rows] == list(range(50))
    assert hffs(sim).cat("datasets/org/prompts/data/extra.jsonl") == b'{"id": "new"}\n'


def test_revision_resolves_to_a_commit_sha(sim: SimServer) -> None:
    """A branch resolves to its head commit; a sha or a 7-digit prefix resolves to itself; others are 404."""
    hub = api(sim)
    sha = hub.resolve_revision("org/prompts", repo_type="dataset").resolved
    assert sha == hub_repos(sim).repo("org/prompts").head.sha  # type: ignore[union-attr]
    assert hub.dataset_info("org/prompts", revision=sha).sha == sha
    assert hub.dataset_info("org/prompts", revision=sha[:7]).sha == sha
    with pytest.raises(RevisionNotFoundError):
        hub.dataset_info("org/prompts", revision="no-such-branch")


def test_resolve_serves_ranges_and_the_headers_hf_hub_download_reads(sim: SimServer) -> None:
    """HEAD and GET on /resolve carry ETag, X-Repo-Commit and Content-Length; ranges give 206 or 416."""
    sha = hub_repos(sim).repo("org/prompts").head.sha  # type: ignore[union-attr]
    path = "/datasets/org/prompts/resolve/main/data/extra.jsonl"
    status, headers, body = http(sim, path, "HEAD")
    assert (status, body) == (200, b"")
    assert headers["X-Repo-Commit"] == sha and headers["Content-Length"] == str(len(JSONL)) and headers["ETag"]
    assert http(sim, path, headers={"Range": "bytes=0-9"})[::2] == (206, JSONL[:10])
    assert http(sim, path, headers={"Range": "bytes=-5"})[::2] == (206, JSONL[-5:])
    status, headers, body = http(sim, path, headers={"Range": "bytes=100-"})
    assert (status, body, headers["Content-Range"]) == (206, JSONL[100:], f"bytes 100-{len(JSONL) - 1}/{len(JSONL)}")
    status, headers, _ = http(sim, path, headers={"Range": f"bytes={len(JSONL)}-"})
    assert (status, headers["Content-Range"]) == (416, f"bytes */{len(JSONL)}")
    status, headers, _ = http(sim, "/datasets/org/prompts/resolve/main/data/missing.jsonl")
    assert (status, headers["X-Error-Code"]) == (404, "EntryNotFound")


def test_tree_listing_is_paged(sim_in_thread: SimInThread) -> None:
    """A folder of more files than one page lists completely through the `Link` pages."""
    sim = sim_in_thread(with_repos(SimDataset("org/many", {f"d/{i:05d}.jsonl": b"{}\n" for i in range(1_500)})))
    paths = [e.path for e in api(sim).list_repo_tree("org/many", "d", repo_type="dataset")]
    assert paths == [f"d/{i:05d}.jsonl" for i in range(1_500)]
    assert len(hub_repos(sim).logged("tree")) == -(-1_500 // TREE_PAGE_SIZE)
    assert len(hffs(sim).glob("datasets/org/many/d/*.jsonl")) == 1_500


# --- tokens -------------------------------------------------------------------------------


def test_private_repo_looks_missing_without_the_token(sim: SimServer) -> None:
    """Without a token a private repo is 'not found' (401); with it, it reads."""
    with pytest.raises(RepositoryNotFoundError) as caught:
        api(sim, token=False).dataset_info("org/secret")
    assert caught.value.response.status_code == 401
    with pytest.raises(FileNotFoundError):
        hffs(sim, token=False).cat("datasets/org/secret/data/a.jsonl")
    assert hffs(sim).cat("datasets/org/secret/data/a.jsonl") == JSONL
    assert api(sim).dataset_info("org/secret").private is True


def test_a_wrong_token_is_refused_even_on_public_repos(sim: SimServer) -> None:
    """A token the Hub does not know is a 401 everywhere, not a missing repo."""
    with pytest.raises(HfHubHTTPError) as caught:
        api(sim, token="hf_wrong").dataset_info("org/prompts")
    assert caught.value.response.status_code == 401
    assert not isinstance(caught.value, RepositoryNotFoundError)


def test_gated_files_need_the_token(sim: SimServer) -> None:
    """A gated repo's info is public, its files are not."""
    assert api(sim, token=False).dataset_info("org/gated").gated == "auto"
    with pytest.raises(GatedRepoError):
        hffs(sim, token=False).cat("datasets/org/gated/data/a.jsonl")
    assert hffs(sim).cat("datasets/org/gated/data/a.jsonl") == JSONL


def test_writes_need_the_token(sim: SimServer) -> None:
    """Creating a repo or committing without a token is refused and changes nothing."""
    anon = api(sim, token=False)
    with pytest.raises(HfHubHTTPError) as caught:
        anon.create_repo("org/new", repo_type="dataset")
    assert caught.value.response.status_code == 401
    with pytest.raises(HfHubHTTPError):
        anon.upload_file(path_or_fileobj=b"x", path_in_repo="x", repo_id="org/prompts", repo_type="dataset")
    assert hub_repos(sim).repo("org/new") is None
    assert "x" not in hub_repos(sim).files("org/prompts")


# --- writing ------------------------------------------------------------------------------


def test_create_repo_then_push_results_in_one_commit(sim: SimServer, tmp_path: Path) -> None:
    """create_repo + create_commit upload Parquet and stats in one named commit, readable back."""
    hub = api(sim)
    url = hub.create_repo("org/results", repo_type="dataset", private=True)
    assert url.repo_id == "org/results" and url.repo_type == "dataset"
    stats = tmp_path / "stats.json"
    stats.write_text('{"ok": 3}')
    info = hub.create_commit(
        "org/results",
        [CommitOperationAdd("data/results.parquet", PARQUET), CommitOperationAdd("stats.json", stats)],
        commit_message="hfbatch run 2024-05-01T12:00",
        repo_type="dataset",
    )
    repo = hub_repos(sim).repo("org/results")
    assert repo is not None and repo.private and repo.head.sha == info.oid
    assert repo.head.title == "hfbatch run 2024-05-01T12:00"
    assert [c.title for c in hub.list_repo_commits("org/results", repo_type="dataset")] == [
        "hfbatch run 2024-05-01T12:00",
        "initial commit",
    ]
    cache = tmp_path / "cache"
    local = hf_hub_download(
        "org/results", "stats.json", repo_type="dataset", endpoint=sim.hub_url, token=sim.config.token, cache_dir=cache
    )
    assert Path(local).read_text() == '{"ok": 3}'
    with hffs(sim).open("datasets/org/results/data/results.parquet", "rb") as f:
        assert pq.read_table(f).num_rows == ROWS


def test_create_repo_twice(sim: SimServer) -> None:
    """A second create_repo is a 409, unless exist_ok; a bare name lands in the token's namespace."""
    hub = api(sim)
    hub.create_repo("org/twice", repo_type="dataset")
    with pytest.raises(HfHubHTTPError) as caught:
        hub.create_repo("org/twice", repo_type="dataset")
    assert caught.value.response.status_code == 409
    assert hub.create_repo("org/twice", repo_type="dataset", exist_ok=True).repo_id == "org/twice"
    assert hub.create_repo("bare", repo_type="dataset").repo_id == f"{SIM_USER}/bare"
    assert hub.whoami()["name"] == SIM_USER


def test_each_commit_moves_the_sha_and_unchanged_files_are_skipped(sim: SimServer) -> None:
    """upload_file twice gives two shas; re-uploading the same bytes makes no commit."""
    hub = api(sim)
    first = hub.upload_file(path_or_fileobj=b"v1", path_in_repo="out.jsonl", repo_id="org/prompts", repo_type="dataset")
    second = hub.upload_file(
        path_or_fileobj=b"v2", path_in_repo="out.jsonl", repo_id="org/prompts", repo_type="dataset"
    )
    again = hub.upload_file(path_or_fileobj=b"v2", path_in_repo="out.jsonl", repo_id="org/prompts", repo_type="dataset")
    assert first.oid != second.oid and again.oid == second.oid
    assert hub_repos(sim).files("org/prompts", first.oid)["out.jsonl"] == b"v1"
    assert hub_repos(sim).files("org/prompts")["out.jsonl"] == b"v2"
    assert len(hub_repos(sim).logged("commit")) == 2


def test_upload_folder_takes_the_inline_path_too(sim: SimServer, tmp_path: Path) -> None:
    """upload_folder (the Xet pipeline in huggingface_hub 2.x) also commits inline against the sim."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "results.parquet").write_bytes(PARQUET)
    (tmp_path / "stats.json").write_text("{}")
    api(sim).create_repo("org/folder", repo_type="dataset")
    api(sim).upload_folder(folder_path=tmp_path, repo_id="org/folder", repo_type="dataset", commit_message="run 7")
    repo = hub_repos(sim).repo("org/folder")
    assert repo is not None and repo.head.title == "run 7"
    assert repo.head.files["data/results.parquet"].data == PARQUET


def test_a_failed_commit_changes_nothing(sim: SimServer) -> None:
    """A commit that deletes a missing file is refused whole: its additions are not applied either."""
    before = hub_repos(sim).repo("org/prompts").head.sha  # type: ignore[union-attr]
    with pytest.raises(RemoteEntryNotFoundError):
        api(sim).create_commit(
            "org/prompts",
            [CommitOperationAdd("new.txt", b"x"), CommitOperationDelete("no-such-file.txt")],
            commit_message="half",
            repo_type="dataset",
        )
    assert hub_repos(sim).repo("org/prompts").head.sha == before  # type: ignore[union-attr]
    with pytest.raises(HfHubHTTPError) as caught:
        api(sim).create_commit(
            "org/prompts",
            [CommitOperationAdd("new.txt", b"x")],
            commit_message="stale",
            repo_type="dataset",
            parent_commit="0" * 40,
        )
    assert caught.value.response.status_code == 412


# --- faults -------------------------------------------------------------------------------


def test_fault_500_on_commit_then_recovers(sim_in_thread: SimInThread) -> None:
    """`HubFault("500", on=("commit",), first=1)` fails the first commit (no retry in the library), not the next."""
    sim = sim_in_thread(with_repos(PROMPTS, faults=(HubFault("500", on=("commit",), first=1),)))
    hub = api(sim)
    with pytest.raises(HfHubHTTPError) as caught:
        hub.upload_file(path_or_fileobj=b"x", path_in_repo="x", repo_id="org/prompts", repo_type="dataset")
    assert caught.value.response.status_code == 500
    assert "x" not in hub_repos(sim).files("org/prompts")
    hub.upload_file(path_or_fileobj=b"x", path_in_repo="x", repo_id="org/prompts", repo_type="dataset")
    assert hub_repos(sim).files("org/prompts")["x"] == b"x"


def test_fault_401_on_every_endpoint(sim_in_thread: SimInThread) -> None:
    """A 401 fault with no `on` refuses reads and writes alike, as an expired token would."""
    sim = sim_in_thread(with_repos(PROMPTS, faults=(HubFault("401"),)))
    with pytest.raises(HfHubHTTPError) as caught:
        api(sim).dataset_info("org/prompts")
    assert caught.value.response.status_code == 401
    with pytest.raises(HfHubHTTPError):
        api(sim).create_repo("org/new", repo_type="dataset")
    assert [(r.endpoint, r.status) for r in hub_repos(sim).logged()] == [("info", 401), ("create", 401)]


# --- configuration ------------------------------------------------------------------------


def test_repos_and_faults_from_a_toml_table(tmp_path: Path) -> None:
    """The `hub_repos` table seeds repos from local files or inline text, and sets faults."""
    (tmp_path / "p.jsonl").write_bytes(JSONL)
    config = sim_config_from_dict(
        {
            "hub_repos": {
                "datasets": [
                    {
                        "repo": "org/p",
                        "private": True,
                        "files": {"data/p.jsonl": str(tmp_path / "p.jsonl"), "README.md": {"text": "# P"}},
                    }
                ],
                "faults": [{"kind": 500, "on": ["commit"], "first": 2}],
            }
        },
        "job.toml",
    )
    assert config.hub_repos == SimHubRepos(
        datasets=(SimDataset("org/p", {"data/p.jsonl": tmp_path / "p.jsonl", "README.md": b"# P"}, private=True),),
        faults=(HubFault("500", on=("commit",), first=2),),
    )
    with SimServer(config).in_thread() as sim:
        assert hub_repos(sim).files("org/p")["data/p.jsonl"] == JSONL


@pytest.mark.parametrize(
    ("table", "message"),
    [
        pytest.param({"datasets": [{"repo": "no-namespace"}]}, "sim.hub_repos.datasets[0].repo", id="bad-repo-id"),
        pytest.param({"datasets": [{"repo": "o/n", "colour": 1}]}, "sim.hub_repos.datasets[0].colour", id="key"),
        pytest.param(
            {"datasets": [{"repo": "o/n", "files": {"a": 1}}]}, "sim.hub_repos.datasets[0].files.a", id="file"
        ),
        pytest.param({"faults": [{"kind": "418"}]}, "sim.hub_repos.faults[0].kind", id="fault-kind"),
        pytest.param({"faults": [{"kind": "500", "on": ["nope"]}]}, "sim.hub_repos.faults[0].on[0]", id="endpoint"),
    ],
)
def test_bad_hub_repos_tables_name_the_key(table: dict[str, Any], message: str) -> None:
    """A wrong `hub_repos` table is a JobSpecError naming the file and the dotted key."""
    with pytest.raises(JobSpecError, match=re.escape(f"job.toml: {message}:")):
        sim_config_from_dict({"hub_repos": table}, "job.toml", key="sim")


def test_commit_refuses_lfs_pointers(sim: SimServer) -> None:
    """The sim never asks for LFS, so an `lfsFile` line (content uploaded elsewhere) is a 400."""
    lines = [
        {"key": "header", "value": {"summary": "lfs"}},
        {"key": "lfsFile", "value": {"path": "big.parquet", "algo": "sha256", "oid": "0" * 64, "size": 1}},
    ]
    body = b"".join(json.dumps(line).encode() + b"\n" for line in lines)
    request = urllib.request.Request(
        f"{sim.hub_url}/api/datasets/org/prompts/commit/main",
        data=body,
        method="POST",
        headers={"Authorization": f"Bearer {sim.config.token}", "Content-Type": "application/x-ndjson"},
    )
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=10)
    with caught.value as error:
        assert error.code == 400 and b"LFS" in error.read()
    assert "big.parquet" not in hub_repos(sim).files("org/prompts")


def test_validate_yaml_checks_a_dataset_cards_header(sim: SimServer) -> None:
    """A README committed with a sound YAML header passes the Hub's check; a broken one is refused, unchanged."""
    good = (
        b"---\nconfigs:\n- config_name: default\n  data_files:\n  - split: train\n    path: data/*.parquet\n---\n# x\n"
    )
    api(sim).upload_file(path_or_fileobj=good, path_in_repo="README.md", repo_id="org/prompts", repo_type="dataset")
    assert hub_repos(sim).files("org/prompts")["README.md"] == good
    for bad in (b"---\ntags: [unclosed\n---\n", b"---\nconfigs:\n- data_files: x\n---\n", b"---\ntags: one\n---\n"):
        with pytest.raises(ValueError, match=r"Invalid metadata in README\.md"):
            api(sim).upload_file(
                path_or_fileobj=bad, path_in_repo="README.md", repo_id="org/prompts", repo_type="dataset"
            )
    assert hub_repos(sim).files("org/prompts")["README.md"] == good
    assert {r.status for r in hub_repos(sim).logged("validate_yaml")} == {200, 400}
