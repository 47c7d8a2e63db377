"""A run's workers: `concurrency` workers in a TaskGroup, the input they share, stop handling, each row's fate.

A worker that is free reads the next row to send from the input (shared by all: no feeder
task and no queue to hand rows over, so nothing is read ahead of the workers) and sends it
through the `RowSender` (fail-over, samples, structured output); results go to the
`OutputFiles`, which hand them to the OS in the tick they arrive. Nothing here prints.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from hfbatch.errors import (
    APIError,
    AuthenticationError,
    BudgetReached,
    ExitCode,
    UsageError,
)
from hfbatch.failfast import FailFast, refused_everywhere
from hfbatch.hedging import HedgedRequest, Hedger
from hfbatch.idset import IdSet
from hfbatch.inputs import BadRow, DoneRow, InputReader, Row
from hfbatch.jobspec import JobSpec
from hfbatch.messages import calculate_length
from hfbatch.outputs import OutputFiles, error_record, result_record
from hfbatch.outputs.records import check_writable
from hfbatch.pricing import reply_cost
from hfbatch.provider_pool import ProviderPool
from hfbatch.route_order import order_providers
from hfbatch.routes import Routes
from hfbatch.samples import RowSender
from hfbatch.shards import spec_shard
from hfbatch.stats import RunStats
from hfbatch.timeline import Timeline

if TYPE_CHECKING:
    from hfbatch.push_run import RunPusher

__all__ = ["RunControl", "Workers"]


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


REROUTE_ROWS = 100  # `--route cheapest` ranks the providers again after this many rows


class Workers:
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
        #: --push-every's snapshots run beside the workers, in the same TaskGroup.
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
        #: The input's items, numbered from 1, shared by the workers (set by `execute`).
        self._items: Iterator[tuple[int, Row | BadRow | DoneRow]] = iter(())
        #: The ids of the rows to run; a done id is claimed in `done` instead, so it is not held twice.
        self._ids = IdSet()
        #: Set when no more rows may start: the input is drained, or the run is stopping.
        self._closed = False
        #: Second tries of slow requests once the input is drained (`--hedge`, on by default).
        self.hedger = Hedger(pool, enabled=spec.hedge)
        #: Why the run stopped early because no provider was left, if it did.
        self.all_out: str | None = None
        #: Why the run stopped because a budget cap was reached, if it did.
        self.budget_reached: str | None = None
        #: Watches the first rows for a systematic mistake (every one failing alike); not on a resume
        #: of an output that holds results: these settings have worked.
        self.fail_fast = FailFast(enabled=not done)
        self.shard = spec_shard(spec)
        #: This run's id in the timeline, once it started.
        self.run_id: str | None = None

    async def execute(self, reader: InputReader, files: OutputFiles) -> tuple[ExitCode, str | None]:
        """Run every row; return the exit code and, when it stopped early, why."""
        self.files = files
        self.progress(self.stats)
        stopped: tuple[ExitCode, str] | None = None
        try:
            async with asyncio.TaskGroup() as tg:
                self.hedger.attach(tg)
                counter = tg.create_task(self._count(reader))
                flusher = tg.create_task(files.keep_flushed())
                timeline = Timeline(files.paths.timeline, self.stats, self.pool.limits_now)
                self.run_id = timeline.run
                recorder = tg.create_task(timeline.keep_writing())
                done = self.done if self.shard is None else self.shard.skip_others(self.done)
                self._items = enumerate(reader.rows(done or None), 1)
                workers = [tg.create_task(self._work()) for _ in range(self.spec.concurrency)]
                watcher = tg.create_task(self._watch_stop(workers))
                pushing = [tg.create_task(self.pusher.keep_pushing())] if self.pusher else []
                await asyncio.gather(*workers, return_exceptions=True)
                # Workers are done: the last results reach the OS in files.close().
                for t in (counter, flusher, watcher, recorder, *pushing):
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
        if self.budget_reached is not None:
            return ExitCode.BUDGET, self.budget_reached
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
        total = await asyncio.to_thread(reader.estimate_rows)
        self.stats.rows_total = total if total is None or self.shard is None else round(total / self.shard.n)

    async def _watch_stop(self, workers: list[asyncio.Task[None]]) -> None:
        await self.control.draining.wait()
        self._closed = True  # no row starts from now on
        # Rows waiting for capacity or a retry have nothing in flight: they stop now, left for a rerun.
        self.pool.stop_waiting()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.spec.grace):
                await self.control.now.wait()
        for w in workers:
            w.cancel()

    async def _next_row(self) -> Row | None:
        """The next row to send, read by the worker that is free; None once the input is drained or the run stops.

        Bad rows, rows done by an earlier run and rows of other shards are counted on the way.
        The workers share one iterator: none is inside it while another waits here.
        """
        stats = self.stats
        shard = self.shard
        skipped = 0
        draining = self.control.draining
        while not (self._closed or draining.is_set()):
            found = next(self._items, None)
            if found is None:
                self._closed = True
                break
            n, item = found
            stats.rows_seen = n
            if type(item) is Row and self._ids.add(item.id):
                # The common case first: a row to send, its id new (a shard's reader yields only its own rows).
                self.fail_fast.row_read(item.index)
                return item
            if shard is not None and type(item) is not Row and shard.elsewhere(item, self.done):
                stats.rows_other_shards += 1
            elif isinstance(item, BadRow):
                self._bad(item.index, item.where, item.id, item.reason)
            elif type(item) is Row or not self.done.claim(item.id):
                # A Row here is one whose id an earlier row has; a DoneRow, one whose done id was claimed already.
                reason = f"duplicate id {item.id!r}: an earlier row has it; ids must be unique"
                self._bad(item.index, f"row {item.index}", item.id, reason)
            else:
                stats.rows_skipped += 1  # done by an earlier run
            skipped += 1
            if skipped % 512 == 0:
                await asyncio.sleep(0)  # let requests in flight go on while many rows are skipped
        return None

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
        flight = self.hedger.flight()  # this worker's record of its request in flight, for hedges
        while (row := await self._next_row()) is not None:
            await self._process(row, flight)
        # No row left for this worker: the run's tail, where slow requests get hedged.
        self.hedger.begin_tail()

    async def _process(self, row: Row, flight: HedgedRequest | None) -> None:
        try:
            if row.images:
                messages = await self.api.prepare_messages(
                    row.messages,
                    max_input_length=self.spec.max_input_length or None,
                    media=row.images,
                    local_images=self.spec.allow_local_images,
                )
            else:  # nothing to read: no coroutine
                messages = self.api.fit_messages(row.messages, self.spec.max_input_length or None)
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
                model,
                messages,
                params,
                providers,
                sleep=self.pool.sleep,
                deadline=deadline,
                cost=cost,
                flight=flight,
            )
        except AuthenticationError:
            raise
        except BudgetReached as exc:
            # Not this row's failure: it stays for a rerun with a larger budget, and no new row is admitted.
            if self.budget_reached is None:
                self.budget_reached = str(exc)
                self.control.request_stop()
            return
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
            if self.spec.route == "cheapest" and self.stats.rows_done % REROUTE_ROWS == 0:
                self._reroute()
        self.progress(self.stats)

    def _reroute(self) -> None:
        """`--route cheapest`: rank the providers again at the mean tokens of the replies so far."""
        overall = self.stats.overall()
        if overall.billed_replies:
            seen = (overall.prompt_tokens / overall.billed_replies, overall.completion_tokens / overall.billed_replies)
            self.providers = order_providers(self.providers, "cheapest", prices=self.pool.prices, catalog={}, seen=seen)
