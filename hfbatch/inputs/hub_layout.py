"""Which files of a Hub dataset repo make the split (and subset) a run reads: pure functions over paths.

The rules are the Hub's, as its dataset viewer applies them:

1. A README whose YAML header has `configs:` says it: each config (subset) maps splits to path
   patterns (`data_files`). The subset is `--subset`, else the one marked `default: true`, else
   the one named `default`, else the only one; the split is `--split`, else the only one.
2. Otherwise files are grouped by the split their names carry: `data/<split>-00000-of-00003.parquet`
   (what `push_to_hub` writes, any split name), or a `train`/`validation`/`test` keyword (or an
   alias: `dev`, `eval`, ...) as a folder or as a word of the file name. Files that name no split
   are ignored when some do; when none does, every file is `train`. `--subset NAME` keeps the files
   under the folder NAME.

A path or glob in the `hf://` URL skips both: those files are read (still filtered by `--split`).
All the files chosen must be one format, Parquet or JSONL.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

from hfbatch.errors import InputError

__all__ = ["DATA_FORMATS", "data_format", "glob_regex", "readme_configs", "select_files", "split_of"]

#: The data files a run can read, by name ending.
DATA_FORMATS = {".parquet": "parquet", ".jsonl": "jsonl", ".jsonl.gz": "jsonl"}
#: Split names and their aliases, as the Hub's viewer recognises them in paths.
SPLIT_KEYWORDS = {
    "train": ("train", "training"),
    "validation": ("validation", "valid", "val", "dev"),
    "test": ("test", "testing", "eval", "evaluation"),
}
_SEP = r"[-._ 0-9]"
_SHARDED = re.compile(r"(?:^|/)data/([A-Za-z0-9_]+(?:-[A-Za-z0-9_]+)*?)-\d{5}-of-\d{5}[^/]*$")
_KEYWORD = {
    split: re.compile(
        rf"(?:^|/)(?:{'|'.join(words)})(?:{_SEP}[^/]*)?/"  # a folder: train/, train-2024/
        rf"|(?:^|/|{_SEP})(?:{'|'.join(words)})(?:{_SEP}[^/]*)?$",  # a file name word: train.parquet, x-test-0.jsonl
        re.IGNORECASE,
    )
    for split, words in SPLIT_KEYWORDS.items()
}
_SHOWN = 10


def data_format(path: str) -> str | None:
    """'parquet' or 'jsonl' for a data file hfbatch reads, else None."""
    name = path.lower()
    return next((fmt for suffix, fmt in DATA_FORMATS.items() if name.endswith(suffix)), None)


def split_of(path: str) -> str | None:
    """The split a file's path names, by the Hub's conventions, or None."""
    m = _SHARDED.search(path)
    if m is not None:
        return m.group(1)
    for split, pattern in _KEYWORD.items():
        if pattern.search(path):
            return split
    return None


def glob_regex(pattern: str) -> re.Pattern[str]:
    """A regex for a repo-relative glob as the Hub reads data_files (`*`, `?`, `[...]`, `**`)."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
            continue
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[" and "]" in pattern[i + 1 :]:
            end = pattern.index("]", i + 1)
            body = pattern[i + 1 : end]
            out.append("[" + ("^" + body[1:] if body.startswith("!") else body) + "]")
            i = end
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out))


def readme_configs(readme: str | None) -> list[dict[str, Any]]:
    """The `configs:` entries of a dataset card's YAML header ([] when it has none or cannot be read)."""
    if not readme or not readme.startswith("---"):
        return []
    end = readme.find("\n---", 3)
    if end < 0:
        return []
    import yaml

    try:
        meta = yaml.safe_load(readme[3:end])
    except yaml.YAMLError:
        return []  # the viewer would not read it either: fall back to the file names
    configs = meta.get("configs") if isinstance(meta, dict) else None
    return [c for c in configs if isinstance(c, dict)] if isinstance(configs, list) else []


