"""The report page: one self-contained HTML document (inline CSS and SVG, no scripts, no network)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from hfbatch import __version__
from hfbatch.report import sections, tables
from hfbatch.report.context import Context, build_context, dig
from hfbatch.report.text import esc, fmt_time

__all__ = ["render_report"]

# No script may run and nothing may be fetched, even if some data slipped past escaping.
_CSP = "default-src 'none'; style-src 'unsafe-inline'"

_CSS = """
:root{--ink:#1d232b;--muted:#5b6573;--line:#dde2e8;--soft:#f4f6f8;--accent:#0072B2}
*{box-sizing:border-box}
body{margin:0;background:#fff;color:var(--ink);font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,
"Helvetica Neue",Arial,sans-serif;-webkit-font-smoothing:antialiased}
main{max-width:1060px;margin:0 auto;padding:28px 32px 48px}
header{border-bottom:1px solid var(--line);padding-bottom:16px;margin-bottom:8px}
h1{font-size:24px;margin:0 0 4px;font-weight:650;letter-spacing:-.01em;word-break:break-word}
h2{font-size:17px;margin:36px 0 10px;font-weight:650}
h3{font-size:13px;margin:16px 0 6px;font-weight:600;color:var(--muted)}
.meta{color:var(--muted);font-size:13.5px;margin:0}
.meta span+span:before{content:"·";margin:0 8px;color:#aab}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(190px,1fr));gap:12px;margin-top:18px}
.card{border:1px solid var(--line);border-radius:8px;padding:12px 14px;background:#fff}
.card.wide{grid-column:span 2}
.card .label{font-size:12px;text-transform:uppercase;letter-spacing:.06em;color:var(--muted)}
.card .value{font-size:24px;font-weight:650;font-variant-numeric:tabular-nums;margin-top:2px;word-break:break-word}
.card .sub{font-size:12.5px;color:var(--muted)}
.status .value{font-size:20px}
.status-finished{border-left:5px solid #009E73}
.status-running{border-left:5px solid #0072B2}
.status-finished-with-problems,.status-stale{border-left:5px solid #D55E00}
.status-unknown{border-left:5px solid #999}
.status-detail{color:var(--muted);font-size:13.5px;margin:10px 0 0}
.lede,.note{color:var(--muted);font-size:13.5px;margin:4px 0 8px}
.note.no-chart{border:1px dashed var(--line);border-radius:8px;padding:14px 16px;background:var(--soft)}
.pair{display:grid;grid-template-columns:1fr 1fr;gap:24px}
@media (max-width:800px){.pair{grid-template-columns:1fr}}
svg.chart{display:block;width:100%;height:auto;font-size:12px;font-family:inherit;overflow:visible}
svg.chart text{fill:#3b4450}
svg.chart .axis-label{fill:var(--muted);font-size:12px}
svg.chart .grid{stroke:#e9ecf0;stroke-width:1}
svg.chart .baseline{stroke:#9aa3ad;stroke-width:1}
svg.chart .tick{stroke:#9aa3ad}
svg.chart .area{fill-opacity:.78;stroke:none}
svg.chart .edge{fill:none;stroke-width:1.2}
svg.chart .hist-fill{fill-opacity:.12;stroke:none}
svg.chart .hist-line{fill:none;stroke-width:2}
svg.chart .inflight{fill-opacity:.3;stroke:none}
svg.chart .limit{fill:none;stroke-width:2}
svg.chart .marker line{stroke:#5b6573;stroke-dasharray:4 3}
svg.chart .marker text{fill:var(--muted);font-size:11px}
svg.chart .panel-title{font-weight:650;font-size:13px;fill:var(--ink)}
svg.chart .caption{font-weight:400;fill:var(--muted)}
svg.chart .unknown{fill:var(--muted);font-style:italic}
svg.chart .hover rect{fill:transparent}
svg.chart .hover rect:hover{fill:rgba(0,0,0,.06)}
svg.chart .legend text{fill:#3b4450}
.table-wrap{overflow-x:auto;border:1px solid var(--line);border-radius:8px}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{padding:6px 9px;text-align:left;border-bottom:1px solid var(--line);vertical-align:top}
thead th{background:var(--soft);font-weight:600;color:#3b4450;font-size:12px}
tbody tr:last-child th,tbody tr:last-child td{border-bottom:none}
th.num{text-align:right}
tbody th{white-space:nowrap}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr.total th,tr.total td{font-weight:650;background:#fafbfc}
td.message{word-break:break-word;font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12px}
table.settings th{width:28%;font-weight:500;color:#3b4450;font-family:ui-monospace,SFMono-Regular,Menlo,monospace}
table.settings td{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12px;word-break:break-all}
.swatch{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:7px}
footer{margin-top:40px;padding-top:12px;border-top:1px solid var(--line);color:var(--muted);font-size:12.5px}
@media print{main{padding:0}h2{break-after:avoid}svg.chart,.card,table{break-inside:avoid}}
"""


def _section(sid: str, heading: str, body: str) -> str:
    return f'<section id="{sid}"><h2>{esc(heading)}</h2>{body}</section>'


def _guard(ctx: Context, name: str, part: Callable[[Context], str]) -> str:
    """One part of the page; a part that breaks on odd data becomes a note instead of breaking the page."""
    try:
        return part(ctx)
    except (ArithmeticError, AttributeError, KeyError, IndexError, TypeError, ValueError) as exc:
        return f'<p class="note">Could not draw the {esc(name)}: {esc(type(exc).__name__)}.</p>'


def render_report(
    stats: dict[str, Any] | None,
    timeline: Iterable[Any],
    errors: Iterable[Any],
    *,
    title: str,
    now: float | None = None,
) -> str:
    """The HTML report of a run; `timeline` and `errors` are read once, one record at a time."""
    ctx = build_context(stats, timeline, errors, now)
    model = dig(ctx.stats, "model")
    meta = [f"<span>status: {esc(ctx.status.label)}</span>"]
    if model is not None:
        meta.insert(0, f"<span>model {esc(model)}</span>")
    if ctx.timeline.last_t is not None:
        meta.append(f"<span>last snapshot {esc(fmt_time(ctx.timeline.last_t))}</span>")
    if now is not None:
        meta.append(f"<span>report made {esc(fmt_time(now))}</span>")
    parts = [
        _section("summary", "Summary", _guard(ctx, "summary", tables.summary_cards)),
        _section("providers", "Providers", _guard(ctx, "provider table", tables.provider_table)),
        _section("throughput", "Throughput over time", _guard(ctx, "throughput", sections.throughput_section)),
        _section("latency", "Latency", _guard(ctx, "latency", sections.latency_section)),
        _section("failures", "Failures over time", _guard(ctx, "failures", sections.failures_section)),
        _section("limits", "429s and limits", _guard(ctx, "limits", sections.limits_section)),
        '<div class="pair">'
        + _section("cost", "Cost per provider", _guard(ctx, "cost", sections.cost_section))
        + _section("finish-reasons", "Finish reasons", _guard(ctx, "finish reasons", sections.finish_section))
        + "</div>",
        _section("errors", "Most frequent errors", _guard(ctx, "error table", tables.error_table)),
        _section("runs", "Run history", _guard(ctx, "run history", tables.runs_table)),
        _section("settings", "Settings", _guard(ctx, "settings", tables.settings_table)),
    ]
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
        '<meta name="referrer" content="no-referrer">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)} · hfbatch report</title><style>{_CSS}</style></head>"
        f'<body><main><header><h1>{esc(title)}</h1><p class="meta">{"".join(meta)}</p></header>'
        + "".join(parts)
        + f"<footer>Made by hfbatch {esc(__version__)} report. A self-contained page: no scripts, nothing "
        "loaded from the network; hover a chart for exact numbers.</footer></main></body></html>\n"
    )
