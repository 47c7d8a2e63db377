"""Pushing an output to a Hub dataset repo: the data file, its stats and a dataset card, in one commit.

`push_output` creates the dataset repo when it does not exist yet and commits three files
with `create_commit` (huggingface_hub chooses how each is sent: inline or LFS/Xet, as the Hub's
pre-upload answer says): the output at `data/<output name>` (`--hub-path`), its stats at
`stats/<that name>.stats.json`, and the card (`card.py`) as `README.md`, unless the repo's README
is the user's own (it lacks `card.CARD_MARKER`), which is left alone. The huggingface_hub calls
are synchronous: async code runs them in a thread.

What is pushed is always one consistent file. A finished output is pushed as it is. A Parquet
output whose journal still holds results (a run in progress, or one that stopped) is merged into
a temporary copy first: the Parquet file is hard-linked (a merge replaces it by rename, so the
link keeps the old content) and the journal's whole lines copied, then `parquet_file.merge` makes
the snapshot. A JSONL output being written is copied up to its last whole line. Pushing the same
output twice changes nothing on the Hub (no file differs, so no commit is made).

A failed push raises `PushError` (exit 7); the local output is never touched by a push.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from hfbatch.card import CARD_MARKER, CardInfo, OutputSummary, render_card
from hfbatch.credentials import check_url
from hfbatch.errors import AuthenticationError, HfbatchError, PushError, UsageError
from hfbatch.hubfiles import HubAccess, describe_hub_error, hub_errors, require_hub
from hfbatch.hubspec import check_hub_path, check_repo_id
from hfbatch.outputs.formats import format_for
from hfbatch.outputs.manifest import hold_lock

if TYPE_CHECKING:
    from hfbatch.jobspec import JobSpec

__all__ = ["PushResult", "PushTarget", "check_push", "push_existing", "push_output"]

_COPY_BLOCK = 1 << 20


@dataclass(frozen=True, slots=True)
class PushTarget:
    """Where an output goes: the dataset repo, whether a new one is private, and the file's path in it."""

    repo_id: str
    access: HubAccess
    private: bool = False
    path_in_repo: str | None = None

    @classmethod
    def from_job(cls, spec: JobSpec) -> PushTarget | None:
        """The job's `--push-to-hub` target, or None when it pushes nothing."""
        if spec.push_to_hub is None:
            return None
        access = HubAccess.of(spec.hub_url, spec.api_key_env)
        return cls(spec.push_to_hub, access, private=spec.private, path_in_repo=spec.hub_path)

    @classmethod
    def named(
        cls, repo: str, *, hub_url: str | None, api_key_env: str | None, private: bool, path: str | None
    ) -> PushTarget:
        """The target `hfbatch push` names with its arguments; JobSpecError (exit 2) for a bad one."""
        check_repo_id(repo, "REPO")
        if path is not None:
            check_hub_path(path, "--hub-path")
        access = HubAccess.of(check_url(hub_url, "--hub-url") if hub_url else None, api_key_env)
        return cls(repo, access, private=private, path_in_repo=path)

    def data_path(self, output: Path) -> str:
        """The output's path in the repo."""
        return self.path_in_repo or f"data/{output.name}"

    def stats_path(self, output: Path) -> str:
        """The stats' path in the repo: outside the data folder, so the viewer never reads it as data."""
        return f"stats/{PurePosixPath(self.data_path(output)).name}.stats.json"


@dataclass(frozen=True, slots=True)
class PushResult:
    """One push: the commit the repo is at afterwards, the rows pushed and the files written."""

    repo_id: str
    commit: str
    url: str
    rows: int
    files: tuple[str, ...]
    #: False when the repo's README.md is the user's own and was kept.
    card: bool

    def to_dict(self) -> dict[str, Any]:
        """The stats file's form."""
        return {"repo": self.repo_id, "commit": self.commit, "url": self.url, "rows": self.rows, "card": self.card}


def check_push(target: PushTarget, what: str = "--push-to-hub") -> None:
    """Before anything is sent: UsageError without huggingface_hub, AuthenticationError without a token."""
    require_hub(what)
    if target.access.token is None:
        raise AuthenticationError(
            f"{what} {target.repo_id} needs a Hugging Face token with write access; "
            f"{target.access.token_hint()} (nothing was sent)"
        )


