"""The dataset card (`README.md`) pushed with an output: the run's numbers, settings and command, and Hub metadata.

The numbers come from the output file itself (`summarize_output`), so they hold for an output made
by several runs, resumed or merged from shards: rows, each provider's and model's share, tokens, and
cost when every row's is known. The settings and the command come from the stats file of the run
(its `settings`); only settings that decide the results are listed, paths only by file name, and
no secret is ever in them (tokens are refused in settings). The YAML header is what the Hub's
dataset viewer reads: the data file as the `train` split of the `default` config, the task and
size categories. `render_card` is a pure function of its inputs: pushing the same output twice
makes the same card, so the Hub sees nothing changed.
"""

from __future__ import annotations

import json
import shlex
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["CARD_MARKER", "CardInfo", "OutputSummary", "render_card", "reproduce_command", "size_category"]

#: Ends every card hfbatch writes: a README without it is the user's, and is left alone.
CARD_MARKER = "<!-- hfbatch dataset card: rewritten by each push -->"
_SUMMARY_COLUMNS = ("provider", "model", "prompt_tokens", "completion_tokens", "cost_usd", "finish_reason")
# The Hub's size categories: (upper bound, name), and the name past the last bound.
_SIZES = (
    (1_000, "n<1K"),
    (10_000, "1K<n<10K"),
    (100_000, "10K<n<100K"),
    (1_000_000, "100K<n<1M"),
    (10_000_000, "1M<n<10M"),
    (100_000_000, "10M<n<100M"),
    (1_000_000_000, "100M<n<1B"),
)
_LARGEST = "n>1B"
# Settings never shown in a card's command: they say where this machine keeps things, not what was made.
_LOCAL_ONLY = frozenset({"errors", "stats", "allow_local_images", "dry_run", "grace", "push_every"})


@dataclass(slots=True)
class OutputSummary:
    """What an output holds, counted from its records."""

    rows: int = 0
    providers: Counter[str] = field(default_factory=Counter)
    models: Counter[str] = field(default_factory=Counter)
    finish_reasons: Counter[str] = field(default_factory=Counter)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    #: Rows whose cost is unknown (no price, or no usage in the reply): the total is then a lower bound.
    rows_without_cost: int = 0
    columns: list[str] = field(default_factory=list)

    def add(self, record: dict[str, Any]) -> None:
        """Count one record."""
        self.rows += 1
        for name, counter in (("provider", self.providers), ("model", self.models)):
            value = record.get(name)
            if value is not None:
                counter[str(value)] += 1
        reason = record.get("finish_reason")
        if reason is not None:
            self.finish_reasons[str(reason)] += 1
        self.prompt_tokens += _int(record.get("prompt_tokens"))
        self.completion_tokens += _int(record.get("completion_tokens"))
        cost = record.get("cost_usd")
        if isinstance(cost, int | float) and not isinstance(cost, bool):
            self.cost_usd += cost
        else:
            self.rows_without_cost += 1

    @classmethod
    def of_file(cls, path: Path) -> OutputSummary:
        """Count a Parquet or JSONL output, a batch or a line at a time."""
        summary = cls()
        for record in _records(path, summary):
            summary.add(record)
        return summary


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _records(path: Path, summary: OutputSummary) -> Iterator[dict[str, Any]]:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        pf = pq.ParquetFile(str(path))
        try:
            summary.columns = list(pf.schema_arrow.names)
            wanted = [c for c in _SUMMARY_COLUMNS if c in summary.columns]
            if not wanted:
                summary.rows += pf.metadata.num_rows
                return
            for batch in pf.iter_batches(columns=wanted):
                yield from batch.to_pylist()
        finally:
            pf.close()
        return
    seen: dict[str, None] = {}
    with open(path, "rb") as f:
        for line in f:
            if not line.strip():
                continue
            record = json.loads(line)
            if "custom_id" in record and "id" not in record:
                record = {"id": record["custom_id"]}  # an OpenAI batch output line: its usage is nested
            if len(seen) < 64:
                seen.update(dict.fromkeys(record))
            yield record
    summary.columns = list(seen)


def size_category(rows: int) -> str:
    """The Hub's size category for a dataset of `rows` rows."""
    return next((name for bound, name in _SIZES if rows < bound), _LARGEST)


@dataclass(frozen=True, slots=True)
class CardInfo:
    """Everything a card says: where the files are in the repo, what the output holds, and the run's stats."""

    repo_id: str
    data_path: str
    stats_path: str
    summary: OutputSummary
    stats: dict[str, Any] | None = None


