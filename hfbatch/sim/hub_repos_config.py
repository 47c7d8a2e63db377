"""What the simulated Hub's dataset repos hold at start, and the faults its repo endpoints inject.

Built in code (`SimHubRepos(datasets=(SimDataset(...),))`) or from the `hub_repos` table of a sim
config (`hub_repos_from_dict`)::

    [sim.hub_repos]
    faults = [{ kind = "500", on = ["commit"], first = 1 }]

    [[sim.hub_repos.datasets]]
    repo = "org/prompts"
    private = false
    files = { "data/train.jsonl" = "prompts.jsonl", "README.md" = { text = "# Prompts" } }

A file given as a string is a local path (relative to the current directory), read when the
server starts; `{ text = "..." }` is the file's content.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hfbatch.errors import JobSpecError

__all__ = [
    "HUB_ENDPOINTS",
    "HUB_FAULT_KINDS",
    "HubFault",
    "SimDataset",
    "SimHubRepos",
    "check_repo_id",
    "hub_repos_from_dict",
]

HUB_FAULT_KINDS = ("401", "403", "500", "503")
# The names faults and the request log use for the emulated endpoints.
HUB_ENDPOINTS = (
    "whoami",
    "create",
    "info",
    "tree",
    "paths_info",
    "commits",
    "resolve",
    "preupload",
    "commit",
    "validate_yaml",
)
# The Hub's rule for a namespace or a repo name.
_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?")


def check_repo_id(repo_id: str) -> str | None:
    """What is wrong with `repo_id` as a Hub repo id ('namespace/name'), or None."""
    parts = repo_id.split("/")
    if len(parts) != 2 or not all(_NAME.fullmatch(p) for p in parts):
        return f"{repo_id!r} is not a repo id like 'org/name'"
    if "--" in repo_id or ".." in repo_id:
        return f"{repo_id!r} must not contain '--' or '..'"
    return None


@dataclass(frozen=True, slots=True)
class SimDataset:
    """A dataset repo present when the server starts: its files (content or a local path) on `main`."""

    repo: str
    files: Mapping[str, bytes | Path] = field(default_factory=dict)
    private: bool = False
    gated: bool = False

    def __post_init__(self) -> None:
        problem = check_repo_id(self.repo)
        if problem is not None:
            raise ValueError(problem)


@dataclass(frozen=True, slots=True)
class HubFault:
    """A failure the repo endpoints named in `on` (all when empty) answer instead of serving.

    Requests are counted per fault among the endpoints it covers: the n-th one fails when
    `n > after` and (`first` is None or `n <= first`), as `Fault` counts chat requests.
    """

    kind: str
    on: tuple[str, ...] = ()
    first: int | None = None
    after: int = 0

    def __post_init__(self) -> None:
        if self.kind not in HUB_FAULT_KINDS:
            raise ValueError(f"unknown hub fault {self.kind!r} (expected one of {', '.join(HUB_FAULT_KINDS)})")
        unknown = [e for e in self.on if e not in HUB_ENDPOINTS]
        if unknown:
            raise ValueError(f"unknown hub endpoint {unknown[0]!r} (expected one of {', '.join(HUB_ENDPOINTS)})")

    def covers(self, endpoint: str) -> bool:
        """Whether requests to `endpoint` count towards this fault."""
        return not self.on or endpoint in self.on

    def applies_to(self, n: int) -> bool:
        """Whether the `n`-th covered request (1-based) fails."""
        return n > self.after and (self.first is None or n <= self.first)


@dataclass(frozen=True, slots=True)
class SimHubRepos:
    """The simulated Hub's dataset repos at start, and the faults of its repo endpoints."""

    datasets: tuple[SimDataset, ...] = ()
    faults: tuple[HubFault, ...] = ()


# --- TOML -------------------------------------------------------------------------------

_TABLE_KEYS = ("datasets", "faults")
_DATASET_KEYS = ("repo", "files", "private", "gated")
_FAULT_KEYS = ("kind", "on", "first", "after")