def push_output(
    output: Path,
    target: PushTarget,
    *,
    stats: dict[str, Any] | None = None,
    stats_path: Path | None = None,
    live: bool = False,
    label: str = "",
    retry_hint: str = "",
) -> PushResult | None:
    """Push `output` (a snapshot of it when `live`: a run is writing it) with its stats and card; None if empty.

    `stats` is the run's stats dict, else the file at `stats_path` (default `<output>.stats.json`)
    is read. Raises PushError when the Hub refuses or fails; the local files are never changed.
    """
    require_hub("pushing to the Hub")
    with _snapshot(output, live=live) as data_file:
        if data_file is None:
            return None
        summary = OutputSummary.of_file(data_file)
        if summary.rows == 0:
            return None
        if stats is None:
            stats = _read_stats(stats_path or output.with_name(output.name + ".stats.json"))
        data_path, stats_in_repo = target.data_path(output), target.stats_path(output)
        card = render_card(CardInfo(target.repo_id, data_path, stats_in_repo, summary, stats))
        title = f"hfbatch: {output.name}, {summary.rows:,} rows" + (f" ({label})" if label else "")
        with _pushing(output, target, retry_hint), _quiet_library():
            from huggingface_hub import CommitOperationAdd

            api = target.access.api()
            api.create_repo(target.repo_id, repo_type="dataset", private=target.private, exist_ok=True)
            write_card = not _users_readme(target)
            uploads: dict[str, Path | bytes] = {data_path: data_file}
            if write_card:
                uploads["README.md"] = card.encode()
            if _on_the_hub(api, target, uploads):
                # The data and card are there already (a rerun of a pushed run): its stats alone make no commit.
                sha = str(api.dataset_info(target.repo_id).sha)
                url = f"{target.access.endpoint}/datasets/{target.repo_id}/commit/{sha}"
                return PushResult(target.repo_id, sha, url, summary.rows, (), write_card)
            uploads[stats_in_repo] = json.dumps(stats or {}, indent=2, ensure_ascii=False).encode()
            ops = [CommitOperationAdd(p, str(c) if isinstance(c, Path) else c) for p, c in uploads.items()]
            info = api.create_commit(target.repo_id, ops, commit_message=title, repo_type="dataset")
    return PushResult(target.repo_id, str(info.oid), str(info.commit_url), summary.rows, tuple(uploads), write_card)


def push_existing(output: Path, target: PushTarget, *, stats_path: Path | None = None) -> PushResult:
    """Push an output no run is writing (`hfbatch push`), holding its lock; UsageError when there is nothing."""
    check_push(target, "hfbatch push")
    if not output.is_file():
        raise UsageError(f"{output}: no such output file; give the output a run wrote (nothing was sent)")
    if output.suffix not in (".jsonl", ".parquet"):
        raise UsageError(f"{output}: not an hfbatch output (.jsonl or .parquet); nothing was sent")
    with hold_lock(output):
        hint = f"rerun `hfbatch push {output} {target.repo_id}`"
        result = push_output(output, target, stats_path=stats_path, retry_hint=hint)
    if result is None:
        raise UsageError(f"{output}: holds no results yet, so there is nothing to push")
    return result


