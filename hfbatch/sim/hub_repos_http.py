"""The simulated Hub's dataset-repo endpoints, as huggingface_hub (2.x) calls them.

Reads: repo info (`/api/datasets/{repo}[/revision/{rev}]`), tree listing (paged with `Link`),
paths-info, commit list, and file download (`/datasets/{repo}/resolve/{rev}/{path}`, GET and
HEAD, with byte ranges). Writes: `whoami-v2`, repo creation, the dataset card's YAML check
(`validate-yaml`, `hub_cards.py`), pre-upload (which answers
`regular` for every file, so files travel base64-encoded inside the commit and neither Xet nor
LFS is ever used) and the NDJSON commit. Tokens work as on the Hub: a wrong token is refused
everywhere; without one, private repos look missing and gated files are refused; writes need it.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from hfbatch.sim.hub_cards import card_yaml_errors
from hfbatch.sim.hub_repos import (
    DEFAULT_BRANCH,
    SIM_USER,
    HubRepos,
    HubRequest,
    RepoError,
    SimCommit,
    SimRepo,
    hub_repos,
)
from hfbatch.sim.hub_repos_config import HubFault
from hfbatch.sim.hub_repos_wire import (
    HUB_ERROR_CODES,
    TREE_PAGE_SIZE,
    TREE_PAGE_SIZE_EXPANDED,
    byte_range,
    commit_entry,
    path_entries,
    repo_info,
    status_of,
    tree_entries,
    whoami,
)
from hfbatch.sim.state import SimState

__all__ = ["MAX_COMMIT_BYTES", "add_hub_repo_routes"]

# A commit carries its files inline (base64); the store is in memory, so bound what one may hold.
MAX_COMMIT_BYTES = 512 * 1024 * 1024
_REPO = "/api/datasets/{ns}/{name}"
_BAD_CREDENTIALS = "Invalid credentials in Authorization header"
_FAULT_BODIES = {
    "401": _BAD_CREDENTIALS,
    "403": "You don't have the rights to access this resource",
    "500": "Internal Error - We're working hard to fix this as soon as possible!",
    "503": "Service Unavailable",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class _Refusal(Exception):
    """Raised by a handler to answer with an error response."""

    def __init__(
        self, status: int, message: str, code: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.response = web.json_response({"error": message}, status=status, headers=_error_headers(message, code))
        self.response.headers.update(headers or {})


def _error_headers(message: str, code: str | None) -> dict[str, str]:
    headers = {"X-Error-Message": message}
    if code in HUB_ERROR_CODES:
        headers["X-Error-Code"] = code
    return headers


def _flag(request: web.Request, name: str) -> bool:
    return request.query.get(name, "").lower() in ("1", "true")


def _base_url(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"


def add_hub_repo_routes(app: web.Application, state: SimState) -> None:
    """Serve the dataset repos of `state`'s simulator (see `hub_repos`) from `app`."""
    h = _RepoHandlers(hub_repos(state), state.config.token)
    app.router.add_get("/api/whoami-v2", h.endpoint("whoami", h.whoami))
    app.router.add_post("/api/repos/create", h.endpoint("create", h.create))
    app.router.add_get(_REPO, h.endpoint("info", h.info))
    app.router.add_get(_REPO + "/revision/{rev}", h.endpoint("info", h.info))
    app.router.add_get(_REPO + "/tree/{rev}", h.endpoint("tree", h.tree))
    app.router.add_get(_REPO + "/tree/{rev}/{path:.+}", h.endpoint("tree", h.tree))
    app.router.add_post(_REPO + "/paths-info/{rev}", h.endpoint("paths_info", h.paths_info))
    app.router.add_get(_REPO + "/commits/{rev}", h.endpoint("commits", h.commits))
    app.router.add_post(_REPO + "/preupload/{rev}", h.endpoint("preupload", h.preupload))
    app.router.add_post(_REPO + "/commit/{rev}", h.endpoint("commit", h.commit))
    app.router.add_post("/api/validate-yaml", h.endpoint("validate_yaml", h.validate_yaml))
    # add_get also answers HEAD, which hf_hub_download sends first for the file's metadata.
    app.router.add_get("/datasets/{ns}/{name}/resolve/{rev}/{path:.+}", h.endpoint("resolve", h.resolve))


