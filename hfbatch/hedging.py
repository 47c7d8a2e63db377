"""Hedged requests for the tail of a run: a second try elsewhere for a request that is taking too long.

Once the input is drained (a worker finds no row left), a few slow requests set the
run's end. From then on, a request in flight longer than `HEDGE_FACTOR` times its
provider's p99 latency gets a hedge: the same request on another provider with room
now (the same provider if none has), if any has room. The first success wins; the
other request is cancelled. A hedge that fails is dropped and the first request goes
on; if the first fails while its hedge is in flight, the row waits for the hedge. Hedging
never fails a row.

Hedging costs next to nothing per request before the tail: the first request is
awaited by its own worker, as always, and only noted in the worker's one record
(`HedgedRequest.begin` ... `end`: no object per request). A winning hedge cancels
that await; `HedgedRequest.result` tells the worker's cancellation from any other
(a stop, a deadline) and gives it the hedge's reply.

A cancelled request may still be billed by its provider (it was generating): the
stats count such requests (`cancelled`), and the cost counts only replies received.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

from hfbatch.errors import APIError, HfbatchError

if TYPE_CHECKING:
    from hfbatch.provider_pool import Lease, ProviderPool
    from hfbatch.wire import ChatResult

__all__ = ["HEDGE_FACTOR", "HEDGE_MIN_SAMPLES", "HedgedRequest", "Hedger", "hedge_delay"]

HEDGE_FACTOR = 3.0  # a request this many p99 latencies old is hedged (in the tail)
HEDGE_MIN_SAMPLES = 20  # successes a provider needs before its p99 says what is slow
# Never sooner, in real seconds (HFBATCH_TIME_SCALE scales our own delays, not a server's latency):
# a request that young is not a straggler, and a hedge sent in its last milliseconds is paid for nothing.
HEDGE_MIN_DELAY = 1.0


def hedge_delay(p99: float | None, samples: int) -> float | None:
    """Seconds after its send at which a request is hedged; None while too few replies say what is slow."""
    if p99 is None or samples < HEDGE_MIN_SAMPLES:
        return None
    return max(HEDGE_MIN_DELAY, HEDGE_FACTOR * p99)


class HedgedRequest:
    """One worker's request in flight, as the hedger sees it: its providers, its send, and a hedge's reply.

    A worker has one, made by `Hedger.flight` and reused for each of its requests
    (`begin` ... `end`): nothing is built per request before the tail.
    """

    __slots__ = ("candidates", "failed", "hedge", "hedger", "lease", "send", "sent_at", "task", "timer", "won")

    def __init__(self, hedger: Hedger, task: asyncio.Task[object] | None) -> None:
        self.hedger = hedger
        self.task = task
        self.lease: Lease | None = None
        self.candidates: Sequence[str] = ()
        self.send: Callable[[str], Awaitable[ChatResult]] | None = None
        self.sent_at = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.hedge: asyncio.Task[None] | None = None
        self.won: ChatResult | None = None
        #: The first request failed while the hedge was in flight: the row waits for the hedge.
        self.failed = False

    def begin(self, lease: Lease, candidates: Sequence[str], send: Callable[[str], Awaitable[ChatResult]]) -> None:
        """The worker sends a request on `lease`: a hedge may answer for it from now until `end`."""
        hedger = self.hedger
        self.lease = lease
        self.candidates = candidates
        self.send = send
        self.sent_at = hedger.clock()
        hedger.flights.add(self)
        if hedger.in_tail:
            hedger.arm(self)

    def end(self) -> None:
        """The request is done: no hedge for it, and a hedge under way loses."""
        self.hedger.flights.discard(self)
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        hedge = self.hedge
        if hedge is not None:
            if not hedge.done():
                hedge.cancel()  # the first request answered first (or failed): the hedge loses
            self.hedge = None
            self.won = None
            self.failed = False

    def result(self) -> ChatResult | None:
        """Called on a CancelledError around the first request: the hedge's reply if the cancel was the hedge's."""
        if self.won is None or self.task is None or self.failed:
            return None
        # Another cancel (a stop) on top of ours still stands: the caller re-raises.
        if self.task.uncancel() > 0:
            return None
        assert self.lease is not None
        self.hedger.pool.on_cancelled(self.lease)
        return self.won

    async def rescue(self) -> ChatResult | None:
        """The first request failed: the reply of its hedge, if one is in flight and answers; else None."""
        if self.hedge is None:
            return None
        self.failed = True
        if not self.hedge.done():
            await asyncio.wait({self.hedge})  # a stop cancels us here, and `end` the hedge
        return self.won


class Hedger:
    """Starts hedges for slow requests once the tail begins; owns every hedge task until it ends."""

    def __init__(
        self,
        pool: ProviderPool,
        *,
        enabled: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.pool = pool
        self.enabled = enabled
        self.clock = clock
        #: The requests in flight (each worker's record, between its `begin` and `end`).
        self.flights: set[HedgedRequest] = set()
        #: True once the input is drained: slow requests are hedged from then on.
        self.in_tail = False
        self._tasks: asyncio.TaskGroup | None = None

    def attach(self, tasks: asyncio.TaskGroup) -> None:
        """Hedges run in the run's task group (a bug in one fails the run, as a worker's would)."""
        self._tasks = tasks

    def flight(self) -> HedgedRequest | None:
        """The record of the calling task's requests (one per worker); None when hedging is off."""
        if not self.enabled:
            return None
        return HedgedRequest(self, asyncio.current_task())

    def begin_tail(self) -> None:
        """The input is drained: arm a hedge timer for every request in flight (idempotent)."""
        if self.in_tail or not self.enabled:
            return
        self.in_tail = True
        for flight in self.flights:
            self.arm(flight)

    def arm(self, flight: HedgedRequest) -> None:
        """Time a hedge for `flight` from its provider's p99 (nothing while too few replies say what is slow)."""
        assert flight.lease is not None
        p99, samples = self.pool.latency_p99(flight.lease.provider)
        delay = hedge_delay(p99, samples)
        if delay is None or flight.timer is not None:
            return
        loop = asyncio.get_running_loop()
        flight.timer = loop.call_at(loop.time() + max(0.0, flight.sent_at + delay - self.clock()), self._fire, flight)

    def _fire(self, flight: HedgedRequest) -> None:
        flight.timer = None
        if flight not in self.flights or flight.hedge is not None or self._tasks is None or flight.lease is None:
            return
        first = flight.lease.provider
        others = [p for p in flight.candidates if p != first]
        lease = self.pool.try_acquire([*others, first])
        if lease is None:
            return  # nobody has room now: the first request goes on alone
        flight.hedge = self._tasks.create_task(self._hedge(flight, lease))

    async def _hedge(self, flight: HedgedRequest, lease: Lease) -> None:
        provider = lease.provider
        send = flight.send
        assert send is not None
        self.pool.on_hedge(provider)
        started = time.monotonic()
        try:
            result = await send(provider)
        except APIError as exc:
            self.pool.on_failure(lease, exc, time.monotonic() - started)
            return  # the first request goes on; this one changes nothing for the row
        except HfbatchError:
            return  # not sent (the budget is spent): the first request goes on
        except asyncio.CancelledError:
            self.pool.on_cancelled(lease)
            raise
        finally:
            self.pool.release(lease)
        result.latency = time.monotonic() - started
        self.pool.on_success(lease, result)
        # Still the same request's hedge (`end` cancels a hedge, and the cancel lands at the await above).
        if flight in self.flights and flight.task is not None:
            self.pool.on_hedge_won(provider)
            flight.won = result
            if not flight.failed:
                flight.task.cancel()  # the first request is still in flight: it loses
