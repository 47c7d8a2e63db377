"""The parts `hfbatch merge` joins: what each one is (format, shard, whether its run finished), and its records.

Each part is read by its own format, streamed: a JSONL output line by line, a Parquet output a
record batch at a time (`parquet_file.read_records`, JSON-text columns decoded), OpenAI batch
output lines turned back into records. With `--partial`, a Parquet part's journal (results a
killed run had not merged yet) is read too, and a torn last line is skipped.

A part's run is finished when its stats say so (exit code 0, or 1 with no early stop: every row
is in the output or its errors file), no run holds its lock, and no run started after those
stats were written (its manifest would be newer).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hfbatch.errors import UsageError
from hfbatch.history import read_stats
from hfbatch.idset import IdSet
from hfbatch.outputs.files import OutputFiles, OutputPaths
from hfbatch.outputs.formats import suffix_format
from hfbatch.stats_sum import number
from hfbatch.status import output_status

__all__ = ["Part", "inspect_part", "part_errors", "part_records"]

#: The fields every hfbatch result record has, null or not; other null fields of a Parquet row are dropped.
BASE_FIELDS = (
    "id",
    "output",
    "finish_reason",
    "prompt_tokens",
    "completion_tokens",
    "provider",
    "model",
    "attempts",
    "latency_s",
    "cost_usd",
)
_OPENAI_LEAD = b'{"id": "batch_req_'
# A manifest written this much after the stats' last run ended means a later run started and did not end.
_SLACK_S = 1.0


@dataclass(frozen=True)
class Part:
    """One output to merge, and what the files beside it say."""

    path: Path
    format: str
    paths: OutputPaths
    settings: dict[str, Any] | None  # from its manifest (None: no manifest)
    input: Any  # the input fingerprint in its manifest
    stats: dict[str, Any] | None
    shard: str | None
    unfinished: str | None  # why its run is not finished, or None

    @property
    def label(self) -> str:
        """How the timeline and the run history name this part: its shard, else its file name."""
        return self.shard or self.path.name


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _sniff_format(path: Path) -> str:
    """A part's format from its extension, and for .jsonl from its first line (OpenAI batch output or not)."""
    by_suffix = suffix_format(path)
    if by_suffix is None:
        raise UsageError(f"{path}: not an hfbatch output (.jsonl or .parquet)")
    if by_suffix == "jsonl":
        with open(path, "rb") as f:
            if f.readline().startswith(_OPENAI_LEAD):
                return "openai"
    return by_suffix


def _unfinished(part_path: Path, manifest: dict[str, Any] | None, stats: dict[str, Any] | None) -> str | None:
    """Why the run into this part has not finished, or None."""
    status = output_status(part_path)
    if status.running:
        return f"a run is writing it (pid {status.holder_pid})"
    if stats is None:
        return "it has no stats file: its run was killed or is going; rerun it to finish"
    code = stats.get("exit_code")
    if code not in (0, 1) or (code == 1 and stats.get("stopped_because")):
        why = stats.get("stopped_because") or f"exit code {code}"
        return f"its last run stopped before the end ({why}); rerun it to finish"
    runs = stats.get("runs")
    ended = number(runs[-1].get("ended_at")) if isinstance(runs, list) and runs and isinstance(runs[-1], dict) else 0
    started = number((manifest or {}).get("written_at"))
    if ended and started > ended + _SLACK_S:
        return "a run started after its stats were written and did not finish; rerun it to finish"
    return None


def inspect_part(path: Path) -> Part:
    """Read what is beside a part; UsageError when it is not a readable hfbatch output."""
    if not path.is_file():
        raise UsageError(f"{path}: no such file (merge takes the output files of the shards)")
    manifest = _read_json(OutputFiles(path, format="jsonl").paths.manifest)
    settings = manifest.get("settings") if manifest is not None else None
    settings = settings if isinstance(settings, dict) else None
    fmt = (settings or {}).get("output_format") or _sniff_format(path)
    try:
        paths = OutputFiles(path, format=fmt).paths
    except KeyError:
        raise UsageError(f"{path}: unknown output format {fmt!r} in its manifest") from None
    stats = read_stats(paths.stats)
    shard = (settings or {}).get("shard")
    return Part(
        path=path,
        format=fmt,
        paths=paths,
        settings=settings,
        input=(manifest or {}).get("input"),
        stats=stats,
        shard=shard if isinstance(shard, str) else None,
        unfinished=_unfinished(path, manifest, stats),
    )


