"""`run_job`: read rows, send them with bounded concurrency and fail-over, write results and stats.

This module sets a run up and sums it up: it opens the input and the output's files, checks
everything that needs no row (endpoint, model, providers, prices), builds the providers'
capacity and the budget, and hands the rows to `workers.Workers`. Nothing here prints.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hfbatch import events, json_codec
from hfbatch.budget import Budget
from hfbatch.errors import (
    ExitCode,
    JobSpecError,
    RunError,
    UsageError,
)
from hfbatch.event_loop import running_loop_name
from hfbatch.history import record
from hfbatch.idset import IdSet
from hfbatch.inputs import InputReader, InputSpec, Row, input_name, open_input
from hfbatch.inputs.growth import input_growth
from hfbatch.jobspec import JobSpec
from hfbatch.learned_state import load_state, save_state
from hfbatch.outputs import OutputFiles, open_output
from hfbatch.preflight import open_client, plan_run
from hfbatch.provider_pool import ProviderLimits, ProviderPool
from hfbatch.push import PushTarget, check_push
from hfbatch.push_run import RunPusher
from hfbatch.retry import env_time_scale
from hfbatch.routes import Routes
from hfbatch.samples import RowSender
from hfbatch.shards import resolve_shard
from hfbatch.stats import RunStats
from hfbatch.version import version
from hfbatch.workers import RunControl, Workers

__all__ = ["RunControl", "RunReport", "run_job"]

# Rows looked at for a model when the job names none (bad rows before the first good one are skipped).
_MODEL_SNIFF_ROWS = 100


@dataclass(slots=True)
class RunReport:
    """What a run did: its exit code, a one-line reason when it stopped early, and its stats."""

    exit_code: ExitCode
    stats: dict[str, Any]
    message: str | None = None


async def run_job(
    spec: JobSpec,
    *,
    restart: bool = False,
    force: bool = False,
    control: RunControl | None = None,
    progress: Callable[[RunStats], None] | None = None,
    on_event: events.OnEvent | None = None,
) -> RunReport:
    """Run a job to the end (or until stopped) and return its report; raise UsageError on bad input.

    `progress` is called with the stats after each row; `on_event` gets the run's events
    (`hfbatch.events`: a provider out, a breaker trip, learned limits that moved, the run's end).
    """
    if spec.dry_run:
        # A dry run promises no request: never let the flag through to a real run.
        raise UsageError("dry_run is set: hfbatch.dry_run(spec) makes a dry run; run_job sends requests")
    started = time.monotonic()
    spec = resolve_shard(spec)  # K/N from --shard auto, and {shard} in paths (build_spec did it for the CLI)
    control = control or RunControl()
    stats = RunStats()
    params = spec.request_params()  # a bad response_format file is a usage error before anything is opened
    push_to = PushTarget.from_job(spec)
    if push_to is not None:
        check_push(push_to)  # huggingface_hub installed and a token at hand, before anything is sent
    reader = open_input(InputSpec.from_job(spec))
    if spec.model is None:
        _check_rows_name_a_model(reader, spec)
    files = open_output(spec.output, errors=spec.errors, stats=spec.stats, format=spec.output_format)
    files.check_distinct([reader.path, *reader.files()])
    try:
        with reader, files:
            return await _run_files(
                spec, params, reader, files, restart, force, control, progress, stats, started, on_event, push_to
            )
    except OSError as exc:
        # The disk filled up or went away: what was flushed before is safe, and a rerun resumes.
        where = exc.filename or spec.output
        raise RunError(
            f"{where}: {exc.strerror or exc}; results written so far are kept: fix it and rerun to resume"
        ) from exc


def _check_rows_name_a_model(reader: InputReader, spec: JobSpec) -> None:
    """With no model given, rows must name theirs (body.model): JobSpecError when the first row does not."""
    rows = reader.rows()
    try:
        for _, item in zip(range(_MODEL_SNIFF_ROWS), rows, strict=False):
            if isinstance(item, Row):
                if item.model is None:
                    raise JobSpecError(
                        f"{spec.source}: missing required setting 'model' (flag --model); only OpenAI batch "
                        "lines that carry body.model can go without it"
                    )
                return
    finally:
        close = getattr(rows, "close", None)
        if close is not None:
            close()


async def _run_files(
    spec: JobSpec,
    params: dict[str, Any],
    reader: InputReader,
    files: OutputFiles,
    restart: bool,
    force: bool,
    control: RunControl,
    progress: Callable[[RunStats], None] | None,
    stats: RunStats,
    started: float,
    on_event: events.OnEvent | None = None,
    push_to: PushTarget | None = None,
) -> RunReport:
    """The run itself, with the input open and the output's lock held."""
    settings = spec.manifest_settings()
    fingerprint = reader.fingerprint()
    grew = functools.partial(input_growth, new=fingerprint, files=reader.files())  # a cron input that only grew
    files.prepare(settings, fingerprint, restart=restart, force=force, input_grew=grew)
    done = IdSet()
    files.load_done(done)
    scale = env_time_scale()
    async with open_client(spec, scale) as api:
        model: str | None = None
        providers = list(spec.providers)
        prices: dict[str, Any] = {}
        if spec.model is not None:
            # Every check that needs no row, before the first request: endpoint, model, provider names, prices.
            plan = await plan_run(api, spec, time_scale=scale)
            providers, model, prices = plan.providers, plan.model, dict(plan.prices)
            stats.pricing = plan.pricing()
        pool = _pool(spec, api.api_base, model, providers, stats, scale, prices, on_event)
        routes = Routes(api, pool, spec.providers)
        keep_raw = spec.keep_response or files.format.needs_raw
        budget = _budget(spec, providers, prices, on_event)
        sender = RowSender(
            api, pool, api.retry, stream=spec.stream, allow_empty=spec.allow_empty, keep_raw=keep_raw, budget=budget
        )
        if model is not None and "response_format" in params:
            if not await sender.structured_providers(model, providers):
                raise UsageError(
                    f"no provider of {model} supports structured output ({', '.join(providers)} are marked "
                    "supports_structured_output: false); drop --response-format or pick --providers; nothing was sent"
                )
        files.start(settings, fingerprint)

        def now() -> dict[str, Any]:
            return _report(spec, stats, providers, started, ExitCode.OK, None).stats

        pusher = None
        if push_to is not None:
            pusher = RunPusher(push_to, spec.output, every_minutes=spec.push_every, stats_now=now, scale=scale)
        run = Workers(spec, params, model, providers, pool, stats, done, control, progress, routes, sender, pusher)
        try:
            code, message = await run.execute(reader, files)
        finally:
            files.close()
        if code is ExitCode.OK and stats.rows_failed + stats.rows_bad:
            code = ExitCode.FAILED_ROWS
        report = _report(spec, stats, providers, started, code, message, pool.limits_now())
        # The file adds this run to the earlier ones; the report (and the table printed) is this run's.
        changeable = {k: v for k, v in spec.public_settings().items() if k not in settings}
        paths = files.paths
        written = record(paths.stats, paths.timeline, report.stats, run=run.run_id, settings=changeable)
        files.write_stats(written)
        if pusher:
            # The stats file as written (every run into this output) goes with the data.
            await pusher.finish(report, written, files.write_stats)
        if model is not None:
            save_state(api.api_base, model, pool.learned())
        if on_event is not None:
            on_event(events.run_end(report.stats, int(report.exit_code), report.message))
        return report


def _budget(
    spec: JobSpec, providers: list[str], prices: dict[str, Any], on_event: events.OnEvent | None = None
) -> Budget:
    """The run's caps; --max-cost with a provider whose price is unknown is refused before any request."""
    if spec.max_cost is not None:
        unpriced = [p for p in providers if prices.get(p) is None]
        if unpriced or not providers:
            names = ", ".join(unpriced) or "the providers of each row's model"
            raise UsageError(
                f"--max-cost needs every provider's price, and {names} publish none; set --price-in and "
                "--price-out (or [providers.NAME] price_in/price_out); nothing was sent"
            )
    return Budget(
        max_cost=spec.max_cost,
        max_requests=spec.max_requests,
        max_tokens_total=spec.max_tokens_total,
        prices=prices,
        on_event=on_event,
    )


def _pool(
    spec: JobSpec,
    api_base: str,
    model: str | None,
    providers: list[str],
    stats: RunStats,
    scale: float,
    prices: dict[str, Any],
    on_event: events.OnEvent | None = None,
) -> ProviderPool:
    """The providers' capacity for this run: the user's limits, warm-started from what earlier runs learned."""
    per_provider = ProviderLimits(concurrency=spec.provider_concurrency or spec.concurrency)
    limits = {"*": per_provider}
    for name, own in spec.provider_settings.items():
        if own.concurrency is not None or own.rpm is not None or own.tpm is not None:
            limits[name] = ProviderLimits(own.concurrency or per_provider.concurrency, rpm=own.rpm, tpm=own.tpm)
    learned = load_state(api_base, model, providers) if spec.learned_limits and model else {}
    return ProviderPool(
        providers,
        stats,
        limits=limits,
        learned=learned,
        run_rpm=spec.rpm,
        run_tpm=spec.tpm,
        time_scale=scale,
        prices=prices,
        adaptive_timeout=spec.timeout is None,
        on_event=on_event,
    )


def _report(
    spec: JobSpec,
    stats: RunStats,
    providers: list[str],
    started: float,
    code: ExitCode,
    message: str | None,
    limits: dict[str, dict[str, Any]] | None = None,
) -> RunReport:
    extra = {
        "model": spec.model,
        "provider_order": providers,
        "input": input_name(spec.input),
        "output": str(spec.output),
        "exit_code": int(code),
        "stopped_because": message,
        "hfbatch_version": version(),
        "event_loop": running_loop_name(),
        "json": json_codec.BACKEND,
        "settings": spec.public_settings(),
    }
    data = stats.to_dict(wall_time=time.monotonic() - started, extra=extra, limits=limits)
    return RunReport(code, data, message)
