"""The report's text parts: summary cards, the provider table, errors, run history and settings."""

from __future__ import annotations

import json
from typing import Any

from hfbatch.report.context import Context, dig
from hfbatch.report.text import (
    esc,
    fmt_cost,
    fmt_duration,
    fmt_int,
    fmt_ms,
    fmt_time,
    is_secret_key,
    mask,
    num,
    unix_time,
)

__all__ = ["error_table", "provider_table", "runs_table", "settings_table", "summary_cards"]

#: Failure classes in the order the provider table shows them (others follow, by name).
KIND_ORDER = ("401", "402", "429", "4xx", "5xx", "timeout", "connection", "malformed", "empty", "invalid_output")
TOP_MESSAGES = 15
MAX_RUNS_SHOWN = 50
MAX_SETTINGS = 120
_NUM = ' class="num"'
_RUN_NUMBERS = frozenset({5, 6, 7, 8, 9})  # columns of the run history that hold numbers


def _raw(value: float) -> str:
    """A number for a data- attribute: integers without a fraction or exponent."""
    return str(int(value)) if value.is_integer() else repr(value)


def _card(stat: str, label: str, value: Any, shown: str, sub_html: str = "") -> str:
    """A summary card; `sub_html` is markup the caller has escaped."""
    raw = num(value)
    data_value = "" if raw is None else f' data-value="{_raw(raw)}"'
    sub_html = f'<div class="sub">{sub_html}</div>' if sub_html else ""
    return (
        f'<div class="card" data-stat="{stat}"{data_value}><div class="label">{esc(label)}</div>'
        f'<div class="value">{esc(shown)}</div>{sub_html}</div>'
    )


def _totals(ctx: Context) -> dict[str, Any]:
    """The summary's numbers: from the stats, or from the timeline while the first run is going."""
    s = ctx.stats
    if s is not None:
        overall = dig(s, "overall") or {}
        cost = overall.get("cost_usd", s.get("cost_usd"))
        return {
            "rows_done": dig(s, "rows", "done"),
            "rows_failed": dig(s, "rows", "failed"),
            "rows_bad": dig(s, "rows", "bad_input"),
            "rows_skipped": dig(s, "rows", "skipped_already_done"),
            "rows_seen": dig(s, "rows", "seen"),
            "wall_time_s": s.get("wall_time_s"),
            "rows_per_second": s.get("rows_per_second"),
            "requests": overall.get("requests"),
            "retries": overall.get("retries"),
            "failovers": overall.get("failovers_out"),
            "prompt_tokens": overall.get("prompt_tokens"),
            "completion_tokens": overall.get("completion_tokens"),
            "cost_usd": cost,
        }
    t = ctx.timeline.totals()
    o = t["overall"]
    wall = ctx.timeline.active_seconds if ctx.timeline.segments else None
    done = t["rows_done"]
    return {
        "rows_done": done,
        "rows_failed": t["rows_failed"],
        "rows_per_second": done / wall if wall else None,
        "wall_time_s": wall,
        "requests": o.get("requests"),
        "prompt_tokens": o.get("prompt_tokens"),
        "completion_tokens": o.get("completion_tokens"),
        "cost_usd": o.get("cost_usd"),
    }


def summary_cards(ctx: Context) -> str:
    """The run at a glance: status, rows, time, requests, tokens, cost, version."""
    t = _totals(ctx)
    st = ctx.status
    version = dig(ctx.stats, "hfbatch_version")
    sub = [] if st.exit_code is None else [f"exit code {st.exit_code}"]
    sub.append(f'hfbatch <span data-stat="hfbatch_version">{esc("unknown" if version is None else version)}</span>')
    cards = [
        f'<div class="card wide status status-{st.state}" data-stat="status" data-state="{st.state}"'
        + ("" if st.exit_code is None else f' data-exit-code="{st.exit_code}"')
        + f'><div class="label">Status</div><div class="value">{esc(st.label)}</div>'
        f'<div class="sub">{" · ".join(sub)}</div></div>'
    ]
    seen = f"of {fmt_int(t['rows_seen'])} seen" if num(t.get("rows_seen")) is not None else ""
    skipped = num(t.get("rows_skipped"))
    if skipped:
        seen += f"; {fmt_int(skipped)} done before"
    cards.append(_card("rows_done", "Rows done", t["rows_done"], fmt_int(t["rows_done"]), esc(seen)))
    bad = num(t.get("rows_bad"))
    failed_sub = esc("in the errors file")
    if ctx.stats is not None:
        bad_value = "" if bad is None else f' data-value="{_raw(bad)}"'
        failed_sub = f'+ <span data-stat="rows_bad"{bad_value}>{esc(fmt_int(bad))}</span> bad input rows (never sent)'
    cards.append(_card("rows_failed", "Rows failed", t["rows_failed"], fmt_int(t["rows_failed"]), failed_sub))
    rps = num(t.get("rows_per_second"))
    rate = "" if rps is None else esc(f"{rps:,.1f} rows/s")
    cards.append(_card("wall_time_s", "Wall time", t["wall_time_s"], fmt_duration(t["wall_time_s"]), rate))
    extra = []
    if num(t.get("retries")) is not None:
        extra.append(f"{fmt_int(t['retries'])} retries")
    if num(t.get("failovers")) is not None:
        extra.append(f"{fmt_int(t['failovers'])} fail-overs")
    cards.append(_card("requests", "Requests", t["requests"], fmt_int(t["requests"]), esc(", ".join(extra))))
    p, c = num(t.get("prompt_tokens")), num(t.get("completion_tokens"))
    tokens = None if p is None and c is None else (p or 0) + (c or 0)
    split = esc(f"{fmt_int(p)} prompt + {fmt_int(c)} completion")
    cards.append(_card("tokens", "Tokens", tokens, fmt_int(tokens), split))
    cards.append(_card("cost_usd", "Cost", t["cost_usd"], fmt_cost(t["cost_usd"]), "USD, billed replies"))
    return f'<div class="cards">{"".join(cards)}</div><p class="status-detail">{esc(st.detail)}</p>'