def _lines(path: Path, partial: bool) -> Iterator[tuple[int, dict[str, Any]]]:
    """Each JSON object line of a JSONL file with its number; a torn last line is skipped with `partial`."""
    try:
        f = open(path, encoding="utf-8", errors="surrogatepass")
    except FileNotFoundError:
        return
    with f:
        for number_, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError:
                if partial and not line.endswith("\n"):
                    return  # the torn last write of a killed run
                raise UsageError(f"{path}: line {number_} is not JSON; fix or remove it and merge again") from None
            if not isinstance(obj, dict):
                raise UsageError(f"{path}: line {number_} is not a JSON object; fix or remove it and merge again")
            yield number_, obj


def _from_openai(line: dict[str, Any], to_openai: bool) -> dict[str, Any]:
    """An OpenAI batch output line as a record: as is for OpenAI output, else with hfbatch's fields."""
    given = line.get("response")
    response: dict[str, Any] = given if isinstance(given, dict) else {}
    given = response.get("body")
    body: dict[str, Any] = given if isinstance(given, dict) else {}
    record: dict[str, Any] = {"id": line.get("custom_id")}
    if not to_openai:
        choices = [c for c in body.get("choices") or [] if isinstance(c, dict)]
        texts = [(c.get("message") or {}).get("content") for c in choices]
        reasons = [c.get("finish_reason") for c in choices]
        if len(choices) > 1:
            record.update(outputs=texts, finish_reasons=reasons)
        else:
            record.update(output=texts[0] if texts else None, finish_reason=reasons[0] if reasons else None)
        given = body.get("usage")
        usage: dict[str, Any] = given if isinstance(given, dict) else {}
        record.update(
            prompt_tokens=usage.get("prompt_tokens"),
            completion_tokens=usage.get("completion_tokens"),
            provider=None,
            model=body.get("model"),
        )
    record.update(response=body, request_id=response.get("request_id"))
    return record


def _tidy(record: dict[str, Any]) -> dict[str, Any]:
    """A Parquet row as a record: `id` first, and the nulls of columns this row never had dropped."""
    out = {"id": record["id"], **record}
    if "outputs" in out and out["outputs"] is not None:
        out.pop("output", None)
        out.pop("finish_reason", None)
    return {k: v for k, v in out.items() if v is not None or k in BASE_FIELDS}


def part_records(part: Part, *, to_openai: bool, partial: bool) -> Iterator[dict[str, Any]]:
    """Every result record of a part, streamed."""
    if part.format == "parquet":
        from hfbatch.outputs.parquet_file import read_records

        found = IdSet()
        try:
            for record in read_records(part.path):
                found.add(record["id"])
                yield _tidy(record)
        except UsageError:
            raise
        except Exception as exc:  # pyarrow raises several unrelated types for a bad file
            raise UsageError(f"{part.path}: not a readable Parquet output ({exc})") from None
        if partial:
            for _, record in _lines(part.paths.journal, partial):
                if "id" in record and found.add(record["id"]):
                    yield record  # a killed run's results not yet in the Parquet file
        return
    for number_, line in _lines(part.path, partial):
        if part.format == "openai":
            if "custom_id" not in line:
                raise UsageError(f"{part.path}: line {number_} is not an OpenAI batch output line")
            yield _from_openai(line, to_openai)
        else:
            if "id" not in line:
                raise UsageError(f"{part.path}: line {number_} is not a result record (no id)")
            yield line


def part_errors(part: Part) -> Iterator[dict[str, Any]]:
    """A part's failed rows as error records (an OpenAI error line becomes one)."""
    for _, line in _lines(part.paths.errors, True):
        if "custom_id" in line and isinstance(line.get("error"), dict):
            error = line["error"]
            yield {
                "id": line.get("custom_id"),
                "index": None,
                "where": None,
                "error": None,
                "kind": error.get("code"),
                "status": None,
                "provider": None,
                "message": error.get("message"),
                "attempts": None,
            }
        else:
            yield line
