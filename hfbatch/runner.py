"""`run_job`: read rows, send them with bounded concurrency and fail-over, write results and stats.

A feeder reads the input into a bounded queue; `concurrency` workers take rows
from it, each row going through `call_with_failover` with the shared
`ProviderPool`; results are appended to the journal and flushed in small
batches, so a crash loses at most what was in flight. Nothing here prints.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hfbatch.errors import APIError, AuthenticationError, ExitCode, JobSpecError, RunError, UsageError
from hfbatch.failfast import FailFast, refused_everywhere
from hfbatch.idset import IdSet
from hfbatch.inputs import BadRow, DoneRow, InputReader, InputSpec, Row, input_name, open_input
from hfbatch.jobspec import JobSpec
from hfbatch.learned_state import load_state, save_state
from hfbatch.messages import calculate_length
from hfbatch.outputs import OutputFiles, error_record, open_output, result_record
from hfbatch.outputs.records import check_writable
from hfbatch.preflight import open_client, plan_run
from hfbatch.pricing import reply_cost
from hfbatch.provider_pool import ProviderLimits, ProviderPool
from hfbatch.push import PushTarget, check_push
from hfbatch.push_run import RunPusher
from hfbatch.retry import env_time_scale
from hfbatch.routes import Routes
from hfbatch.samples import RowSender
from hfbatch.stats import RunStats
from hfbatch.timeline import Timeline
from hfbatch.version import version

__all__ = ["RunControl", "RunReport", "run_job"]

# Rows looked at for a model when the job names none (bad rows before the first good one are skipped).
_MODEL_SNIFF_ROWS = 100


@dataclass(slots=True)
class RunReport:
    """What a run did: its exit code, a one-line reason when it stopped early, and its stats."""

    exit_code: ExitCode
    stats: dict[str, Any]
    message: str | None = None


class RunControl:
    """Lets the caller stop a run: the first request drains in-flight rows, the second stops at once."""

    def __init__(self) -> None:
        self.draining = asyncio.Event()
        self.now = asyncio.Event()

    def request_stop(self) -> None:
        """Ask the run to stop; a second call stops it without waiting."""
        if self.draining.is_set():
            self.now.set()
        self.draining.set()


def _reason(exc: BaseException) -> str:
    """A bad row's reason from the error that made it bad."""
    if isinstance(exc, RecursionError):
        return "a value is nested too deeply to be written as JSON"
    return str(exc) or type(exc).__name__


async def run_job(
    spec: JobSpec,
    *,
    restart: bool = False,
    force: bool = False,
    control: RunControl | None = None,
    progress: Callable[[RunStats], None] | None = None,
) -> RunReport:
    """Run a job to the end (or until stopped) and return its report; raise UsageError on bad input."""
    if spec.dry_run:
        # A dry run promises no request: never let the flag through to a real run.
        raise UsageError("dry_run is set: hfbatch.dry_run(spec) makes a dry run; run_job sends requests")
    started = time.monotonic()
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
                spec, params, reader, files, restart, force, control, progress, stats, started, push_to
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
    push_to: PushTarget | None = None,
) -> RunReport:
    """The run itself, with the input open and the output's lock held."""
    settings = spec.manifest_settings()
    fingerprint = reader.fingerprint()
    files.prepare(settings, fingerprint, restart=restart, force=force)
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
        pool = _pool(spec, api.api_base, model, providers, stats, scale, prices)
        routes = Routes(api, pool, spec.providers)
        keep_raw = spec.keep_response or files.format.needs_raw
        sender = RowSender(api, pool, api.retry, stream=spec.stream, allow_empty=spec.allow_empty, keep_raw=keep_raw)
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
        run = _Run(spec, params, model, providers, pool, stats, done, control, progress, routes, sender, pusher)
        try:
            code, message = await run.execute(reader, files)
        finally:
            files.close()
        if code is ExitCode.OK and stats.rows_failed + stats.rows_bad:
            code = ExitCode.FAILED_ROWS
        report = _report(spec, stats, providers, started, code, message, pool.limits_now())
        files.write_stats(report.stats)
        if pusher:
            await pusher.finish(report, files.write_stats)
        if model is not None:
            save_state(api.api_base, model, pool.learned())
        return report