def _kinds(rows: list[tuple[str, dict[str, Any]]]) -> list[str]:
    present = {str(k) for _, s in rows for k, v in (dig(s, "failures") or {}).items() if num(v) and num(v) != 0}
    known = [k for k in KIND_ORDER if k in present]
    return known + sorted(present - set(known))[:8]


def _table(ctx: Context, cls: str, head: list[str], rows: list[tuple[str, list[str]]]) -> str:
    """A table with one row per provider (name, swatch) and numeric cells already formatted."""
    out = [f'<div class="table-wrap"><table class="{cls}"><thead><tr>']
    out += [f'<th scope="col"{_NUM if i else ""}>{esc(h)}</th>' for i, h in enumerate(head)]
    out.append("</tr></thead><tbody>")
    for name, values in rows:
        total = name == "(all)"
        swatch = "" if total else f'<span class="swatch" style="background:{ctx.color(name)}"></span>'
        cells = [f'<th scope="row" title="{esc(name)}">{swatch}{esc(name, 32)}</th>']
        cells += [f'<td class="num">{esc(v)}</td>' for v in values]
        row_class = ' class="total"' if total else ""
        out.append(f'<tr{row_class} data-series="{esc(name)}">{"".join(cells)}</tr>')
    out.append("</tbody></table></div>")
    return "".join(out)


def provider_table(ctx: Context) -> str:
    """Two tables with a row per provider and one for all: requests and failures; latency, tokens, cost."""
    providers = dig(ctx.stats, "providers")
    if not isinstance(providers, dict) or not providers:
        return '<p class="note">No per-provider stats yet.</p>'
    rows = [(str(n), s) for n, s in providers.items() if isinstance(s, dict)]
    overall = dig(ctx.stats, "overall")
    if isinstance(overall, dict):
        rows.append(("(all)", overall))
    kinds = _kinds(rows)
    benched = any(num(s.get("breaker_trips")) for _, s in rows)
    head = ["provider", "requests", "ok", *kinds, "retries", "fail-overs", *(["benched"] if benched else [])]
    counts = []
    for name, s in rows:
        values = [s.get("requests"), s.get("successes"), *(dig(s, "failures", k) or 0 for k in kinds)]
        values += [s.get("retries"), s.get("failovers_out"), *([s.get("breaker_trips")] if benched else [])]
        counts.append((name, [fmt_int(v) if v is not None else "-" for v in values]))
    money = [
        (
            name,
            [fmt_ms(dig(s, "latency_s", q)) for q in ("p50", "p95", "p99")]
            + [fmt_int(s.get("prompt_tokens")), fmt_int(s.get("completion_tokens")), fmt_cost(s.get("cost_usd"))],
        )
        for name, s in rows
    ]
    head2 = ["provider", "p50 ms", "p95 ms", "p99 ms", "prompt tokens", "completion tokens", "cost"]
    return (
        "<h3>Requests and failures</h3>"
        + _table(ctx, "providers", head, counts)
        + "<h3>Latency, tokens and cost</h3>"
        + _table(ctx, "providers", head2, money)
    )


def error_table(ctx: Context) -> str:
    """The most frequent error messages, grouped by class and message, with counts."""
    top = ctx.errors
    if top.total == 0:
        return '<p class="note">No errors recorded: the errors file is empty or absent.</p>'
    kinds = ", ".join(f"{esc(k)} {n:,}" for k, n in top.by_kind.most_common(12))
    out = [f'<p class="lede">{top.total:,} error records; by class: {kinds}.']
    if top.dropped:
        out.append(
            " There were too many distinct messages to count them all: rarer ones were dropped, "
            "and a count marked ≥ may be low."
        )
    out.append('</p><div class="table-wrap"><table class="errors"><thead><tr>')
    out.append(f'<th scope="col"{_NUM}>count</th>')
    out += [f'<th scope="col">{h}</th>' for h in ("class", "status", "message", "providers", "e.g. row")]
    out.append("</tr></thead><tbody>")
    for g in top.top(TOP_MESSAGES):
        count = f"{g.count:,}" if g.exact else f"≥ {g.count:,}"
        providers = ", ".join(g.providers) + (", …" if g.more_providers else "")
        out.append(
            f'<tr data-kind="{esc(g.kind)}"><td class="num">{count}</td><td>{esc(g.kind)}</td><td>{esc(g.status)}</td>'
            f'<td class="message">{esc(g.message)}</td><td>{esc(providers)}</td><td>{esc(g.example_id, 40)}</td></tr>'
        )
    out.append("</tbody></table></div>")
    return "".join(out)