class _RepoHandlers:
    """The repo endpoints' handlers over one store; `endpoint` wraps each for faults and the log."""

    def __init__(self, repos: HubRepos, token: str) -> None:
        self.repos = repos
        self.token = token

    def endpoint(self, name: str, handler: Handler) -> Handler:
        """Wrap `handler` with the fault draw, error replies and the request log."""

        async def serve(request: web.Request) -> web.StreamResponse:
            fault = self.repos.draw_fault(name)
            try:
                if fault is not None:
                    raise _fault_refusal(fault)
                response = await handler(request)
            except _Refusal as refusal:
                response = refusal.response
            except RepoError as exc:
                response = _Refusal(status_of(exc), exc.message, exc.code).response
            info = request.match_info
            repo = f"{info['ns']}/{info['name']}" if "ns" in info else None
            self.repos.log(
                HubRequest(
                    name,
                    request.method,
                    repo,
                    info.get("rev"),
                    info.get("path"),
                    request.headers.get("Range"),
                    response.status,
                )
            )
            return response

        return serve

    # --- access ------------------------------------------------------------------------

    def _authenticated(self, request: web.Request) -> bool:
        auth = request.headers.get("Authorization")
        if auth is None:
            return False
        if auth != f"Bearer {self.token}":
            raise _Refusal(401, _BAD_CREDENTIALS)
        return True

    def _repo(self, request: web.Request, *, write: bool = False) -> SimRepo:
        """The repo the URL names, if this request may see it (and write to it, with `write`)."""
        authenticated = self._authenticated(request)
        repo = self.repos.repo(f"{request.match_info['ns']}/{request.match_info['name']}")
        # Like the Hub: a private repo looks missing to anonymous callers, who get 401 rather than 404.
        if repo is None or (repo.private and not authenticated):
            raise _Refusal(404 if authenticated else 401, "Repository not found", "RepoNotFound")
        if write and not authenticated:
            raise _Refusal(401, "You must be authenticated to write to a repo")
        return repo

    def _commit(self, request: web.Request, *, write: bool = False) -> tuple[SimRepo, SimCommit]:
        repo = self._repo(request, write=write)
        return repo, repo.resolve(request.match_info.get("rev", DEFAULT_BRANCH))

    # --- reads -------------------------------------------------------------------------

    async def info(self, request: web.Request) -> web.StreamResponse:
        repo, commit = self._commit(request)
        expand = request.query.getall("expand", []) + request.query.getall("expand[]", [])
        return web.json_response(repo_info(repo, commit, blobs=_flag(request, "blobs"), expand=expand))

    async def tree(self, request: web.Request) -> web.StreamResponse:
        _, commit = self._commit(request)
        expand = _flag(request, "expand")
        entries = tree_entries(
            commit, request.match_info.get("path", "").strip("/"), recursive=_flag(request, "recursive"), expand=expand
        )
        size = TREE_PAGE_SIZE_EXPANDED if expand else TREE_PAGE_SIZE
        try:
            start = int(request.query.get("cursor", "0"))
        except ValueError:
            raise _Refusal(400, "Invalid cursor") from None
        page = entries[start : start + size]
        headers = {}
        if start + size < len(entries):
            headers["Link"] = f'<{request.url.update_query(cursor=str(start + size))}>; rel="next"'
        return web.json_response(page, headers=headers)

    async def paths_info(self, request: web.Request) -> web.StreamResponse:
        _, commit = self._commit(request)
        form = await request.post()
        paths = [p for p in form.getall("paths", []) if isinstance(p, str)]
        expand = str(form.get("expand", "")).lower() in ("1", "true")
        return web.json_response(path_entries(commit, paths, expand=expand))

    async def commits(self, request: web.Request) -> web.StreamResponse:
        repo, commit = self._commit(request)
        return web.json_response([commit_entry(c) for c in repo.history(commit.sha)])

    async def resolve(self, request: web.Request) -> web.StreamResponse:
        repo, commit = self._commit(request)
        authenticated = self._authenticated(request)
        if repo.gated and not authenticated:
            raise _Refusal(401, f"Access to dataset {repo.id} is restricted. You must be authenticated.", "GatedRepo")
        path = request.match_info["path"]
        blob = commit.files.get(path)
        if blob is None:
            raise _Refusal(404, "Entry not found", "EntryNotFound", {"X-Repo-Commit": commit.sha})
        size = len(blob.data)
        headers = {
            "ETag": f'"{blob.oid}"',
            "X-Repo-Commit": commit.sha,
            "Accept-Ranges": "bytes",
            "Content-Type": "application/octet-stream",
        }
        asked: slice | None = None
        if "Range" in request.headers:
            try:
                asked = request.http_range
            except ValueError:
                pass  # a Range the server cannot parse is ignored: the whole file, as RFC 9110 allows
        if asked is None or (asked.start is None and asked.stop is None):
            return web.Response(body=blob.data, headers=headers)
        span = byte_range(asked, size)
        if span is None:
            raise _Refusal(416, "Requested range not satisfiable", headers={"Content-Range": f"bytes */{size}"})
        start, stop = span
        headers["Content-Range"] = f"bytes {start}-{stop - 1}/{size}"
        return web.Response(status=206, body=blob.data[start:stop], headers=headers)

    # --- writes ------------------------------------------------------------------------

    async def whoami(self, request: web.Request) -> web.StreamResponse:
        if not self._authenticated(request):
            raise _Refusal(401, "Invalid username or password.")
        return web.json_response(whoami())

    async def create(self, request: web.Request) -> web.StreamResponse:
        if not self._authenticated(request):
            raise _Refusal(401, "You must be authenticated to create a repo")
        body = await _json_object(request)
        if body.get("type") != "dataset":
            raise _Refusal(400, "The simulated Hub serves dataset repos only")
        repo_id = f"{body.get('organization') or SIM_USER}/{body.get('name')}"
        url = f"{_base_url(request)}/datasets/{repo_id}"
        private = body.get("visibility") == "private" or body.get("private") is True
        try:
            self.repos.create(repo_id, private=private)
        except RepoError as exc:
            if exc.code != "RepoExists":
                raise
            # huggingface_hub reads `url` from the 409 too when called with exist_ok=True.
            return web.json_response({"error": exc.message, "url": url}, status=409)
        return web.json_response({"url": url, "name": repo_id, "id": repo_id})

    async def preupload(self, request: web.Request) -> web.StreamResponse:
        repo, commit = self._commit(request, write=True)
        self._no_pull_requests(request)
        self._branch(repo, request.match_info["rev"])
        files = (await _json_object(request)).get("files")
        if not isinstance(files, list) or not all(_is_file_entry(f) for f in files):
            raise _Refusal(400, "`files` must be a list of objects with a `path`")
        answers = []
        for f in files:
            existing = commit.files.get(f["path"])
            answers.append(
                {
                    "path": f["path"],
                    "uploadMode": "regular",
                    "shouldIgnore": False,
                    "oid": existing.oid if existing is not None else None,
                }
            )
        return web.json_response({"files": answers, "commitOid": commit.sha})

    async def commit(self, request: web.Request) -> web.StreamResponse:
        repo = self._repo(request, write=True)
        self._no_pull_requests(request)
        branch = request.match_info["rev"]
        self._branch(repo, branch)
        header, add, delete, delete_folders = _operations(await _read_body(request))
        commit = self.repos.commit(
            repo.id,
            title=str(header.get("summary") or "Upload files"),
            message=str(header.get("description") or ""),
            add=add,
            delete=delete,
            delete_folders=delete_folders,
            branch=branch,
            parent=header.get("parentCommit"),
        )
        return web.json_response(
            {
                "success": True,
                "commitOid": commit.sha,
                "commitUrl": f"{_base_url(request)}/datasets/{repo.id}/commit/{commit.sha}",
                "hookOutput": "",
                "pullRequestUrl": None,
            }
        )

    async def validate_yaml(self, request: web.Request) -> web.Response:
        """Check a README's YAML header, as huggingface_hub asks before committing one."""
        content = (await _json_object(request)).get("content")
        if not isinstance(content, str):
            raise _Refusal(400, "'content' must be a string")
        errors = [{"message": m} for m in card_yaml_errors(content)]
        return web.json_response({"errors": errors, "warnings": []}, status=400 if errors else 200)

    def _no_pull_requests(self, request: web.Request) -> None:
        if _flag(request, "create_pr"):
            raise _Refusal(400, "The simulated Hub does not open pull requests")

    def _branch(self, repo: SimRepo, branch: str) -> None:
        if branch not in repo.branches:
            raise _Refusal(404, f"Invalid rev id: {branch} is not a branch", "RevisionNotFound")


