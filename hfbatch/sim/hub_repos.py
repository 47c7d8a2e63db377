"""The simulated Hub's dataset repos: commits, branches and files in memory.

One `HubRepos` store belongs to each running simulator (`hub_repos(sim)`); the HTTP handlers in
`hfbatch.sim.hub_repos_http` serve it, and tests seed and inspect it directly::

    repos = hub_repos(sim)
    repos.put_files("org/prompts", {"data/train.jsonl": b'{"prompt": "hi"}\\n'})
    repos.files("org/prompts")["data/train.jsonl"]
"""

from __future__ import annotations

import hashlib
import json
import threading
import weakref
from collections import Counter, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Protocol

from hfbatch.errors import JobSpecError
from hfbatch.sim.hub_repos_config import HubFault, SimHubRepos, check_repo_id
from hfbatch.sim.state import SimState

__all__ = [
    "DEFAULT_BRANCH",
    "GITATTRIBUTES",
    "MAX_LOGGED_HUB_REQUESTS",
    "SIM_USER",
    "HubRepos",
    "HubRequest",
    "RepoError",
    "SimBlob",
    "SimCommit",
    "SimRepo",
    "git_blob_oid",
    "hub_repos",
    "iso_date",
]

DEFAULT_BRANCH = "main"
# The user the simulator's token belongs to: the namespace of a repo created without one.
SIM_USER = "hfbatch-sim"
MAX_LOGGED_HUB_REQUESTS = 500
# What the Hub puts in every new repo's first commit (abridged).
GITATTRIBUTES = (
    b"*.arrow filter=lfs diff=lfs merge=lfs -text\n"
    b"*.parquet filter=lfs diff=lfs merge=lfs -text\n"
    b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"
    b"*.zst filter=lfs diff=lfs merge=lfs -text\n"
)


def git_blob_oid(data: bytes) -> str:
    """The git object id of a file's content, as the Hub reports it for non-LFS files."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def iso_date(when: datetime) -> str:
    """A timestamp as the Hub writes it, e.g. `2024-05-01T12:00:00.000Z`."""
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


class RepoError(Exception):
    """A repo operation the Hub refuses; `code` is the Hub's `X-Error-Code` (or our own name)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class SimBlob:
    """A file's content and its git object id."""

    data: bytes
    oid: str

    @classmethod
    def of(cls, data: bytes) -> SimBlob:
        """The blob holding `data`."""
        return cls(data, git_blob_oid(data))


@dataclass(frozen=True, slots=True)
class SimCommit:
    """One commit: its sha, message, parent and the whole file tree it leaves."""

    sha: str
    title: str
    message: str
    parent: str | None
    date: datetime
    files: Mapping[str, SimBlob]


@dataclass(frozen=True, slots=True)
class HubRequest:
    """One request to a repo endpoint, as the request log keeps it."""

    endpoint: str
    method: str
    repo: str | None
    revision: str | None
    path: str | None
    range: str | None
    status: int


class SimRepo:
    """A dataset repo: its commits and branches. Commits are immutable; branches move."""

    def __init__(self, repo_id: str, *, private: bool, gated: bool, created_at: datetime) -> None:
        self.id = repo_id
        self.private = private
        self.gated = gated
        self.created_at = created_at
        self.branches: dict[str, str] = {}
        self.commits: dict[str, SimCommit] = {}

    def resolve(self, revision: str) -> SimCommit:
        """The commit a branch name, a full sha or an unambiguous sha prefix (7+ digits) names."""
        sha = self.branches.get(revision)
        if sha is None and revision in self.commits:
            sha = revision
        if sha is None and len(revision) >= 7:
            # list() copies in one step: a seeding thread may add commits meanwhile.
            matches = [s for s in list(self.commits) if s.startswith(revision.lower())]
            sha = matches[0] if len(matches) == 1 else None
        if sha is None:
            raise RepoError("RevisionNotFound", f"Invalid rev id: {revision}")
        return self.commits[sha]

    @property
    def head(self) -> SimCommit:
        """The last commit on the default branch."""
        return self.commits[self.branches[DEFAULT_BRANCH]]

    def history(self, revision: str = DEFAULT_BRANCH) -> list[SimCommit]:
        """The commits reachable from `revision`, newest first."""
        out: list[SimCommit] = []
        commit: SimCommit | None = self.resolve(revision)
        while commit is not None:
            out.append(commit)
            commit = self.commits[commit.parent] if commit.parent is not None else None
        return out


