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
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from hfbatch.client import HuggingFaceAPI
from hfbatch.credentials import token_for, token_hint
from hfbatch.errors import APIError, AuthenticationError, ExitCode, ModelNotSupportedError, RunError, UsageError
from hfbatch.failover import call_with_failover
from hfbatch.idset import IdSet
from hfbatch.inputs import BadRow, DoneRow, InputReader, InputSpec, Row, open_input
from hfbatch.jobspec import JobSpec
from hfbatch.learned_state import load_state, save_state
from hfbatch.messages import calculate_length
from hfbatch.outputs import OutputFiles, error_record, open_output, result_record
from hfbatch.outputs.records import check_writable
from hfbatch.provider_pool import ProviderLimits, ProviderPool
from hfbatch.retry import RetryPolicy, env_time_scale
from hfbatch.stats import RunStats
from hfbatch.wire import ChatResult

__all__ = ["RunControl", "RunReport", "run_job"]


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


async def _collect(stream: AsyncIterator[str | ChatResult]) -> ChatResult:
    """The result at the end of a streamed attempt."""
    async for item in stream:
        if isinstance(item, ChatResult):
            return item
    raise AssertionError("stream() ends with its result")


@contextlib.asynccontextmanager
async def _client_for(spec: JobSpec, scale: float) -> AsyncIterator[HuggingFaceAPI]:
    """The client, pointed at an in-process simulated server when the job has a [sim] table."""
    policy = RetryPolicy(max_retries=spec.max_retries, max_attempts=spec.max_attempts, time_scale=scale)
    kw: dict[str, Any] = {
        "timeout": spec.timeout,
        "idle_timeout": spec.idle_timeout,
        "retry": policy,
        "api_key_env": spec.api_key_env,
    }
    if spec.sim is None:
        token = token_for(spec.api_base, spec.hub_url, spec.api_key_env)
        api = HuggingFaceAPI(token, api_base=spec.api_base, hub_url=spec.hub_url, **kw)
        if api.uses_hub and not token:
            raise AuthenticationError(f"no token: {token_hint(spec.api_key_env)}")
        async with api:
            yield api
        return
    from hfbatch.sim import SimServer, sim_config_from_dict

    config = sim_config_from_dict(spec.sim, f"{spec.source} [sim]")
    async with (
        SimServer(config) as sim,
        HuggingFaceAPI(config.token, api_base=sim.api_base, hub_url=sim.hub_url, **kw) as api,
    ):
        yield api


async def run_job(
    spec: JobSpec,
    *,
    restart: bool = False,
    force: bool = False,
    control: RunControl | None = None,
    progress: Callable[[RunStats], None] | None = None,
) -> RunReport:
    """Run a job to the end (or until stopped) and return its report; raise UsageError on bad input."""
    started = time.monotonic()
    control = control or RunControl()
    stats = RunStats()
    in_spec = InputSpec(
        path=spec.input,
        id_column=spec.id_column,
        prompt_column=spec.prompt_column,
        template=spec.template,
        keep_columns=spec.keep_columns,
        system=spec.system,
    )
    reader = open_input(in_spec)
    files = open_output(spec.output, errors=spec.errors, stats=spec.stats)
    files.check_distinct([reader.path, *reader.files()])
    try:
        with reader, files:
            return await _run_files(spec, reader, files, restart, force, control, progress, stats, started)
    except OSError as exc:
        # The disk filled up or went away: what was flushed before is safe, and a rerun resumes.
        where = exc.filename or spec.output
        raise RunError(
            f"{where}: {exc.strerror or exc}; results written so far are kept: fix it and rerun to resume"
        ) from exc


async def _run_files(
    spec: JobSpec,
    reader: InputReader,
    files: OutputFiles,
    restart: bool,
    force: bool,
    control: RunControl,
    progress: Callable[[RunStats], None] | None,
    stats: RunStats,
    started: float,
) -> RunReport:
    """The run itself, with the input open and the output's lock held."""
    settings = spec.manifest_settings()
    fingerprint = reader.fingerprint()
    files.prepare(settings, fingerprint, restart=restart, force=force)
    done = IdSet()
    files.load_done(done)
    scale = env_time_scale()
    async with _client_for(spec, scale) as api:
        providers = list(spec.providers) or await _providers(api, spec.model)
        model = api.get_model(spec.model)
        pool = _pool(spec, api, model, providers, stats, scale)
        files.start(settings, fingerprint)
        run = _Run(spec, api, model, providers, pool, stats, done, control, progress)
        try:
            code, message = await run.execute(reader, files)
        finally:
            files.close()
        if code is ExitCode.OK and stats.rows_failed + stats.rows_bad:
            code = ExitCode.FAILED_ROWS
        report = _report(spec, stats, providers, started, code, message, pool.limits_now())
        files.write_stats(report.stats)
        save_state(api.api_base, model, pool.learned())
        return report