class _Check:
    """Type checks on a TOML-shaped value, naming the source and dotted key on error."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, key: str, problem: str) -> JobSpecError:
        return JobSpecError(f"{self.source}: {key}: {problem}")

    def table(self, value: object, key: str, allowed: tuple[str, ...] | None) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.fail(key, "expected a table")
        unknown = [k for k in value if allowed is not None and k not in allowed]
        if unknown and allowed is not None:
            raise self.fail(f"{key}.{unknown[0]}", f"unknown key (expected one of {', '.join(allowed)})")
        return value

    def array(self, value: object, key: str) -> list[Any]:
        if not isinstance(value, list | tuple):
            raise self.fail(key, "expected an array")
        return list(value)

    def string(self, value: object, key: str) -> str:
        if not isinstance(value, str) or not value:
            raise self.fail(key, "expected a non-empty string")
        return value

    def boolean(self, value: object, key: str) -> bool:
        if not isinstance(value, bool):
            raise self.fail(key, "expected true or false")
        return value

    def count(self, value: object, key: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise self.fail(key, "expected a whole number >= 0")
        return value


def _file(c: _Check, value: object, key: str) -> bytes | Path:
    if isinstance(value, str):
        return Path(c.string(value, key))
    if not isinstance(value, Mapping):
        raise c.fail(key, "expected a local path or a table { text = ... }")
    text = c.table(value, key, ("text",)).get("text")
    if not isinstance(text, str):
        raise c.fail(f"{key}.text", "expected a string")
    return text.encode("utf-8")


def _dataset(c: _Check, value: object, key: str) -> SimDataset:
    data = c.table(value, key, _DATASET_KEYS)
    repo = c.string(data.get("repo"), f"{key}.repo")
    problem = check_repo_id(repo)
    if problem is not None:
        raise c.fail(f"{key}.repo", problem)
    files = c.table(data.get("files", {}), f"{key}.files", None)
    return SimDataset(
        repo=repo,
        files={str(path): _file(c, f, f"{key}.files.{path}") for path, f in files.items()},
        private=c.boolean(data.get("private", False), f"{key}.private"),
        gated=c.boolean(data.get("gated", False), f"{key}.gated"),
    )


def _fault(c: _Check, value: object, key: str) -> HubFault:
    data = c.table(value, key, _FAULT_KEYS)
    raw = data.get("kind")
    # TOML users write `kind = 500` as often as `kind = "500"`.
    kind = str(raw) if isinstance(raw, int) and not isinstance(raw, bool) else raw
    if kind not in HUB_FAULT_KINDS:
        raise c.fail(f"{key}.kind", f"unknown hub fault {kind!r} (expected one of {', '.join(HUB_FAULT_KINDS)})")
    on = tuple(c.string(e, f"{key}.on[{i}]") for i, e in enumerate(c.array(data.get("on", []), f"{key}.on")))
    for i, endpoint in enumerate(on):
        if endpoint not in HUB_ENDPOINTS:
            expected = ", ".join(HUB_ENDPOINTS)
            raise c.fail(f"{key}.on[{i}]", f"unknown endpoint {endpoint!r} (expected one of {expected})")
    first = data.get("first")
    return HubFault(
        kind=str(kind),
        on=on,
        first=None if first is None else c.count(first, f"{key}.first"),
        after=c.count(data.get("after", 0), f"{key}.after"),
    )


def hub_repos_from_dict(value: object, source: str, key: str = "hub_repos") -> SimHubRepos:
    """Build a SimHubRepos from a TOML-shaped table; errors name `source` and the dotted `key`."""
    c = _Check(source)
    data = c.table(value, key, _TABLE_KEYS)
    datasets = tuple(
        _dataset(c, d, f"{key}.datasets[{i}]")
        for i, d in enumerate(c.array(data.get("datasets", []), f"{key}.datasets"))
    )
    seen: set[str] = set()
    for i, d in enumerate(datasets):
        if d.repo in seen:
            raise c.fail(f"{key}.datasets[{i}].repo", f"repo {d.repo!r} is listed twice")
        seen.add(d.repo)
    faults = tuple(
        _fault(c, f, f"{key}.faults[{i}]") for i, f in enumerate(c.array(data.get("faults", []), f"{key}.faults"))
    )
    return SimHubRepos(datasets=datasets, faults=faults)