def _check_path(path: str) -> None:
    parts = path.split("/")
    if not path or path.startswith("/") or any(p in ("", ".", "..") for p in parts) or parts[0] == ".git":
        raise RepoError("BadRequest", f"Invalid path: {path!r}")


def _apply(
    files: dict[str, SimBlob],
    add: Mapping[str, bytes],
    delete: Iterable[str],
    delete_folders: Iterable[str],
) -> None:
    for path in delete:
        if files.pop(path, None) is None:
            raise RepoError("EntryNotFound", f"A file with this name doesn't exist: {path}")
    for folder in delete_folders:
        prefix = folder.rstrip("/") + "/"
        doomed = [p for p in files if p.startswith(prefix)]
        if not doomed:
            raise RepoError("EntryNotFound", f"A folder with this name doesn't exist: {folder}")
        for p in doomed:
            del files[p]
    for path, data in add.items():
        _check_path(path)
        files[path] = SimBlob.of(data)
    folders = {path[:i] for path in files for i, char in enumerate(path) if char == "/"}
    clash = sorted(folders.intersection(files))
    if clash:
        raise RepoError("BadRequest", f"{clash[0]!r} cannot be both a file and a folder")


def _commit_sha(repo_id: str, parent: str | None, title: str, message: str, files: Mapping[str, SimBlob]) -> str:
    # Deterministic, so the same history always gets the same shas.
    tree = sorted((path, blob.oid) for path, blob in files.items())
    payload = json.dumps([repo_id, parent, title, message, tree], separators=(",", ":"))
    return hashlib.sha1(payload.encode(), usedforsecurity=False).hexdigest()