def _flat(data: Any, prefix: str = "", depth: int = 0) -> list[tuple[str, str]]:
    """Settings as (dotted key, shown value) pairs; secrets hidden, everything else masked."""
    out: list[tuple[str, str]] = []
    for key, value in data.items() if isinstance(data, dict) else ():
        name = f"{prefix}{key}"
        if is_secret_key(str(key)):
            out.append((name, "(hidden)"))
        elif isinstance(value, dict) and depth < 3:
            out.extend(_flat(value, name + ".", depth + 1))
        elif value is None:
            out.append((name, "not set"))
        else:
            shown = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
            out.append((name, mask(shown)))
        if len(out) >= MAX_SETTINGS:
            break
    return out[:MAX_SETTINGS]


def settings_table(ctx: Context) -> str:
    """The job's settings and where it read and wrote, as recorded in the stats."""
    s = ctx.stats or {}
    job = _flat({k: s.get(k) for k in ("model", "input", "output", "provider_order") if s.get(k) is not None})
    rows = job + [kv for kv in _flat(s.get("settings")) if kv not in job]
    if not rows:
        return '<p class="note">No settings recorded.</p>'
    body = "".join(f'<tr><th scope="row">{esc(k)}</th><td>{esc(v)}</td></tr>' for k, v in rows)
    return f'<div class="table-wrap"><table class="settings"><tbody>{body}</tbody></table></div>'


def _changes(before: Any, after: Any) -> str:
    if not isinstance(before, dict) or not isinstance(after, dict):
        return ""
    a, b = dict(_flat(before)), dict(_flat(after))
    changed = [f"{k}: {a.get(k, '-')} → {b.get(k, '-')}" for k in sorted(a.keys() | b.keys()) if a.get(k) != b.get(k)]
    return "; ".join(changed)


def runs_table(ctx: Context) -> str:
    """Every run into this output, oldest first, with what changed in its settings."""
    runs = [r for r in (dig(ctx.stats, "runs") or []) if isinstance(r, dict)]
    rows = []
    for i, r in enumerate(runs):
        start, end = unix_time(r.get("started_at")), unix_time(r.get("ended_at"))
        took = None if start is None or end is None else end - start
        tokens = (num(r.get("prompt_tokens")) or 0) + (num(r.get("completion_tokens")) or 0)
        code = r.get("exit_code")
        rows.append(
            [
                str(i + 1) + (f" (shard {r['shard']})" if r.get("shard") is not None else ""),
                fmt_time(r.get("started_at")),
                fmt_duration(took),
                "unknown" if r.get("hfbatch_version") is None else str(r.get("hfbatch_version")),
                "-" if code is None else str(code),
                fmt_int(r.get("rows_done")),
                fmt_int(r.get("rows_failed")),
                fmt_int(r.get("requests")),
                fmt_int(tokens),
                fmt_cost(r.get("cost_usd")),
                _changes(runs[i - 1].get("settings"), r.get("settings")) if i else "",
            ]
        )
    if ctx.status.state in ("running", "stale") and ctx.timeline.segments:
        seg = max(ctx.timeline.segments, key=lambda s: s.start)
        rows.append(
            [
                f"{len(runs) + 1} (now)",
                fmt_time(seg.start),
                fmt_duration(seg.elapsed),
                "",
                "running",
                fmt_int(seg.rows_done),
                fmt_int(seg.rows_failed),
                "",
                "",
                "",
                "",
            ]
        )
    if not rows:
        return '<p class="note">No run history in the stats.</p>'
    note = ""
    if len(rows) > MAX_RUNS_SHOWN:
        note = f'<p class="note">{len(rows) - MAX_RUNS_SHOWN:,} older runs not shown.</p>'
        rows = rows[-MAX_RUNS_SHOWN:]
    head = ["run", "started", "took", "hfbatch", "exit", "rows done", "failed", "requests", "tokens", "cost"]
    head.append("settings changed")
    out = [note, '<div class="table-wrap"><table class="runs"><thead><tr>']
    out += [f'<th scope="col"{_NUM if i in _RUN_NUMBERS else ""}>{h}</th>' for i, h in enumerate(head)]
    out.append("</tr></thead><tbody>")
    for row in rows:
        cells = [
            f'<td class="num">{esc(v)}</td>' if i in _RUN_NUMBERS else f"<td>{esc(v)}</td>" for i, v in enumerate(row)
        ]
        out.append(f"<tr>{''.join(cells)}</tr>")
    out.append("</tbody></table></div>")
    return "".join(out)