def reproduce_command(settings: dict[str, Any]) -> str:
    """The `hfbatch run` command that makes this output again: every setting that differs from its default."""
    from hfbatch.jobspec import FIELDS

    words = ["hfbatch", "run"]
    for f in FIELDS:
        if f.key not in settings or f.key in _LOCAL_ONLY:
            continue
        value = settings[f.key]
        default = list(f.default) if isinstance(f.default, tuple) else f.default
        if value == default or value is None or value == []:
            continue
        if f.kind == "bool":
            words.append(f.flag if value else f"--no-{f.flag[2:]}")
            continue
        if f.kind in ("path", "schema") and isinstance(value, str) and value != "json":
            value = _shown_path(value)
        words += [f.flag, ",".join(value) if isinstance(value, list) else str(value)]
    return " ".join(shlex.quote(w) for w in words)


def _deciding(settings: dict[str, Any]) -> list[tuple[str, Any]]:
    from hfbatch.jobspec import FIELDS

    return [(f.key, settings[f.key]) for f in FIELDS if f.in_manifest and settings.get(f.key) is not None]


def _metadata(info: CardInfo) -> str:
    from huggingface_hub import DatasetCardData

    data = DatasetCardData(
        task_categories=["text-generation"],
        size_categories=[size_category(info.summary.rows)],
        pretty_name=info.repo_id.split("/")[-1],
        tags=["hfbatch", "synthetic"],
        configs=[{"config_name": "default", "data_files": [{"split": "train", "path": info.data_path}]}],
    )
    text: str = data.to_yaml()
    return text


def _share(counter: Counter[str], total: int) -> list[str]:
    rows = [f"| `{name}` | {n:,} | {100 * n / total:.1f}% |" for name, n in counter.most_common()] if total else []
    return rows or ["| (none recorded) | | |"]


def render_card(info: CardInfo) -> str:
    """The README.md text: YAML metadata for the Hub, then the run's numbers, settings and command."""
    s = info.summary
    stats = info.stats or {}
    settings: dict[str, Any] = stats.get("settings") or {}
    models = ", ".join(f"`{m}`" for m, _ in s.models.most_common()) or f"`{stats.get('model') or 'unknown'}`"
    if s.rows_without_cost == s.rows:
        cost = "unknown (no price known for the providers)"
    else:
        cost = f"${s.cost_usd:,.6f}" if s.cost_usd < 1 else f"${s.cost_usd:,.2f}"
        if s.rows_without_cost:
            cost += f" at least ({s.rows_without_cost:,} rows without a known cost)"
    version = stats.get("hfbatch_version")
    lines = [
        "---",
        _metadata(info).rstrip("\n"),
        "---",
        "",
        f"# {info.repo_id.split('/')[-1]}",
        "",
        f"Generated with hfbatch{f' {version}' if version else ''} through Hugging Face Inference Providers: "
        f"{s.rows:,} rows from {models}.",
        "",
        "| | |",
        "| --- | --- |",
        f"| rows | {s.rows:,} |",
        f"| prompt tokens | {s.prompt_tokens:,} |",
        f"| completion tokens | {s.completion_tokens:,} |",
        f"| cost (USD) | {cost} |",
    ]
    if stats.get("input"):
        lines.append(f"| input | `{_shown_path(str(stats['input']))}` |")
    if s.finish_reasons:
        reasons = ", ".join(f"{k} {v:,}" for k, v in s.finish_reasons.most_common())
        lines.append(f"| finish reasons | {reasons} |")
    lines += ["", "## Providers", "", "| provider | rows | share |", "| --- | --- | --- |"]
    lines += _share(s.providers, s.rows)
    if len(s.models) > 1:
        lines += ["", "## Models", "", "| model | rows | share |", "| --- | --- | --- |", *_share(s.models, s.rows)]
    deciding = _deciding(settings)
    if deciding:
        lines += ["", "## Settings that decide the results", "", "| setting | value |", "| --- | --- |"]
        lines += [f"| `{k}` | `{json.dumps(v, ensure_ascii=False)}` |" for k, v in deciding]
    if settings:
        lines += ["", "## Reproduce", "", "```sh", reproduce_command(settings), "```"]
    columns = ", ".join(f"`{c}`" for c in s.columns) or "see the file"
    lines += [
        "",
        "## Files",
        "",
        f"- `{info.data_path}`: one record per input row ({columns}).",
        f"- `{info.stats_path}`: what the latest run did, per provider (requests, failures, latency, tokens, cost).",
        "",
        CARD_MARKER,
        "",
    ]
    return "\n".join(lines)


def _shown_path(value: str) -> str:
    """A Hub URL whole (`Path` folds `hf://` to `hf:/`), a local path by its name: where it lives is private."""
    if value.startswith("hf:/") and not value.startswith("hf://"):
        return "hf://" + value[len("hf:/") :]
    return value if "://" in value else Path(value).name
