"""The JSON the simulated Hub's repo endpoints send, in the shapes huggingface_hub parses."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from hfbatch.sim.hub_repos import SIM_USER, RepoError, SimBlob, SimCommit, SimRepo, iso_date

__all__ = [
    "HUB_ERROR_CODES",
    "TREE_PAGE_SIZE",
    "TREE_PAGE_SIZE_EXPANDED",
    "byte_range",
    "commit_entry",
    "path_entries",
    "repo_info",
    "status_of",
    "tree_entries",
    "whoami",
]

# The Hub pages tree listings at 1000 entries, 50 when each carries its last commit.
TREE_PAGE_SIZE = 1000
TREE_PAGE_SIZE_EXPANDED = 50
# The error codes huggingface_hub reads from `X-Error-Code`; other RepoError codes stay internal.
HUB_ERROR_CODES = frozenset({"RepoNotFound", "RevisionNotFound", "EntryNotFound", "GatedRepo"})
_STATUS = {
    "RepoNotFound": 404,
    "RevisionNotFound": 404,
    "EntryNotFound": 404,
    "GatedRepo": 401,
    "RepoExists": 409,
    "ParentMismatch": 412,
    "BadRequest": 400,
}


def status_of(error: RepoError) -> int:
    """The HTTP status the Hub answers a refused repo operation with."""
    return _STATUS.get(error.code, 400)


def _object_id(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _tree_oid(files: Mapping[str, SimBlob], folder: str) -> str:
    prefix = folder + "/"
    listing = "\n".join(f"{p} {b.oid}" for p, b in sorted(files.items()) if p.startswith(prefix))
    return hashlib.sha1(f"tree {listing}".encode(), usedforsecurity=False).hexdigest()


def _last_commit(commit: SimCommit) -> dict[str, str]:
    return {"id": commit.sha, "title": commit.title, "date": iso_date(commit.date)}


def _file_entry(path: str, blob: SimBlob, commit: SimCommit | None) -> dict[str, Any]:
    entry: dict[str, Any] = {"type": "file", "oid": blob.oid, "size": len(blob.data), "path": path}
    if commit is not None:
        entry["lastCommit"] = _last_commit(commit)
    return entry


def _folder_entry(files: Mapping[str, SimBlob], path: str, commit: SimCommit | None) -> dict[str, Any]:
    entry: dict[str, Any] = {"type": "directory", "oid": _tree_oid(files, path), "size": 0, "path": path}
    if commit is not None:
        entry["lastCommit"] = _last_commit(commit)
    return entry


def _folders(files: Mapping[str, SimBlob]) -> set[str]:
    return {path[:i] for path in files for i, char in enumerate(path) if char == "/"}


def tree_entries(commit: SimCommit, folder: str, *, recursive: bool, expand: bool) -> list[dict[str, Any]]:
    """The entries below `folder` ('' for the root): folders first, then files, each sorted by path.

    With `expand`, each entry carries the commit listed (the Hub names the last commit that touched it).
    """
    files = commit.files
    folders = _folders(files)
    if folder and folder not in folders:
        raise RepoError("EntryNotFound", f"{folder} does not exist on {commit.sha}")
    prefix = folder + "/" if folder else ""
    depth = prefix.count("/")

    def wanted(path: str) -> bool:
        return path.startswith(prefix) and (recursive or path.count("/") == depth)

    last = commit if expand else None
    dirs = [_folder_entry(files, p, last) for p in sorted(folders) if wanted(p)]
    return dirs + [_file_entry(p, files[p], last) for p in sorted(files) if wanted(p)]


def path_entries(commit: SimCommit, paths: list[str], *, expand: bool) -> list[dict[str, Any]]:
    """The entries of the given paths that exist, files and folders, in the order asked."""
    folders = _folders(commit.files)
    last = commit if expand else None
    out: list[dict[str, Any]] = []
    for path in paths:
        path = path.strip("/")
        if path in commit.files:
            out.append(_file_entry(path, commit.files[path], last))
        elif path in folders:
            out.append(_folder_entry(commit.files, path, last))
    return out


def repo_info(repo: SimRepo, commit: SimCommit, *, blobs: bool, expand: list[str]) -> dict[str, Any]:
    """The dataset info body: sha, siblings, visibility; only the `expand`ed properties if any."""
    siblings: list[dict[str, Any]] = []
    for path, blob in sorted(commit.files.items()):
        sibling: dict[str, Any] = {"rfilename": path}
        if blobs:
            sibling.update(size=len(blob.data), blobId=blob.oid)
        siblings.append(sibling)
    info: dict[str, Any] = {
        "_id": _object_id(repo.id),
        "id": repo.id,
        "author": repo.id.split("/")[0],
        "sha": commit.sha,
        "lastModified": iso_date(commit.date),
        "createdAt": iso_date(repo.created_at),
        "private": repo.private,
        "gated": "auto" if repo.gated else False,
        "disabled": False,
        "downloads": 0,
        "likes": 0,
        "tags": [],
        "cardData": {},
        "siblings": siblings,
        "usedStorage": sum(len(b.data) for b in commit.files.values()),
    }
    if expand:
        return {k: v for k, v in info.items() if k in ("_id", "id") or k in expand}
    return info


def commit_entry(commit: SimCommit) -> dict[str, Any]:
    """One item of the commit list."""
    return {
        "id": commit.sha,
        "title": commit.title,
        "message": commit.message,
        "authors": [{"user": SIM_USER}],
        "date": iso_date(commit.date),
    }


def whoami() -> dict[str, Any]:
    """The identity the simulator's token belongs to."""
    return {
        "type": "user",
        "id": _object_id(SIM_USER),
        "name": SIM_USER,
        "fullname": "hfbatch simulator",
        "orgs": [],
        "auth": {"type": "access_token", "accessToken": {"displayName": "sim", "role": "write"}},
    }


def byte_range(request_range: slice, size: int) -> tuple[int, int] | None:
    """The [start, stop) span a parsed `Range` header (as aiohttp's `http_range`) asks of `size` bytes.

    None when unsatisfiable: the range starts at or past the end.
    """
    start, stop = request_range.start, request_range.stop
    if start is not None and start < 0:  # a suffix, `bytes=-N`
        start, stop = max(size + start, 0), size
    else:
        start = start or 0
        stop = size if stop is None else min(stop, size)
    if start >= stop:
        return None
    return start, stop
