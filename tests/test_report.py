"""The HTML report of a run: charts, numbers equal to the stats, escaping, masking, partial and huge inputs."""

from __future__ import annotations

import copy
import datetime
import json
import re
import tracemalloc
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import hfbatch.report.timeline as timeline_module
from hfbatch.report import build_report, render_report, report_path
from tests.report_helpers import START, Page, make_errors, make_run_data

CHARTS = ("chart-throughput", "chart-latency", "chart-failures", "chart-limits", "chart-cost", "chart-finish-reasons")


def render(stats: dict[str, Any] | None, timeline: Any, errors: Any = (), **kw: Any) -> tuple[str, Page]:
    """Render a report and parse it."""
    html = render_report(stats, timeline, errors, title=kw.pop("title", "results.jsonl"), **kw)
    assert "Could not draw" not in html
    return html, Page(html)


def test_every_chart_has_its_series() -> None:
    """Each chart is an accessible SVG with one series per provider, failure class or finish reason."""
    stats, timeline = make_run_data()
    _, page = render(stats, timeline, make_errors(50))
    expected = {
        "chart-throughput": {"alpha", "beta"},
        "chart-latency": {"alpha", "beta"},
        "chart-failures": {"429", "5xx", "timeout"},
        "chart-limits": {"alpha", "beta"},
        "chart-cost": {"alpha", "beta"},
        "chart-finish-reasons": {"stop", "length"},
    }
    for chart_id, names in expected.items():
        svg = page.svgs[chart_id]
        assert svg["role"] == "img" and len(svg["aria-label"]) > 20
        assert "chart" in svg["class"].split()
        assert set(page.series[chart_id]) == names, chart_id
    assert not page.notes


def test_summary_numbers_equal_the_stats() -> None:
    """The summary cards and the provider table show the stats file's numbers."""
    stats, timeline = make_run_data()
    _, page = render(stats, timeline)
    o = stats["overall"]
    assert page.value("rows_done") == str(stats["rows"]["done"])
    assert page.value("rows_failed") == str(stats["rows"]["failed"])
    assert page.value("rows_bad") == "3"
    assert page.value("requests") == str(o["requests"])
    assert page.value("tokens") == str(o["prompt_tokens"] + o["completion_tokens"])
    assert float(page.value("cost_usd") or "nan") == o["cost_usd"]
    assert float(page.value("wall_time_s") or "nan") == stats["wall_time_s"]
    assert page.stats["status"]["data-exit-code"] == "0"
    text = page.all_text
    for name in ("alpha", "beta"):
        p = stats["providers"][name]
        assert f"{p['requests']:,}" in text and f"{p['successes']:,}" in text
    assert f"{o['requests']:,}" in text and f"{o['failures']['429']:,}" in text


def test_resumed_run_is_differenced_from_zero() -> None:
    """After a counter reset (a resumed run), throughput still adds up to each provider's successes."""
    stats, timeline = make_run_data(runs=(40.0, 30.0, 20.0))
    html, page = render(stats, timeline)
    for name in ("alpha", "beta"):
        assert f"{name}: {stats['providers'][name]['successes']:,} successes" in html
    assert page.all_text.count("resumed") >= 2
    assert "3 run segment(s)" in page.all_text
    assert "max_cost: 5.0 → 10.0" in page.all_text  # the run history shows what changed


def test_interleaved_shards_are_separate_streams() -> None:
    """A merged timeline whose shards' snapshots interleave counts each shard's progress once."""
    stats0, tl0 = make_run_data(runs=(30.0,), seed=1)
    stats1, tl1 = make_run_data(runs=(30.0,), seed=2)
    merged = sorted([{**r, "shard": "0/2"} for r in tl0] + [{**r, "shard": "1/2"} for r in tl1], key=lambda r: r["t"])
    html, _ = render(None, merged)
    ok = stats0["providers"]["alpha"]["successes"] + stats1["providers"]["alpha"]["successes"]
    assert f"alpha: {ok:,} successes" in html


def test_hostile_text_is_escaped() -> None:
    """Markup in provider names, messages and settings shows as text and never becomes an element."""
    evil = "<script>alert(1)</script>"
    stats, timeline = make_run_data(providers=(evil, 'x" onmouseover="alert(2)'))
    stats["settings"]["note"] = '"><img src=x onerror=alert(3)>'
    stats["finish_reasons"][evil] = 1
    errors = [{"kind": "5xx", "message": "<iframe src=//evil>", "provider": evil, "id": evil}]
    html, page = render(stats, timeline, errors, title=evil)
    assert not page.tags & {"script", "img", "iframe"}
    assert not [k for k, _ in page.attrs if k.startswith("on")]
    assert "<script" not in html.lower()
    assert evil in page.series["chart-throughput"]
    assert evil in page.all_text and "<iframe src=//evil>" in page.all_text


