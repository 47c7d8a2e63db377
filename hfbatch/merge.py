"""`hfbatch merge --output OUT PART...`: join shard outputs into one, exactly once per id, with their stats.

Parts may be JSONL, Parquet or OpenAI batch output, mixed (`merge_parts.py` reads each by its
format). Records stream into a new output's journal (`OutputFiles`), so a Parquet OUT is written
chunk by chunk like a run's, and memory holds the set of ids (`IdSet`) and one chunk. An id in two
parts stops the merge (exit 2) naming both, unless `dedupe` keeps the first part's (parts in the
order given). A part whose run has not finished, or a missing shard of a sharded job, stops it
too, unless `partial`.

Beside OUT: `OUT.errors.jsonl` (the parts' failed rows, but those whose id has a result in
another part), `OUT.stats.json` (the parts' stats added up: `stats_sum.add_up`, with `runs` from
every part, each naming its shard, and `merged_from`), `OUT.timeline.jsonl` (every part's
timeline, each snapshot tagged with its shard), and, when every part was made with the same
settings from the same input, `OUT.manifest.json`: a run without `--shard` into OUT then resumes
it (filling in the rows a missing shard would have done).

Everything is written under temporary names and renamed into place at the end, so an
interrupted merge leaves OUT as it was; OUT must not exist unless an earlier merge made it.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hfbatch.errors import FailureKind, UsageError
from hfbatch.history import read_stats, runs_of
from hfbatch.idset import IdSet
from hfbatch.merge_parts import Part, inspect_part, part_errors, part_records
from hfbatch.outputs.atomic import write_json_atomic
from hfbatch.outputs.files import OutputFiles, open_output
from hfbatch.outputs.formats import FORMATS, suffix_format
from hfbatch.shards import parse_shard
from hfbatch.stats_sum import active_time, add_up, number
from hfbatch.version import version

__all__ = ["MergeReport", "merge_outputs"]

#: Names beside an output: a glob such as `part-*.jsonl` also matches these, and they are skipped.
_SIDE_SUFFIXES = (".errors.jsonl", ".timeline.jsonl", ".journal.jsonl", ".stats.json", ".manifest.json")
#: Settings that may differ between the parts of one job.
_PER_PART = ("shard", "output_format")


@dataclass(frozen=True)
class MergeReport:
    """What a merge wrote."""

    output: Path
    parts: tuple[Path, ...]
    records: int
    duplicates_dropped: int
    errors: int
    stats: dict[str, Any]
    notes: tuple[str, ...]


def _given_parts(paths: Sequence[Path]) -> tuple[list[Path], list[str]]:
    """The parts, without files that lie beside another given part (what a shell glob adds)."""
    names = {p.name for p in paths}
    kept, notes = [], []
    for p in dict.fromkeys(paths):
        if any(p.name == n + s for n in names for s in _SIDE_SUFFIXES):
            notes.append(f"{p.name} is a file beside another part, not a part: skipped")
        else:
            kept.append(p)
    return kept, notes


def _out_format(output: Path, parts: list[Part], name: str | None) -> str:
    if name is not None:
        if name not in FORMATS:
            raise UsageError(f"--output-format: unknown format {name!r} (choose from {', '.join(FORMATS)})")
        if not FORMATS[name].fits(output):
            raise UsageError(f"--output-format: the {name} format writes {FORMATS[name].writes()}, not {output.name}")
        return name
    by_suffix = suffix_format(output)
    if by_suffix is None:
        raise UsageError(f"{output}: the merged output must end in .jsonl or .parquet")
    if by_suffix == "jsonl" and all(p.format == "openai" for p in parts):
        return "openai"  # OpenAI batch output in, the same out
    return by_suffix


def _check_parts(parts: list[Part], *, partial: bool, dedupe: bool) -> list[str]:
    """UsageError for an unfinished part, a shard given twice or missing; return notes for the rest."""
    notes = []
    for p in parts:
        if p.unfinished is not None:
            if not partial:
                raise UsageError(f"{p.path}: not finished: {p.unfinished} (or merge with --partial)")
            notes.append(f"{p.path.name}: merged unfinished ({p.unfinished})")
    sharded = [(parse_shard(p.shard), p) for p in parts if p.shard is not None]
    seen: dict[str, Part] = {}
    for shard, p in sharded:
        other = seen.setdefault(str(shard), p)
        if other is not p and not dedupe:
            raise UsageError(f"shard {shard} is given twice: {other.path} and {p.path} (or merge with --dedupe)")
    counts = {shard.n for shard, _ in sharded if shard is not None}
    if len(counts) > 1:
        notes.append(f"the parts come from different numbers of shards ({', '.join(map(str, sorted(counts)))})")
    elif counts:
        n = counts.pop()
        missing = sorted(set(range(n)) - {s.k for s, _ in sharded if s is not None})
        if missing:
            names = ", ".join(f"{k}/{n}" for k in missing[:10]) + (", ..." if len(missing) > 10 else "")
            if not partial:
                raise UsageError(f"shard {names} of {n} is missing from the parts (or merge with --partial)")
            notes.append(f"missing shard {names}: their rows are not in the merged output")
    return notes


def _common(parts: list[Part]) -> tuple[dict[str, Any], Any] | None:
    """The settings and input every part shares (shard and format aside), or None when they differ."""
    if any(p.settings is None for p in parts):
        return None
    first = parts[0]
    assert first.settings is not None
    settings = {k: v for k, v in first.settings.items() if k not in _PER_PART}
    for p in parts[1:]:
        assert p.settings is not None
        if {k: v for k, v in p.settings.items() if k not in _PER_PART} != settings or p.input != first.input:
            return None
    return settings, first.input


def _holder_of(parts: list[Part], before: int, key: Any) -> Path:
    """The first of `parts[:before]` holding a result with id `key` (read again: this is the error path)."""
    for p in parts[:before]:
        for record in part_records(p, to_openai=True, partial=True):
            if record["id"] == key:
                return p.path
    return parts[before].path


def _temp_name(output: Path) -> Path:
    # A leading dot: never read as a part of a Parquet input folder, hidden from `ls`.
    return output.with_name(f".{output.name}.merging{output.suffix}")


def _check_output(output: Path, parts: list[Part]) -> None:
    files = OutputFiles(output, format="jsonl")
    mine = {os.path.realpath(p) for p in (output, files.paths.stats, files.paths.errors, files.paths.timeline)}
    for p in parts:
        if os.path.realpath(p.path) in mine:
            raise UsageError(f"{p.path}: a part cannot be the merged output (or a file beside it)")
    if output.exists():
        stats = read_stats(files.paths.stats)
        if stats is None or "merged_from" not in stats:
            raise UsageError(f"{output} exists and was not made by hfbatch merge; move it away or name another output")


def merge_outputs(
    paths: Sequence[Path],
    output: Path,
    *,
    dedupe: bool = False,
    partial: bool = False,
    output_format: str | None = None,
) -> MergeReport:
    """Join the outputs at `paths` into `output`; UsageError (exit 2) for duplicates, unfinished parts, bad parts."""
    given, notes = _given_parts(paths)
    if not given:
        raise UsageError("merge: no part to merge")
    parts = [inspect_part(p) for p in given]
    notes += _check_parts(parts, partial=partial, dedupe=dedupe)
    fmt = _out_format(output, parts, output_format)
    _check_output(output, parts)
    tmp = _temp_name(output)
    open_output(tmp)  # the folder exists and is writable
    files = OutputFiles(tmp, format=fmt)
    final = OutputFiles(output, format=fmt).paths
    common = _common(parts)
    if common is not None:
        # What a run into OUT would record: no shard, and the format when the extension does not imply it.
        common[0]["output_format"] = None if fmt == suffix_format(output) else fmt
    with files:
        _clear(files)
        try:
            files.start(*(common or ({}, {})))
            ids, written, dropped = IdSet(), 0, 0
            for i, part in enumerate(parts):
                for record in part_records(part, to_openai=fmt == "openai", partial=partial):
                    if not ids.add(record["id"]):
                        if not dedupe:
                            raise UsageError(
                                f"id {record['id']!r} is in both {_holder_of(parts, i, record['id'])} and "
                                f"{part.path}; merge with --dedupe to keep the first"
                            )
                        dropped += 1
                        continue
                    files.add_result(record)
                    written += 1
            failed, bad = _errors(files, parts, ids)
            files.close()
            _timeline(files.paths.timeline, parts)
            if common is None:
                files.paths.manifest.unlink(missing_ok=True)
                notes.append("the parts differ in settings or input: no manifest is written (a run cannot resume OUT)")
            stats = _stats(parts, output, written=written, failed=failed, bad=bad, partial=partial)
            write_json_atomic(files.paths.stats, stats)
            _move_into_place(files, final)
        finally:
            files.abandon()  # already closed when all went well; an error leaves nothing open
            _clear(files)
    if dropped:
        notes.append(f"{dropped} duplicate results dropped (--dedupe kept the first part's)")
    return MergeReport(output, tuple(given), written, dropped, failed + bad, stats, tuple(notes))


def _errors(files: OutputFiles, parts: list[Part], results: IdSet) -> tuple[int, int]:
    """Write the parts' failed rows (not those with a result elsewhere); return (failed, bad input) counts."""
    seen = IdSet()
    failed = bad = 0
    for part in parts:
        for record in part_errors(part):
            key = record.get("id")
            if key is not None and (key in results or not seen.add(key)):
                continue
            files.add_error(record)
            if record.get("kind") == FailureKind.INPUT.value:
                bad += 1
            else:
                failed += 1
    return failed, bad