def _pool(
    spec: JobSpec, api: HuggingFaceAPI, model: str, providers: list[str], stats: RunStats, scale: float
) -> ProviderPool:
    """The providers' capacity for this run: the user's limits, warm-started from what earlier runs learned."""
    per_provider = ProviderLimits(concurrency=spec.provider_concurrency or spec.concurrency)
    learned = load_state(api.api_base, model, providers) if spec.learned_limits else {}
    return ProviderPool(
        providers,
        stats,
        limits=dict.fromkeys(providers, per_provider),
        learned=learned,
        run_rpm=spec.rpm,
        run_tpm=spec.tpm,
        time_scale=scale,
    )


async def _providers(api: HuggingFaceAPI, model: str) -> list[str]:
    """The providers the Hub maps `model` to; a model nobody serves is a usage error, a Hub failure a RunError."""
    try:
        return await api.providers_for(model)
    except ModelNotSupportedError as exc:
        raise UsageError(f"{exc.message}; nothing was sent") from exc
    except AuthenticationError:
        raise
    except APIError as exc:
        raise RunError(
            f"cannot ask the Hub which providers serve {model}: {exc}; nothing was sent, rerun later"
        ) from exc


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
        "input": str(spec.input),
        "output": str(spec.output),
        "exit_code": int(code),
        "stopped_because": message,
    }
    data = stats.to_dict(wall_time=time.monotonic() - started, extra=extra, limits=limits)
    return RunReport(code, data, message)


class _Run:
    """The state of one run's workers."""

    def __init__(
        self,
        spec: JobSpec,
        api: HuggingFaceAPI,
        model: str,
        providers: list[str],
        pool: ProviderPool,
        stats: RunStats,
        done: IdSet,
        control: RunControl,
        progress: Callable[[RunStats], None] | None,
    ) -> None:
        self.spec = spec
        self.api = api
        self.model = model
        self.providers = providers
        self.pool = pool
        self.stats = stats
        self.done = done
        self.control = control
        self.progress = progress or (lambda s: None)
        self.params = spec.request_params()
        self.policy = api.retry
        self.queue: asyncio.Queue[Row | None] = asyncio.Queue(maxsize=spec.concurrency * 2)
        #: Why the run stopped early because no provider was left, if it did.
        self.all_out: str | None = None

    async def execute(self, reader: InputReader, files: OutputFiles) -> tuple[ExitCode, str | None]:
        """Run every row; return the exit code and, when it stopped early, why."""
        self.files = files
        self.progress(self.stats)
        stopped: tuple[ExitCode, str] | None = None
        try:
            async with asyncio.TaskGroup() as tg:
                counter = tg.create_task(self._count(reader))
                flusher = tg.create_task(files.keep_flushed())
                feeder = tg.create_task(self._feed(reader))
                workers = [tg.create_task(self._work()) for _ in range(self.spec.concurrency)]
                watcher = tg.create_task(self._watch_stop(feeder, workers))
                await asyncio.gather(*workers, return_exceptions=True)
                # Workers are done: the last results reach the OS in files.close().
                for t in (counter, flusher, watcher, feeder):
                    t.cancel()
        except* AuthenticationError as group:
            stopped = ExitCode.AUTH, f"stopped: {group.exceptions[0]}"
        except* UsageError as group:
            # The input turned out unreadable part-way (a corrupt row group, a cut .gz): requests were
            # sent, so this is not "bad usage, nothing sent"; what was done is kept for a rerun.
            stopped = ExitCode.ERROR, f"stopped: {group.exceptions[0]}; results so far are kept"
        if stopped is not None:
            return stopped
        if self.all_out is not None:
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
        self.progress(self.stats)

    async def _work(self) -> None:
        while (row := await self.queue.get()) is not None:
            await self._process(row)

    async def _process(self, row: Row) -> None:
        try:
            messages = self.api.prepare_messages(
                row.messages, max_input_length=self.spec.max_input_length or None, media=row.images or None
            )
            if row.keep:
                # Paid results must be writable: a kept value that cannot be is found before sending.
                check_writable(row.keep)
        except (UsageError, ValueError, RecursionError) as exc:
            self._bad(row.index, f"row {row.index}", row.id, _reason(exc))
            return
        params = {**self.params, **row.params} if row.params else self.params
        allow_empty = self.spec.allow_empty

        def send(provider: str) -> Awaitable[ChatResult]:
            # The coroutine itself, not awaited here: one layer less on every request.
            if not self.spec.stream:
                return self.api.complete(
                    self.model, messages, provider=provider, params=params, allow_empty=allow_empty
                )
            return _collect(
                self.api.stream(self.model, messages, provider=provider, params=params, allow_empty=allow_empty)
            )

        deadline = None if self.spec.max_wait is None else time.monotonic() + self.spec.max_wait
        try:
            result = await call_with_failover(
                send,
                self.providers,
                self.policy,
                self.pool,
                sleep=self.pool.sleep,
                deadline=deadline,
                cost=self._token_estimate(messages, params) if self.spec.tpm else 0.0,
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
            if self.all_out is None and self.pool.all_out():
                # Every later row would fail the same way: stop, and leave them for a rerun.
                reasons = "; ".join(f"{p}: {self.pool.why_out(p)}" for p in self.providers)
                self.all_out = f"every provider is out for this run ({reasons}); rerun later to retry the rest"
                self.control.request_stop()
        else:
            self.files.add_result(result_record(row.id, result, row.keep))
            self.stats.rows_done += 1
        self.progress(self.stats)