def _pool(
    spec: JobSpec,
    api_base: str,
    model: str | None,
    providers: list[str],
    stats: RunStats,
    scale: float,
    prices: dict[str, Any],
) -> ProviderPool:
    """The providers' capacity for this run: the user's limits, warm-started from what earlier runs learned."""
    per_provider = ProviderLimits(concurrency=spec.provider_concurrency or spec.concurrency)
    learned = load_state(api_base, model, providers) if spec.learned_limits and model else {}
    return ProviderPool(
        providers,
        stats,
        limits={"*": per_provider},
        learned=learned,
        run_rpm=spec.rpm,
        run_tpm=spec.tpm,
        time_scale=scale,
        prices=prices,
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
        "settings": spec.public_settings(),
    }
    data = stats.to_dict(wall_time=time.monotonic() - started, extra=extra, limits=limits)
    return RunReport(code, data, message)


class _Run:
    """The state of one run's workers."""

    def __init__(
        self,
        spec: JobSpec,
        params: dict[str, Any],
        model: str | None,
        providers: list[str],
        pool: ProviderPool,
        stats: RunStats,
        done: IdSet,
        control: RunControl,
        progress: Callable[[RunStats], None] | None,
        routes: Routes,
        sender: RowSender,
        pusher: RunPusher | None = None,
    ) -> None:
        self.spec = spec
        self.pusher = pusher
        self.api = sender.api
        self.routes = routes
        self.sender = sender
        self.model = model
        self.providers = providers
        self.pool = pool
        self.stats = stats
        self.done = done
        self.control = control
        self.progress = progress or (lambda s: None)
        self.params = params
        self.queue: asyncio.Queue[Row | None] = asyncio.Queue(maxsize=spec.concurrency * 2)
        #: Why the run stopped early because no provider was left, if it did.
        self.all_out: str | None = None
        #: Watches the first rows for a systematic mistake (every one failing alike); not on a resume
        #: of an output that holds results: these settings have worked.
        self.fail_fast = FailFast(enabled=not done)

    async def execute(self, reader: InputReader, files: OutputFiles) -> tuple[ExitCode, str | None]:
        """Run every row; return the exit code and, when it stopped early, why."""
        self.files = files
        self.progress(self.stats)
        stopped: tuple[ExitCode, str] | None = None
        try:
            async with asyncio.TaskGroup() as tg:
                counter = tg.create_task(self._count(reader))
                flusher = tg.create_task(files.keep_flushed())
                timeline = Timeline(files.paths.timeline, self.stats, self.pool.limits_now)
                recorder = tg.create_task(timeline.keep_writing())
                feeder = tg.create_task(self._feed(reader))
                workers = [tg.create_task(self._work()) for _ in range(self.spec.concurrency)]
                watcher = tg.create_task(self._watch_stop(feeder, workers))
                pushing = [tg.create_task(self.pusher.keep_pushing())] if self.pusher else []
                await asyncio.gather(*workers, return_exceptions=True)
                # Workers are done: the last results reach the OS in files.close().
                for t in (counter, flusher, watcher, feeder, recorder, *pushing):
                    t.cancel()
            timeline.write()  # the run's last counters
        except* AuthenticationError as group:
            stopped = ExitCode.AUTH, f"stopped: {group.exceptions[0]}"
        except* UsageError as group:
            # The input turned out unreadable part-way (a corrupt row group, a cut .gz): requests were
            # sent, so this is not "bad usage, nothing sent"; what was done is kept for a rerun.
            stopped = ExitCode.ERROR, f"stopped: {group.exceptions[0]}; results so far are kept"
        if stopped is not None:
            return stopped
        if self.fail_fast.reason is not None:
            return ExitCode.USAGE, self.fail_fast.reason
        if self.all_out is not None:
            refused = refused_everywhere({p: self.pool.why_out(p) for p in self.providers})
            if refused is not None and not self.stats.rows_done:
                return ExitCode.USAGE, refused  # no provider takes this request: a setting is wrong
            return ExitCode.FAILED_ROWS, self.all_out
        if self.control.draining.is_set():
            return ExitCode.INTERRUPTED, "stopped before the end; rerun the same command to resume"
        return ExitCode.OK, None

    async def _count(self, reader: InputReader) -> None:
        # File reads (Parquet footers, a JSONL's head) stay off the event loop; until then, no ETA.
        self.stats.rows_total = await asyncio.to_thread(reader.estimate_rows)

    async def _watch_stop(self, feeder: asyncio.Task[None], workers: list[asyncio.Task[None]]) -> None:
        await self.control.draining.wait()
        feeder.cancel()
        # Rows waiting for capacity or a retry have nothing in flight: they stop now, left for a rerun.
        self.pool.stop_waiting()
        while not self.queue.empty():
            self.queue.get_nowait()
        for _ in workers:
            self.queue.put_nowait(None)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.spec.grace):
                await self.control.now.wait()
        for w in workers:
            w.cancel()

    async def _feed(self, reader: InputReader) -> None:
        seen = IdSet()
        # String ids go straight to the set: on a resume this loop runs for every done row.
        seen_strings = seen.strings
        add_string = seen_strings.add
        stats = self.stats
        n = 0
        for n, item in enumerate(reader.rows(self.done), 1):
            if isinstance(item, BadRow):
                self._bad(item.index, item.where, item.id, item.reason)
            else:
                key = item.id
                if type(key) is str:
                    size = len(seen_strings)
                    add_string(key)
                    new = len(seen_strings) != size
                else:
                    new = seen.add(key)
                if not new:
                    reason = f"duplicate id {key!r}: an earlier row has it; ids must be unique"
                    self._bad(item.index, f"row {item.index}", key, reason)
                elif isinstance(item, DoneRow):
                    stats.rows_skipped += 1
                else:
                    stats.rows_seen = n
                    self.fail_fast.row_read(item.index)
                    await self.queue.put(item)
                    continue
            if n % 512 == 0:
                stats.rows_seen = n
                await asyncio.sleep(0)  # let workers run while skipping many rows
        stats.rows_seen = n
        for _ in range(self.spec.concurrency):
            await self.queue.put(None)

    @staticmethod
    def _token_estimate(messages: list[Any], params: dict[str, Any]) -> float:
        """Tokens a request may use, for --tpm: about 4 characters per prompt token, plus max_tokens."""
        return calculate_length(messages) / 4 + (params.get("max_tokens") or 0)

    def _bad(self, index: int, where: str, row_id: Any, reason: str) -> None:
        self.files.add_error(error_record(index, where, row_id, UsageError(reason)))
        self.stats.rows_bad += 1
        if self.fail_fast.bad_row(index, reason):
            self.control.request_stop()
        self.progress(self.stats)

    async def _work(self) -> None:
        while (row := await self.queue.get()) is not None:
            await self._process(row)

    async def _process(self, row: Row) -> None:
        try:
            messages = await self.api.prepare_messages(
                row.messages,
                max_input_length=self.spec.max_input_length or None,
                media=row.images or None,
                local_images=self.spec.allow_local_images,
            )
            if row.keep:
                # Paid results must be writable: a kept value that cannot be is found before sending.
                check_writable(row.keep)
        except (UsageError, ValueError, RecursionError) as exc:
            self._bad(row.index, f"row {row.index}", row.id, _reason(exc))
            return
        params = {**self.params, **row.params} if row.params else self.params
        model = self.model or row.model
        if model is None:
            reason = "no model: give --model, or body.model in each OpenAI batch line"
            self._bad(row.index, f"row {row.index}", row.id, reason)
            return
        try:
            model, providers = (model, self.providers) if self.model else await self.routes.resolve(model)
            deadline = None if self.spec.max_wait is None else time.monotonic() + self.spec.max_wait
            cost = self._token_estimate(messages, params) if self.spec.tpm else 0.0
            result = await self.sender.result(
                model, messages, params, providers, sleep=self.pool.sleep, deadline=deadline, cost=cost
            )
        except AuthenticationError:
            raise
        except UsageError as exc:
            # The request cannot be encoded (nested too deeply): nothing was sent for it.
            self._bad(row.index, f"row {row.index}", row.id, str(exc))
            return
        except APIError as exc:
            self.files.add_error(error_record(row.index, f"row {row.index}", row.id, exc))
            self.stats.rows_failed += 1
            if self.fail_fast.failed_row(row.index, exc):
                self.control.request_stop()
            self.stats.model(model).add_failed(exc.attempts)
            if self.all_out is None and self.pool.all_out():
                # Every later row would fail the same way: stop, and leave them for a rerun.
                reasons = "; ".join(f"{p}: {self.pool.why_out(p)}" for p in self.stats.providers)
                self.all_out = f"every provider is out for this run ({reasons}); rerun later to retry the rest"
                self.control.request_stop()
        else:
            row_cost = reply_cost(result, self.pool.prices.get(result.provider or ""))
            kept = row.messages if self.spec.keep_prompt else None
            self.files.add_result(result_record(row.id, result, row.keep, messages=kept, cost_usd=row_cost))
            self.stats.rows_done += 1
            self.stats.finish_reasons[str(result.finish_reason)] += 1
            self.stats.model(model).add_done(result.attempts, result.prompt_tokens, result.completion_tokens)
            self.fail_fast.row_ok()
        self.progress(self.stats)