def _timeline(path: Path, parts: list[Part]) -> None:
    """Every part's timeline in one file, each snapshot tagged with its part's shard (or name)."""
    with open(path, "w", encoding="utf-8") as out:
        for part in parts:
            with contextlib.suppress(FileNotFoundError), open(part.paths.timeline, encoding="utf-8") as f:
                for line in f:
                    with contextlib.suppress(ValueError):
                        snap = json.loads(line)
                        if isinstance(snap, dict):
                            out.write(json.dumps({**snap, "shard": snap.get("shard", part.label)}) + "\n")


def _stats(parts: list[Part], output: Path, *, written: int, failed: int, bad: int, partial: bool) -> dict[str, Any]:
    """The parts' stats added up, with every part's runs (each naming its shard) and where they came from."""
    given = [p.stats for p in parts if p.stats is not None]
    runs = []
    for p in parts:
        for r in runs_of(p.stats) if p.stats is not None else []:
            runs.append({**r, "shard": r.get("shard") or p.label})
    runs.sort(key=lambda r: number(r.get("started_at")))
    rows = [s.get("rows") or {} for s in given]
    active = active_time((r.get("started_at"), r.get("ended_at")) for r in runs)
    first = given[0] if given else {}
    finished = not partial or all(p.unfinished is None for p in parts)
    return {
        "model": first.get("model"),
        "provider_order": first.get("provider_order"),
        "input": first.get("input"),
        "output": str(output),
        "exit_code": (1 if failed + bad or not finished else 0),
        "stopped_because": None if finished else "merged with --partial: some parts had not finished",
        "hfbatch_version": version(),
        "settings": {**first["settings"], "shard": None} if isinstance(first.get("settings"), dict) else None,
        **add_up(given),
        "rows": {
            "seen": max((int(number(r.get("seen"))) for r in rows), default=0),
            "done": written,
            "failed": failed,
            "bad_input": bad,
            "skipped_already_done": sum(int(number(r.get("skipped_already_done"))) for r in rows),
            "input_estimate": max((int(number(r.get("input_estimate"))) for r in rows), default=None),
        },
        "wall_time_s": round(active, 3),
        "rows_per_second": round(sum(number(r.get("rows_done")) for r in runs) / active, 2) if active else None,
        "runs": runs,
        "merged_from": [
            {"path": str(p.path), "shard": p.shard, "format": p.format, "finished": p.unfinished is None} for p in parts
        ],
    }


def _move_into_place(files: OutputFiles, final: Any) -> None:
    """Rename the merged files over OUT's; OUT's old side files that this merge has none of are removed."""
    made, dest = files.paths, final
    for src, dst in (
        (made.errors, dest.errors),
        (made.timeline, dest.timeline),
        (made.manifest, dest.manifest),
        (made.output, dest.output),
        (made.stats, dest.stats),  # last: a stats file with merged_from marks OUT as a finished merge
    ):
        if src.exists():
            os.replace(src, dst)
        else:
            dst.unlink(missing_ok=True)


def _clear(files: OutputFiles) -> None:
    """Remove what an interrupted merge left under the temporary names."""
    p = files.paths
    for path in (p.output, p.journal, p.errors, p.stats, p.manifest, p.timeline):
        path.unlink(missing_ok=True)