def test_token_shaped_strings_are_masked() -> None:
    """Anything shaped like an HF token is masked, and settings named like secrets are hidden."""
    token = "hf_" + "aBcD1234" * 4
    stats, timeline = make_run_data(providers=(f"prov-{token}", "beta"))
    stats["settings"].update({"token": "plain-secret-value", "api_key": "sk-123", "header": f"Bearer {token}"})
    stats["runs"][0]["settings"]["note"] = token
    errors = [{"kind": "401", "message": f"bad token {token}", "provider": "beta", "id": token}]
    html, page = render(stats, timeline, errors, title=token)
    assert token not in html and "aBcD1234aBcD" not in html
    assert "plain-secret-value" not in html and "sk-123" not in html
    assert "hf_***" in page.all_text and "(hidden)" in page.all_text


def test_running_output_without_stats() -> None:
    """With a timeline but no stats yet, the report says "running" and counts from the timeline."""
    _, timeline = make_run_data(runs=(30.0,))
    _, page = render(None, timeline[:10], now=timeline[9]["t"] + 2)
    assert page.stats["status"]["data-state"] == "running"
    assert page.value("rows_done") == str(timeline[9]["rows_done"])
    assert set(page.series["chart-throughput"]) == {"alpha", "beta"}
    assert "chart-latency" in page.notes  # histograms come with the stats


def test_new_run_after_the_stats_is_running() -> None:
    """Stats from earlier runs plus a timeline segment that began after them: a new run is going."""
    stats, timeline = make_run_data(runs=(30.0, 30.0))
    first_run = copy.deepcopy(stats)
    first_run["runs"] = first_run["runs"][:1]
    for key in ("started_at", "ended_at"):  # the history may give times as ISO 8601 strings
        first_run["runs"][0][key] = datetime.datetime.fromtimestamp(stats["runs"][0][key], datetime.UTC).isoformat()
    _, page = render(first_run, timeline[:20], now=timeline[19]["t"] + 1)
    assert "a new run is going" in page.all_text
    assert "2 (now)" in page.all_text
    assert "2026-01-01 00:00:00 UTC 30.0 s" in page.all_text  # the first run: its start and duration


def test_silent_run_is_flagged_stale() -> None:
    """A run whose last snapshot is long past says it may have been killed."""
    _, timeline = make_run_data(runs=(30.0,))
    _, page = render(None, timeline, now=timeline[-1]["t"] + 3600)
    assert page.stats["status"]["data-state"] == "stale"
    assert "may have been killed" in page.all_text


def test_empty_and_malformed_inputs_render() -> None:
    """No data at all, or data of the wrong shape, renders notes instead of crashing."""
    _, page = render(None, [], [])
    assert page.notes == set(CHARTS)
    assert "no data" in page.all_text
    odd_stats: dict[str, Any] = {
        "rows": "lots",
        "overall": [],
        "providers": {"a": {"failures": None, "latency_histogram": {"buckets": {"x": "y", "3": -1}}}, "b": 7},
        "runs": "none",
        "settings": ["x"],
        "finish_reasons": {"stop": "many"},
        "exit_code": "zero",
    }
    odd_timeline = ["text", 3, None, {"t": "soon"}, {"t": START, "providers": {"a": {"successes": "x"}}}, {"t": START}]
    _, page = render(odd_stats, odd_timeline, [None, "x", {"kind": None}])
    assert "chart-cost" in page.notes and "chart-latency" in page.notes


def test_only_the_unknown_cost_is_unknown() -> None:
    """A provider without a price shows "unknown"; the chart still draws the known ones."""
    stats, timeline = make_run_data(providers=("alpha", "beta", "gamma"))
    html, page = render(stats, timeline)
    assert set(page.series["chart-cost"]) == {"alpha", "beta", "gamma"}
    assert re.search(r'data-series="gamma"><title>gamma: unknown', html)


