"""What happens during a run, as events: dicts handed to an `on_event` callback, never printed here.

`run_job(spec, on_event=...)` passes the callback to the provider pool, which emits the
provider events where it decides them, and to the budget (`budget_reached`), and emits
`run_end` itself; `hfbatch run` writes each event on stderr as
one line of text (`plain_line`) or, with `--log-format json`, one JSON object (`json_line`).
Every event has:

- `event`: its kind (below); `level`: `info`, `warning` or `error`;
- `time`: when it happened, ISO 8601 in UTC to the millisecond;
- `message`: one readable sentence: the plain line without its `hfbatch: ` prefix.

The kinds, when each happens, and its other keys:

- `progress`: every progress interval of the CLI, and at the end. rows_done, rows_failed,
  rows_bad, rows_skipped, rows_total, elapsed_s, rows_per_s, eta_s, window_s, and
  rate_limited: {provider: its 429s in the last window_s seconds} (providers with none left out).
- `provider_out`: a provider is done for the run (402, 403, 404, a model it does not serve, a
  Retry-After beyond the longest pause, too many breaker trips). provider, kind, status, reason.
- `breaker_trip`: a provider failed `breaker_threshold` times in a row. provider, trips (in a
  row), cooldown_s (null when it is out: a `provider_out` follows), last_error.
- `rate_limit`: a provider's learned limits moved (looked at every `RATE_LIMIT_CHECK_INTERVAL`
  s). provider, ceiling (requests in flight), rate_rps (requests per second), before:
  {ceiling, rate_rps}; null is "none learned"; cause: what the capacity code put the
  provider's 429s since the last look down to (`concurrency`, `requests`, `tokens`), null
  when none was (limits rising; 429s put down to chance move no limit).
- `budget_reached`: a budget cap (--max-cost, --max-requests, --max-tokens-total) stops the run,
  once. reason, spent_usd, requests (sent), tokens (billed), caps: {max_cost, max_requests,
  max_tokens_total} (null: none).
- `run_end`: the run is over. exit_code, reason (why it stopped early, or null), rows: {done,
  failed, bad_input, skipped}, wall_time_s, rows_per_s, cost_usd.
- `stopping`: the CLI got SIGINT or SIGTERM. now (true on the second signal).
- `error`: the CLI stops on an error (`--log-format json` only; plain prints `hfbatch: error: ...`). exit_code.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable, Mapping
from typing import Any

from hfbatch.errors import APIError
from hfbatch.stats import RunStats

__all__ = [
    "ERROR",
    "INFO",
    "RATE_LIMIT_CHECK_INTERVAL",
    "WARNING",
    "Event",
    "OnEvent",
    "breaker_trip",
    "budget_reached",
    "json_line",
    "make",
    "plain_line",
    "progress",
    "provider_out",
    "rate_limit_changes",
    "run_end",
    "stopping",
]

Event = dict[str, Any]
OnEvent = Callable[[Event], None]

#: Seconds between two looks at the providers' learned limits: a limit that moves every few
#: requests (a probe up, a 429 down) makes one event per provider per interval, not a flood.
RATE_LIMIT_CHECK_INTERVAL = 10.0
#: A learned pace that moved by less than this fraction is not news.
RATE_CHANGE_FRACTION = 0.1

INFO, WARNING, ERROR = "info", "warning", "error"


def make(event: str, message: str, *, level: str = INFO, **fields: Any) -> Event:
    """An event of kind `event`, stamped now, with its readable `message` and its own fields."""
    now = datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return {"event": event, "level": level, "time": now, "message": message, **fields}


def plain_line(event: Event) -> str:
    """The event as one line of text."""
    return f"hfbatch: {event['message']}"


def json_line(event: Event) -> str:
    """The event as one line of JSON (UTF-8, no spaces)."""
    return json.dumps(event, ensure_ascii=False, separators=(",", ":"), default=str)


# --- provider events (emitted by the provider pool) -------------------------------------------------


def provider_out(provider: str, error: APIError) -> Event:
    """`provider` is out for the rest of the run, because of `error`."""
    return make(
        "provider_out",
        f"provider {provider} is out for this run: {error}",
        level=WARNING,
        provider=provider,
        kind=error.kind.value,
        status=error.status,
        reason=error.message,
    )


def breaker_trip(provider: str, trips: int, cooldown_s: float | None, error: APIError) -> Event:
    """`provider`'s circuit breaker tripped (`trips` in a row); benched `cooldown_s`, None when it is now out."""
    benched = f"benched for {cooldown_s:g}s" if cooldown_s is not None else "no more cool-downs"
    return make(
        "breaker_trip",
        f"provider {provider}: circuit breaker tripped ({trips} in a row, {benched}); last error: {error}",
        level=WARNING,
        provider=provider,
        trips=trips,
        cooldown_s=cooldown_s,
        last_error=str(error),
    )


def _moved(before: float | None, after: float | None) -> bool:
    """Whether a learned pace moved enough to tell (appearing or going away always is)."""
    if before is None or after is None:
        return before is not after
    return abs(after - before) > RATE_CHANGE_FRACTION * before


_CAUSES = {"concurrency": "requests in flight", "requests": "the request pace", "tokens": "the token pace"}