def _read_stats(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # the card then lacks the settings and the command, nothing worse
    return data if isinstance(data, dict) else None


def _on_the_hub(api: Any, target: PushTarget, uploads: dict[str, Path | bytes]) -> bool:
    """True when every one of `uploads` is already in the repo with this content."""
    remote = {i.path: i for i in api.get_paths_info(target.repo_id, list(uploads), repo_type="dataset")}
    for path, content in uploads.items():
        info = remote.get(path)
        if info is None or not hasattr(info, "blob_id"):
            return False  # missing, or a folder
        git_oid, sha256 = _digests(content)
        lfs = getattr(info, "lfs", None)
        if (lfs.sha256 if lfs is not None else info.blob_id) != (sha256 if lfs is not None else git_oid):
            return False
    return True


def _digests(content: Path | bytes) -> tuple[str, str]:
    """A file's git blob id (how the Hub names a regular file) and sha256 (an LFS file), in one read."""
    size = content.stat().st_size if isinstance(content, Path) else len(content)
    git = hashlib.sha1(b"blob %d\0" % size, usedforsecurity=False)
    sha = hashlib.sha256()
    with open(content, "rb") if isinstance(content, Path) else io.BytesIO(content) as f:
        while block := f.read(_COPY_BLOCK):
            git.update(block)
            sha.update(block)
    return git.hexdigest(), sha.hexdigest()


def _users_readme(target: PushTarget) -> bool:
    """True when the repo has a README.md that hfbatch did not write."""
    try:
        text = target.access.fs().cat_file(f"datasets/{target.repo_id}/README.md")
    except FileNotFoundError:
        return False
    return CARD_MARKER.encode() not in text


@contextlib.contextmanager
def _snapshot(output: Path, *, live: bool) -> Iterator[Path | None]:
    """One consistent file holding every result of `output` so far (None when there is none)."""
    journal = format_for(output).journal_path(output)
    if journal == output:  # JSONL: the output is its own journal
        if not output.exists():
            yield None
        elif not live and _whole_lines(output) == output.stat().st_size:
            yield output
        else:  # being written, or a killed run left a torn last line
            with _scratch(output) as folder:
                yield _copy_whole_lines(output, folder / output.name)
        return
    pending = _whole_lines(journal)
    if not pending and not live:
        yield output if output.exists() else None
        return
    with _scratch(output) as folder:
        copy = folder / output.name
        if output.exists():
            _link_or_copy(output, copy)
        if pending:
            from hfbatch.outputs.parquet_file import merge

            _copy_whole_lines(journal, folder / journal.name)
            merge(copy, folder / journal.name)
        yield copy if copy.exists() else None


@contextlib.contextmanager
def _scratch(output: Path) -> Iterator[Path]:
    # Beside the output: on the same disk (room for a copy, and hard links work), hidden from listings.
    with tempfile.TemporaryDirectory(prefix=".hfbatch-push-", dir=output.parent) as folder:
        yield Path(folder)


def _whole_lines(path: Path) -> int:
    """How many bytes of `path` end in its last newline (0 when it does not exist)."""
    try:
        with open(path, "rb") as f:
            end = f.seek(0, os.SEEK_END)
            while end > 0:
                start = max(0, end - _COPY_BLOCK)
                f.seek(start)
                block = f.read(end - start)
                cut = block.rfind(b"\n")
                if cut >= 0:
                    return start + cut + 1
                end = start
    except FileNotFoundError:
        pass
    return 0


def _copy_whole_lines(src: Path, dst: Path) -> Path:
    """Copy `src` up to its last newline (a writer may be appending a line)."""
    left = _whole_lines(src)
    with open(src, "rb") as f, open(dst, "wb") as out:
        while left > 0:
            block = f.read(min(left, _COPY_BLOCK))
            if not block:
                break
            out.write(block)
            left -= len(block)
    return dst


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


@contextlib.contextmanager
def _quiet_library() -> Iterator[None]:
    """huggingface_hub logs warnings ('no files have been modified'): a library of hfbatch's prints nothing.

    Its progress bars are the CLI's business (it sets HF_HUB_DISABLE_PROGRESS_BARS).
    """
    logger = logging.getLogger("huggingface_hub")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _failures() -> tuple[type[BaseException], ...]:
    return (*hub_errors(), FileNotFoundError)


@contextlib.contextmanager
def _pushing(output: Path, target: PushTarget, retry_hint: str) -> Iterator[None]:
    """Turn huggingface_hub's errors into a PushError that says the local output is intact and how to retry."""
    try:
        yield
    except HfbatchError:
        raise
    except _failures() as exc:
        problem = describe_hub_error(exc, target.access)
        hub = target.access.endpoint
        if problem.kind == "auth":
            why = f"the Hub at {hub} refused the token ({problem.detail}); {target.access.token_hint()}"
        elif problem.kind == "forbidden":
            why = f"the token may not write to {target.repo_id} ({problem.detail}); use a token with write access"
        elif problem.kind == "unavailable":
            why = f"the Hub at {hub} cannot be reached or is failing ({problem.detail})"
        else:
            why = problem.detail
        hint = retry_hint or f"rerun the same command, or `hfbatch push {output} {target.repo_id}`"
        raise PushError(
            f"pushing {output.name} to {target.repo_id} failed: {why}. The local output {output} is intact: {hint}"
        ) from None