def _is_file_entry(item: object) -> bool:
    return isinstance(item, dict) and isinstance(item.get("path"), str)


def _fault_refusal(fault: HubFault) -> _Refusal:
    return _Refusal(int(fault.kind), _FAULT_BODIES[fault.kind])


async def _read_body(request: web.Request) -> bytes:
    """The whole request body, read past aiohttp's 1 MiB `client_max_size` (which guards `read()`)."""
    body = bytearray()
    async for chunk in request.content.iter_chunked(1 << 16):
        body += chunk
        if len(body) > MAX_COMMIT_BYTES:
            raise _Refusal(413, f"A commit may carry at most {MAX_COMMIT_BYTES} bytes")
    return bytes(body)


async def _json_object(request: web.Request) -> dict[str, Any]:
    try:
        body = json.loads(await _read_body(request))
    except ValueError:
        raise _Refusal(400, "The body is not valid JSON") from None
    if not isinstance(body, dict):
        raise _Refusal(400, "The body must be a JSON object")
    return body


def _operations(body: bytes) -> tuple[dict[str, Any], dict[str, bytes], list[str], list[str]]:
    """Parse an NDJSON commit: (header, files to add, files to delete, folders to delete)."""
    header: dict[str, Any] = {}
    add: dict[str, bytes] = {}
    delete: list[str] = []
    delete_folders: list[str] = []
    for n, line in enumerate(body.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            key, value = item["key"], item["value"]
            if key == "header":
                header = dict(value)
            elif key == "file":
                if value.get("encoding", "base64") != "base64":
                    raise ValueError("only base64 content is supported")
                add[value["path"]] = base64.b64decode(value["content"], validate=True)
            elif key == "deletedFile":
                delete.append(value["path"])
            elif key == "deletedFolder":
                delete_folders.append(value["path"])
            elif key == "lfsFile":
                raise ValueError("LFS files are not simulated: pre-upload answers 'regular', so send the content")
            else:
                raise ValueError(f"unknown operation {key!r}")
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise _Refusal(400, f"Bad commit payload, line {n}: {exc}") from None
    return header, add, delete, delete_folders
