"""The Hub settings' own checks: a dataset repo id, a path inside a repo, and the settings that go together.

`jobspec` runs `check_hub_settings` on every merged spec; `hfbatch push` checks its arguments with
`check_repo_id` and `check_hub_path`. No Hub is asked anything here.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from hfbatch.errors import JobSpecError

if TYPE_CHECKING:
    from hfbatch.jobspec import JobSpec

__all__ = ["check_hub_path", "check_hub_settings", "check_repo_id"]

# A Hub repo id: namespace/name, each of letters, digits, '-', '_', '.', with no '--' or '..'.
_REPO_ID = re.compile(
    r"(?!.*(?:--|\.\.))[A-Za-z0-9](?:[\w.-]{0,94}[A-Za-z0-9])?/[A-Za-z0-9](?:[\w.-]{0,94}[A-Za-z0-9])?"
)


def check_repo_id(value: str, where: str) -> str:
    """`value` if it is a dataset repo id like 'org/name'; JobSpecError naming `where` if not."""
    if not _REPO_ID.fullmatch(value):
        raise JobSpecError(f"{where}: {value!r} is not a dataset repo id like 'org/name'")
    return value


def check_hub_path(value: str, where: str) -> str:
    """`value` if it is a path for a data file inside a repo; JobSpecError naming `where` if not."""
    parts = value.split("/")
    if value.startswith("/") or any(p in ("", ".", "..") for p in parts) or parts[0] == ".git":
        raise JobSpecError(f"{where}: {value!r} is not a relative path inside a repo")
    if value in ("README.md", ".gitattributes"):
        raise JobSpecError(f"{where}: {value!r} is the repo's own file; name another")
    return value


def check_hub_settings(spec: JobSpec) -> None:
    """The Hub settings: a repo id to push to, settings that go with it, a split only for an hf:// input."""
    source = spec.source
    if spec.push_to_hub is not None:
        check_repo_id(spec.push_to_hub, f"{source}: key 'push_to_hub'")
    lonely = [k for k in ("hub_path", "push_every") if getattr(spec, k) is not None]
    lonely += ["private"] if spec.private else []
    if lonely and spec.push_to_hub is None:
        raise JobSpecError(f"{source}: key '{lonely[0]}' goes with 'push_to_hub' (flag --push-to-hub ORG/NAME)")
    if spec.hub_path is not None:
        check_hub_path(spec.hub_path, f"{source}: key 'hub_path'")
    if not str(spec.input).startswith("hf:/"):
        for key in ("split", "subset"):
            if getattr(spec, key) is not None:
                raise JobSpecError(f"{source}: key '{key}' goes with an hf://datasets/... input")