def test_page_is_self_contained() -> None:
    """No script, stylesheet link, font, image or other URL: the page loads nothing."""
    stats, timeline = make_run_data()
    html, page = render(stats, timeline, make_errors(20))
    assert not page.tags & {"script", "link", "img", "iframe", "object", "embed"}
    assert re.findall(r"https?://[^\s\"'<>]+", html) == ["http://www.w3.org/2000/svg"] * len(CHARTS)
    assert "url(" not in html and "@import" not in html and "@font-face" not in html


def test_top_errors_are_grouped_and_counted() -> None:
    """Errors are grouped by class and message, most frequent first, with their providers."""
    stats, timeline = make_run_data()
    _, page = render(stats, timeline, make_errors(1000))
    text = page.all_text
    assert "1,000 error records" in text
    assert text.index("message number 0") < text.index("message number 1") < text.index("message number 2")
    counts = Counter(e["message"] for e in make_errors(1000))
    assert re.search(rf"{counts['message number 0']}\s+5xx\s+503\s+message number 0\s+alpha", text)


def _noisy_errors(count: int) -> Iterator[dict[str, Any]]:
    """Every other record a one-off message (long), the rest a few frequent ones."""
    frequent = make_errors(count // 2)
    for i in range(count):
        if i % 2:
            yield {"kind": "5xx", "message": f"one-off failure {i} " + "x" * 4000, "provider": "alpha", "id": i}
        else:
            yield next(frequent)


def test_huge_errors_are_counted_in_bounded_memory() -> None:
    """20,000 errors carrying 40 MB of distinct messages are summarised in a few megabytes."""
    stats, timeline = make_run_data(runs=(10.0,))
    tracemalloc.start()
    try:
        html = render_report(stats, timeline, _noisy_errors(20_000), title="big")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * 2**20
    page = Page(html)
    assert "20,000 error records" in page.all_text
    counts = Counter(e["message"] for e in make_errors(10_000))
    assert f"{counts['message number 0']:,}" in page.all_text  # exact: frequent messages are never dropped
    assert "rarer ones were dropped" in page.all_text


def test_build_report_streams_files_beside_the_output(tmp_path: Path) -> None:
    """build_report reads stats, timeline and errors beside the output and writes the report atomically."""
    stats, timeline = make_run_data()
    output = tmp_path / "results.jsonl"
    (tmp_path / "results.jsonl.stats.json").write_text(json.dumps(stats))
    with open(tmp_path / "results.jsonl.timeline.jsonl", "w") as f:
        for record in timeline:
            f.write(json.dumps(record) + "\n")
        f.write('{"t": 17')  # a snapshot being written right now
    with open(tmp_path / "results.jsonl.errors.jsonl", "w") as f:
        f.write("x" * (3 << 20) + "\n")  # one absurd line, skipped without being held whole
        for record in make_errors(5_000):
            f.write(json.dumps(record) + "\n")
    tracemalloc.start()
    try:
        path = build_report(output, now=START)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert path == report_path(output) == tmp_path / "results.jsonl.report.html"
    assert peak < 8 * 2**20
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    page = Page(path.read_text(encoding="utf-8"))
    assert page.value("rows_done") == str(stats["rows"]["done"])
    assert "5,001 error records" in page.all_text and "unreadable" in page.all_text
    assert set(page.series["chart-throughput"]) == {"alpha", "beta"}


def test_build_report_without_any_file(tmp_path: Path) -> None:
    """An output with nothing beside it still gets a report saying there is no data."""
    path = build_report(tmp_path / "nothing.jsonl")
    assert "no data" in Page(path.read_text(encoding="utf-8")).all_text


def test_long_timeline_is_coarsened_not_lost(monkeypatch: pytest.MonkeyPatch) -> None:
    """More snapshots than are kept (neighbours merged) still add up to every success, in bounded memory."""
    monkeypatch.setattr(timeline_module, "MAX_INTERVALS", 256)
    steps = 2_000
    timeline = (
        {
            "t": START + i * 3.0,
            "elapsed_s": i * 3.0,
            "rows_done": i * 5,
            "providers": {"alpha": {"successes": i * 3, "limit": 8}, "beta": {"successes": i * 2, "limit": 4}},
        }
        for i in range(1, steps + 1)
    )
    tracemalloc.start()
    try:
        html = render_report(None, timeline, [], title="long")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert f"alpha: {steps * 3:,} successes" in html and f"beta: {steps * 2:,} successes" in html
    assert peak < 1.5 * 2**20  # all 2,000 snapshots kept would take about 3 MB
