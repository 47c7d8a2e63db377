"""`--dry-run`: what a run would send and spend, found without a generation request or a file written.

It reads and validates the whole input (streamed, memory bounded as in a run), counts the rows a
run would send (not those the output already holds), estimates their prompt tokens as characters
/ 4 (no tokenizer: a rough figure, and images are not counted), renders the first prompts as they
would be sent, and makes a run's preflight checks (endpoint, model, provider names, prices). From
the router's prices and speeds it gives, per provider, a cost range (lower bound: no output
tokens; upper bound: `max_tokens` per row) and an ETA range, as if that provider served every row.
The output's lock is held only while reading which rows are done.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from hfbatch import defaults
from hfbatch.errors import UsageError
from hfbatch.failfast import FailFast
from hfbatch.idset import IdSet
from hfbatch.inputs import BadRow, DoneRow, InputReader, InputSpec, Row, open_input
from hfbatch.inputs.growth import input_growth
from hfbatch.jobspec import JobSpec
from hfbatch.messages import Message, calculate_length, trim_messages
from hfbatch.outputs import open_output
from hfbatch.outputs.records import check_writable
from hfbatch.preflight import RunPlan, open_client, plan_run
from hfbatch.pricing import Price
from hfbatch.push import PushTarget, check_push
from hfbatch.retry import env_time_scale
from hfbatch.shards import Shard, resolve_shard, spec_shard

__all__ = ["DryRunReport", "ProviderEstimate", "Sample", "dry_run", "format_dry_run"]

#: Bad rows whose reasons the report quotes.
_BAD_EXAMPLES = 5
_SHOWN_CHARS = 300


@dataclass(frozen=True, slots=True)
class Sample:
    """One of the first prompts, as it would be sent (images attached at send time are counted, not shown)."""

    id: str | int
    messages: list[Message]
    images: int = 0


@dataclass(frozen=True, slots=True)
class ProviderEstimate:
    """What sending every row to one provider would cost and take; None where a figure is unknown."""

    provider: str
    status: str | None
    price: Price | None
    cost_low_usd: float | None
    cost_high_usd: float | None
    eta_low_s: float | None
    eta_high_s: float | None
    throughput: float | None
    first_token_latency_ms: float | None
    context_length: int | None


@dataclass(frozen=True, slots=True)
class DryRunReport:
    """A dry run's findings: rows, estimated tokens, the first prompts, and per provider cost and time."""

    model: str
    api_base: str
    rows_to_send: int
    rows_already_done: int
    rows_bad: int
    bad_examples: tuple[str, ...]
    prompt_chars: int
    prompt_tokens_estimate: int
    max_output_tokens: int | None  # the sum of each row's max_tokens; None when some row has no bound
    samples: tuple[Sample, ...]
    providers: tuple[ProviderEstimate, ...]
    notes: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (`--dry-run --json`)."""
        return {
            "model": self.model,
            "api_base": self.api_base,
            "rows": {"to_send": self.rows_to_send, "already_done": self.rows_already_done, "bad_input": self.rows_bad},
            "bad_examples": list(self.bad_examples),
            "prompt_chars": self.prompt_chars,
            "prompt_tokens_estimate": self.prompt_tokens_estimate,
            "tokens_estimated_as": f"characters / {defaults.CHARS_PER_TOKEN}",
            "max_output_tokens": self.max_output_tokens,
            "samples": [{"id": s.id, "messages": s.messages, "images": s.images} for s in self.samples],
            "providers": [_estimate_dict(e) for e in self.providers],
            "notes": list(self.notes),
        }


def _estimate_dict(e: ProviderEstimate) -> dict[str, Any]:
    price = None if e.price is None else {"input": e.price.input, "output": e.price.output, "source": e.price.source}
    return {
        "provider": e.provider,
        "status": e.status,
        "price": price,
        "cost_usd": {"low": e.cost_low_usd, "high": e.cost_high_usd},
        "eta_s": {"low": e.eta_low_s, "high": e.eta_high_s},
        "throughput": e.throughput,
        "first_token_latency_ms": e.first_token_latency_ms,
        "context_length": e.context_length,
    }


@dataclass(slots=True)
class _Tally:
    """What the input scan counts."""

    to_send: int = 0
    done: int = 0
    bad: int = 0
    chars: int = 0
    max_output: int | None = 0
    images: int = 0


def _input_spec(spec: JobSpec) -> InputSpec:
    return InputSpec.from_job(spec)


def _items(reader: InputReader, done: IdSet, shard: Shard | None = None) -> Iterator[Row | BadRow | DoneRow]:
    """The input's rows as a run's feeder sees them (this shard's only): a repeated id makes a bad row."""
    seen = IdSet()
    for item in reader.rows(done if shard is None else shard.skip_others(done)):
        if shard is not None and type(item) is not Row and shard.elsewhere(item, done):
            continue
        if isinstance(item, BadRow) or seen.add(item.id):
            yield item
        else:
            reason = f"duplicate id {item.id!r}: an earlier row has it; ids must be unique"
            yield BadRow(item.index, f"row {item.index}", reason, item.id)


def _scan(reader: InputReader, done: IdSet, spec: JobSpec) -> tuple[_Tally, list[Sample], list[str]]:
    """Read every row once; UsageError when the first ones all fail alike (a run would stop there)."""
    tally = _Tally()
    samples: list[Sample] = []
    bad: list[str] = []
    fail_fast = FailFast(enabled=not done)
    for item in _items(reader, done, spec_shard(spec)):
        if isinstance(item, DoneRow):
            tally.done += 1
            continue
        reason = item.reason if isinstance(item, BadRow) else _unsendable(item)
        if reason is not None:
            tally.bad += 1
            if len(bad) < _BAD_EXAMPLES:
                bad.append(f"{item.where if isinstance(item, BadRow) else f'row {item.index}'}: {reason}")
            if fail_fast.bad_row(item.index, reason):
                raise UsageError(
                    f"{spec.input}: the first {fail_fast.threshold} rows are all bad the same way, so a run would "
                    f"stop there: {reason}"
                )
            continue
        assert isinstance(item, Row)
        fail_fast.row_ok()  # a run would send it
        messages = trim_messages(item.messages, spec.max_input_length) if spec.max_input_length else item.messages
        tally.to_send += 1
        tally.chars += calculate_length(messages)
        tally.images += len(item.images)
        limit = item.params.get("max_tokens", spec.max_tokens)
        tally.max_output = None if tally.max_output is None or limit is None else tally.max_output + limit
        if len(samples) < defaults.DRY_RUN_SAMPLES:
            samples.append(Sample(item.id, list(messages), len(item.images)))
    return tally, samples, bad


def _unsendable(row: Row) -> str | None:
    """Why a run would take this row as bad before sending it, or None."""
    try:
        if row.keep:
            check_writable(row.keep)
    except (ValueError, RecursionError) as exc:
        return str(exc) if not isinstance(exc, RecursionError) else "a value is nested too deeply to be written"
    return None


def _estimate(name: str, plan: RunPlan, tally: _Tally, tokens: int, concurrency: int) -> ProviderEstimate:
    info = plan.catalog.get(name)
    price = plan.prices.get(name)
    low = high = eta_low = eta_high = None
    if price is not None:
        low = price.cost(tokens, 0)
        high = None if tally.max_output is None else price.cost(tokens, tally.max_output)
    speed = info.throughput if info is not None else None
    first = info.first_token_latency_ms if info is not None else None
    if speed:
        # Rows run `concurrency` at a time; each takes its first-token latency, then its output at `speed`.
        waiting = tally.to_send * (first or 0.0) / 1000
        eta_low = waiting / concurrency if first is not None else None
        eta_high = None if tally.max_output is None else (waiting + tally.max_output / speed) / concurrency
    return ProviderEstimate(
        provider=name,
        status=info.status if info is not None else None,
        price=price,
        cost_low_usd=low,
        cost_high_usd=high,
        eta_low_s=eta_low,
        eta_high_s=eta_high,
        throughput=speed,
        first_token_latency_ms=first,
        context_length=info.context_length if info is not None else None,
    )


async def dry_run(spec: JobSpec, *, restart: bool = False, force: bool = False) -> DryRunReport:
    """Check the job and estimate what it would send and spend; raise as a run would (UsageError: exit 2)."""
    spec = resolve_shard(spec)
    push_to = PushTarget.from_job(spec)
    if push_to is not None:
        check_push(push_to)
    reader = open_input(_input_spec(spec))
    files = open_output(spec.output, errors=spec.errors, stats=spec.stats)
    files.check_distinct([reader.path, *reader.files()])
    done = IdSet()
    with reader:
        if not restart:
            # The lock only while reading: a run would refuse this output for the same reasons.
            with files:
                fingerprint = reader.fingerprint()
                grew = functools.partial(input_growth, new=fingerprint, files=reader.files())
                files.prepare(spec.manifest_settings(), fingerprint, restart=False, force=force, input_grew=grew)
                files.load_done(done)
        scale = env_time_scale()
        async with open_client(spec, scale) as api:
            plan = await plan_run(api, spec, time_scale=scale)
            tally, samples, bad = await asyncio.to_thread(_scan, reader, done, spec)
    tokens = -(-tally.chars // defaults.CHARS_PER_TOKEN)
    concurrency = min(spec.concurrency, spec.provider_concurrency or spec.concurrency)
    notes = list(plan.notes)
    if tally.images:
        notes.append(f"{tally.images} images are sent with the rows; their tokens are not in the estimate")
    if tally.max_output is None:
        notes.append("max_tokens is unset, so output tokens, the cost's upper bound and the ETA have no bound")
    return DryRunReport(
        model=plan.model,
        api_base=spec.api_base if spec.sim is None else "(the job's [sim] server)",
        rows_to_send=tally.to_send,
        rows_already_done=tally.done,
        rows_bad=tally.bad,
        bad_examples=tuple(bad),
        prompt_chars=tally.chars,
        prompt_tokens_estimate=tokens,
        max_output_tokens=tally.max_output,
        samples=tuple(samples),
        providers=tuple(_estimate(p, plan, tally, tokens, concurrency) for p in plan.providers),
        notes=tuple(notes),
    )


def _usd(value: float | None) -> str:
    if value is None:
        return "?"
    return f"${value:.6f}" if value < 1 else f"${value:,.2f}"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    if seconds < 10:
        return f"{seconds:.1f}s"
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def _shown(message: Message) -> str:
    content = message.get("content")
    text = content if isinstance(content, str) else repr(content)
    text = " ".join(text.split())
    return f"{message.get('role')}: {text[:_SHOWN_CHARS]}{'...' if len(text) > _SHOWN_CHARS else ''}"


def format_dry_run(report: DryRunReport) -> str:
    """The report as text for the terminal."""
    out = [
        f"dry run of {report.model} at {report.api_base}: no generation request sent, no file written",
        f"rows: {report.rows_to_send} to send, {report.rows_already_done} already done, {report.rows_bad} bad input",
    ]
    out += [f"  bad: {b}" for b in report.bad_examples]
    bound = "no bound" if report.max_output_tokens is None else f"at most {report.max_output_tokens:,}"
    out.append(
        f"tokens: ~{report.prompt_tokens_estimate:,} prompt (characters / {defaults.CHARS_PER_TOKEN}), output {bound}"
    )
    out.append(f"{'provider':<20} {'status':<7} {'$/M in':>8} {'$/M out':>8} {'cost low':>12} {'cost high':>12} ETA")
    for e in report.providers:
        p_in = "?" if e.price is None else f"{e.price.input:g}"
        p_out = "?" if e.price is None else f"{e.price.output:g}"
        eta = "?" if e.eta_high_s is None else f"{_duration(e.eta_low_s)} to {_duration(e.eta_high_s)}"
        out.append(
            f"{e.provider[:20]:<20} {(e.status or '?'):<7} {p_in:>8} {p_out:>8} "
            f"{_usd(e.cost_low_usd):>12} {_usd(e.cost_high_usd):>12} {eta}"
        )
    for sample in report.samples:
        images = f" (+{sample.images} images)" if sample.images else ""
        out.append(f"prompt {sample.id!r}{images}:")
        out += [f"  {_shown(m)}" for m in sample.messages]
    out += [f"note: {n}" for n in report.notes]
    return "\n".join(out)