def _describe(ceiling: Any, rate: Any) -> str:
    cap = "no cap learned" if ceiling is None else f"at most {ceiling} in flight"
    pace = "unpaced" if rate is None else f"{rate:.3g} requests/s"
    return f"{cap}, {pace}"


def rate_limit_changes(
    before: Mapping[str, Mapping[str, Any]],
    after: Mapping[str, Mapping[str, Any]],
    blamed: Mapping[str, str] | None = None,
) -> list[Event]:
    """A `rate_limit` event per provider whose learned cap or pace moved between two `limits_now()` views.

    `blamed` names, per provider, the limit its 429s since the last look were put down to
    (`hfbatch.capacity.Blame`: concurrency, requests, tokens); none when the limits rose.
    """
    blamed = blamed or {}
    events = []
    for provider, now in after.items():
        was = before.get(provider, {})
        ceiling, rate = now.get("ceiling"), now.get("rate_rps")
        old_ceiling, old_rate = was.get("ceiling"), was.get("rate_rps")
        if ceiling == old_ceiling and not _moved(old_rate, rate):
            continue
        lowered = (ceiling is not None and (old_ceiling is None or ceiling < old_ceiling)) or (
            rate is not None and (old_rate is None or rate < old_rate)
        )
        cause = blamed.get(provider)
        why = f"; its 429s were put down to {_CAUSES.get(cause, cause)}" if cause else ""
        events.append(
            make(
                "rate_limit",
                f"provider {provider}: learned limits now {_describe(ceiling, rate)} "
                f"(were {_describe(old_ceiling, old_rate)}){why}",
                level=WARNING if lowered else INFO,
                provider=provider,
                ceiling=ceiling,
                rate_rps=rate,
                before={"ceiling": old_ceiling, "rate_rps": old_rate},
                cause=cause,
            )
        )
    return events


# --- run events ------------------------------------------------------------------------------------


def budget_reached(why: str, spent_usd: float, requests: int, tokens: int, caps: Mapping[str, float | None]) -> Event:
    """A budget cap (`why`) stops the run: no new row is sent, rows in flight finish; a larger budget resumes."""
    return make(
        "budget_reached",
        f"budget reached: {why}; letting requests in flight finish, then stopping (exit 5; rerun with a "
        "larger budget to go on)",
        level=WARNING,
        reason=why,
        spent_usd=spent_usd,
        requests=requests,
        tokens=tokens,
        caps=dict(caps),
    )


def run_end(stats: Mapping[str, Any], exit_code: int, reason: str | None) -> Event:
    """The run is over: its exit code, why it stopped early if it did, and its counts (from the stats dict)."""
    rows = stats["rows"]
    counts = f"{rows['done']} done, {rows['failed']} failed, {rows['bad_input']} bad input"
    message = f"run ended with exit code {exit_code} ({counts})" + (f": {reason}" if reason else "")
    return make(
        "run_end",
        message,
        level=INFO if exit_code == 0 else WARNING,
        exit_code=exit_code,
        reason=reason,
        rows={
            "done": rows["done"],
            "failed": rows["failed"],
            "bad_input": rows["bad_input"],
            "skipped": rows["skipped_already_done"],
        },
        wall_time_s=stats.get("wall_time_s"),
        rows_per_s=stats.get("rows_per_second"),
        cost_usd=stats.get("overall", {}).get("cost_usd"),
    )


def stopping(now: bool, grace: float) -> Event:
    """A stop was asked for: the first drains rows in flight (up to `grace` s), a second stops at once."""
    message = (
        "stopping now"
        if now
        else f"stopping: letting requests in flight finish (up to {grace:g}s); press Ctrl-C again to stop now"
    )
    return make("stopping", message, level=WARNING, now=now)


def progress(stats: RunStats, elapsed: float, rate_limited: Mapping[str, int], window: float) -> Event:
    """Where the run is: rows, rate, time left when the input's size is known, and who answered 429.

    `rate_limited` counts each provider's 429s over the last `window` seconds (since the last progress event).
    """
    processed = stats.rows_done + stats.rows_failed
    rate = processed / elapsed if elapsed > 0 else 0.0
    eta = _eta(stats, rate)
    message = (
        f"{stats.rows_done} done, {stats.rows_failed} failed, {stats.rows_bad} bad input, "
        f"{stats.rows_skipped} already done; {rate:.1f} rows/s; {elapsed:.0f}s elapsed"
        + (f", about {eta:.0f}s left" if eta is not None else "")
    )
    busy = {p: n for p, n in rate_limited.items() if n}
    if busy:
        message += "; " + ", ".join(f"{p}: {n} 429s" for p, n in busy.items()) + f" in the last {window:.0f}s"
    return make(
        "progress",
        message,
        rows_done=stats.rows_done,
        rows_failed=stats.rows_failed,
        rows_bad=stats.rows_bad,
        rows_skipped=stats.rows_skipped,
        rows_total=stats.rows_total,
        elapsed_s=round(elapsed, 3),
        rows_per_s=round(rate, 3),
        eta_s=None if eta is None else round(eta, 1),
        rate_limited=busy,
        window_s=round(window, 3),
    )


def _eta(stats: RunStats, rate: float) -> float | None:
    """Seconds left at the current rate, when the input's size is known."""
    if stats.rows_total is None or rate <= 0:
        return None
    left = stats.rows_total - stats.rows_done - stats.rows_failed - stats.rows_bad - stats.rows_skipped
    return max(0, left) / rate