class HubRepos:
    """Every dataset repo of one simulated Hub, its fault draws and request log (thread-safe)."""

    def __init__(self, config: SimHubRepos | None = None) -> None:
        self.config = config if config is not None else SimHubRepos()
        self.repos: dict[str, SimRepo] = {}
        self.requests: deque[HubRequest] = deque(maxlen=MAX_LOGGED_HUB_REQUESTS)
        self.counts: Counter[str] = Counter()
        self._fault_counts: list[int] = [0] * len(self.config.faults)
        self._lock = threading.RLock()
        for dataset in self.config.datasets:
            self.put_files(
                dataset.repo,
                {path: _read(dataset.repo, path, src) for path, src in dataset.files.items()},
                message="Upload dataset",
                private=dataset.private,
                gated=dataset.gated,
            )

    # --- repos and commits -------------------------------------------------------------

    def repo(self, repo_id: str) -> SimRepo | None:
        """The repo called `repo_id`, if it exists."""
        with self._lock:
            return self.repos.get(repo_id)

    def create(self, repo_id: str, *, private: bool = False, gated: bool = False) -> SimRepo:
        """Create a repo whose first commit holds `.gitattributes`, as the Hub does."""
        problem = check_repo_id(repo_id)
        if problem is not None:
            raise RepoError("BadRequest", problem)
        with self._lock:
            if repo_id in self.repos:
                raise RepoError("RepoExists", "You already created this dataset repo")
            repo = SimRepo(repo_id, private=private, gated=gated, created_at=datetime.now(UTC))
            self.repos[repo_id] = repo
            self.commit(repo_id, title="initial commit", add={".gitattributes": GITATTRIBUTES})
            return repo

    def commit(
        self,
        repo_id: str,
        *,
        title: str,
        message: str = "",
        add: Mapping[str, bytes] | None = None,
        delete: Iterable[str] = (),
        delete_folders: Iterable[str] = (),
        branch: str = DEFAULT_BRANCH,
        parent: str | None = None,
    ) -> SimCommit:
        """Apply deletions then additions to `branch` at once, as one new commit; all or nothing."""
        with self._lock:
            repo = self.repos.get(repo_id)
            if repo is None:
                raise RepoError("RepoNotFound", "Repository not found")
            base_sha = repo.branches.get(branch)
            if base_sha is None and repo.branches:
                raise RepoError("RevisionNotFound", f"Invalid rev id: {branch}")
            if parent is not None and (base_sha is None or not base_sha.startswith(parent.lower())):
                raise RepoError("ParentMismatch", f"The parent commit {parent} is not the head of {branch}")
            files = dict(repo.commits[base_sha].files) if base_sha is not None else {}
            _apply(files, add or {}, delete, delete_folders)
            sha = _commit_sha(repo_id, base_sha, title, message, files)
            commit = SimCommit(sha, title, message, base_sha, datetime.now(UTC), MappingProxyType(files))
            repo.commits[sha] = commit
            repo.branches[branch] = sha
            return commit

    def put_files(
        self,
        repo_id: str,
        files: Mapping[str, bytes | Path],
        *,
        message: str = "Upload files",
        delete: Iterable[str] = (),
        private: bool = False,
        gated: bool = False,
    ) -> SimCommit:
        """Commit `files` (content, or a local file to read) to `main`, creating the repo if needed."""
        contents = {path: _read(repo_id, path, src) for path, src in files.items()}
        with self._lock:
            if repo_id not in self.repos:
                self.create(repo_id, private=private, gated=gated)
            return self.commit(repo_id, title=message, add=contents, delete=delete)

    def files(self, repo_id: str, revision: str = DEFAULT_BRANCH) -> dict[str, bytes]:
        """Every file of `repo_id` at `revision`, path to content."""
        repo = self.repo(repo_id)
        if repo is None:
            raise RepoError("RepoNotFound", "Repository not found")
        with self._lock:
            return {path: blob.data for path, blob in repo.resolve(revision).files.items()}

    # --- faults and the request log ----------------------------------------------------

    def draw_fault(self, endpoint: str) -> HubFault | None:
        """Count one request to `endpoint` against each fault covering it; the first that fires, if any."""
        with self._lock:
            self.counts[endpoint] += 1
            hit: HubFault | None = None
            for i, fault in enumerate(self.config.faults):
                if fault.covers(endpoint):
                    self._fault_counts[i] += 1
                    if hit is None and fault.applies_to(self._fault_counts[i]):
                        hit = fault
            return hit

    def log(self, request: HubRequest) -> None:
        """Keep one served request in the (bounded) log."""
        with self._lock:
            self.requests.append(request)

    def logged(self, endpoint: str | None = None) -> list[HubRequest]:
        """A copy of the request log, only `endpoint`'s requests if given."""
        with self._lock:
            return [r for r in self.requests if endpoint is None or r.endpoint == endpoint]


def _read(repo_id: str, path: str, src: bytes | Path) -> bytes:
    if isinstance(src, bytes):
        return src
    try:
        return src.read_bytes()
    except OSError as exc:
        raise JobSpecError(f"sim dataset {repo_id}: {path}: cannot read {src} ({exc.strerror or exc})") from exc


# --- one store per simulator -------------------------------------------------------------


class _HasState(Protocol):
    @property
    def state(self) -> SimState: ...


_STORES: weakref.WeakKeyDictionary[SimState, HubRepos] = weakref.WeakKeyDictionary()
_STORES_LOCK = threading.Lock()


def hub_repos(sim: SimState | _HasState) -> HubRepos:
    """The dataset repos of a simulator (a SimServer or its SimState), seeded from its config on first use."""
    state = sim if isinstance(sim, SimState) else sim.state
    with _STORES_LOCK:
        store = _STORES.get(state)
        if store is None:
            store = _STORES[state] = HubRepos(state.config.hub_repos)
        return store