def _config_splits(config: dict[str, Any]) -> dict[str, list[str]]:
    """A config's splits and their patterns; a bare pattern or list of them is the split `train`."""
    data_files = config.get("data_files")
    if isinstance(data_files, str):
        return {"train": [data_files]}
    splits: dict[str, list[str]] = {}
    for entry in data_files if isinstance(data_files, list) else []:
        if isinstance(entry, str):
            splits.setdefault("train", []).append(entry)
        elif isinstance(entry, dict) and isinstance(entry.get("split"), str):
            paths = entry.get("path")
            splits.setdefault(entry["split"], []).extend([paths] if isinstance(paths, str) else list(paths or ()))
    return splits


def _choose(kind: str, flag: str, names: Sequence[str], given: str | None, where: str) -> str:
    if given is not None:
        if given not in names:
            raise InputError(f"{where}: has no {kind} {given!r} (it has {_list(names)}); fix {flag}")
        return given
    if len(names) == 1:
        return names[0]
    raise InputError(f"{where}: has the {kind}s {_list(names)}; choose one with {flag}")


def _list(names: Iterable[str]) -> str:
    names = list(names)
    return ", ".join(names[:_SHOWN]) + (", ..." if len(names) > _SHOWN else "") if names else "none"


def _by_config(
    paths: Sequence[str], configs: list[dict[str, Any]], split: str | None, subset: str | None, where: str
) -> list[str]:
    """The files of the chosen split of the chosen config."""
    names = [str(c.get("config_name", "default")) for c in configs]
    if subset is None:
        marked = [n for n, c in zip(names, configs, strict=True) if c.get("default") is True]
        subset = marked[0] if marked else "default" if "default" in names else None
    name = _choose("subset", "--subset", names, subset, where)
    splits = _config_splits(configs[names.index(name)])
    chosen = _choose("split", "--split", list(splits), split, where)
    patterns = [glob_regex(p.lstrip("/")) for p in splits[chosen]]
    return [p for p in paths if any(r.fullmatch(p) for r in patterns)]


def select_files(
    paths: Sequence[str],
    *,
    readme: str | None,
    split: str | None,
    subset: str | None,
    explicit: bool,
    where: str,
) -> tuple[str, list[str]]:
    """The format and the repo-relative paths to read, in path order; InputError saying how to choose."""
    configs = [] if explicit else readme_configs(readme)
    if configs:
        chosen = _by_config(paths, configs, split, subset, where)
    else:
        if subset is not None:
            if explicit:
                raise InputError(f"{where}: --subset chooses files in a whole repo, not in a path; drop one")
            inside = [p for p in paths if p.startswith(subset.rstrip("/") + "/")]
            if not inside:
                folders = sorted({p.split("/")[0] for p in paths if "/" in p})
                raise InputError(f"{where}: has no subset folder {subset!r} (folders: {_list(folders)}); fix --subset")
            paths = inside
        data = [p for p in paths if data_format(p) is not None]
        groups: dict[str, list[str]] = {}
        for p in data:
            name = split_of(p)
            if name is not None:
                groups.setdefault(name, []).append(p)
        if not groups and data:
            groups = {"train": data}
        if explicit and split is None:
            chosen = data  # the user named these files
        elif not groups:
            chosen = []
        else:
            chosen = groups[_choose("split", "--split", sorted(groups), split, where)]
    chosen = sorted(p for p in chosen if data_format(p) is not None)
    if not chosen:
        raise InputError(
            f"{where}: holds no .parquet, .jsonl or .jsonl.gz files to read; name them with a path or glob, "
            "like hf://datasets/ORG/NAME/data/*.parquet"
        )
    formats = {data_format(p) for p in chosen}
    if len(formats) > 1:
        raise InputError(
            f"{where}: the files chosen mix Parquet and JSONL ({_list(chosen)}); "
            "choose one kind with a glob, like hf://datasets/ORG/NAME/**/*.parquet"
        )
    return formats.pop() or "", chosen
