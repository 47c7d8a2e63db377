"""hfbatch against a bare aiohttp loop and its peers, on one fast local server: the one benchmark command.

    pip install -e '.[bench]'
    python bench/run.py                  # 20,000 rows; latency 0 ms x concurrency 64, 50 ms x 256
    python bench/run.py --quick          # 2,000 rows, a smoke run
    python bench/run.py --json           # the same figures as JSON
    python bench/run.py --only hfbatch --only bare --scenario 0:64 --repeat 3

It writes a JSONL of N short prompts, starts `bench/server.py` (a raw-asyncio OpenAI-compatible server)
in its own process, and for each scenario runs each client in its own process over the same input:

  bare     aiohttp + a bound of `concurrency` workers, JSONL in, JSONL out: the ceiling for a Python client
  bare_uv  the same loop on uvloop's event loop (needs uvloop: the fast extra, in dev and bench)
  hfbatch  `python -m hfbatch run --input ... --output ... --providers local --api-base ...` end to end,
           on uvloop and with orjson when installed (its stats say which loop and JSON library; the note too)
  hf_hub   huggingface_hub's AsyncInferenceClient(base_url=...).chat_completion, same bound
  openai   openai's AsyncOpenAI(base_url=..., max_retries=0).chat.completions.create, same bound

For each it prints rows per second (rows over the process's wall time, start-up included), client CPU
seconds per 1,000 rows (user + sys of that process alone, from os.wait4), peak RSS, and the server's CPU
over the run as a share of one core (over 90% means the server, not the client, may be the limit).
Then hfbatch's ratios to the bare loop and to the peers against the issue's targets, Little's law's
ceiling (concurrency / latency) for scenarios with latency, and the start-up figures of `bench/startup.py`.
A peer that is not installed or fails is marked skipped and the run goes on.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import statistics
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchlib import BENCH_DIR, BenchServer, count_lines, hfbatch_env, hfbatch_run_command, make_jsonl, run_measured
from startup import format_startup, measure_startup

CLIENTS = ("bare", "bare_uv", "hfbatch", "hf_hub", "openai")
PEER_MODULES = {"bare_uv": "uvloop", "hf_hub": "huggingface_hub", "openai": "openai"}
MODEL = "bench/model"
MAX_TOKENS = 16
SERVER_BUSY_LIMIT = 0.9  # of one core
# hfbatch's rows/s over the bare loop's (at least: issue 10's), its CPU per row over bare's (at most: issue 5's).
TARGET_ROWS_LATENCY0 = 0.9
TARGET_CPU_LATENCY0 = 1.3
TARGET_ROWS_LATENCY = 0.95


@dataclass(frozen=True, slots=True)
class Scenario:
    """Server latency and client concurrency."""

    latency_ms: float
    concurrency: int

    @property
    def name(self) -> str:
        """E.g. `latency 50 ms, concurrency 256`."""
        return f"latency {self.latency_ms:g} ms, concurrency {self.concurrency}"

    @classmethod
    def parse(cls, text: str) -> Scenario:
        """`LATENCY_MS:CONCURRENCY`, e.g. `50:256`."""
        latency, _, concurrency = text.partition(":")
        try:
            return cls(float(latency), int(concurrency))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected LATENCY_MS:CONCURRENCY, e.g. 50:256, not {text!r}") from None


def client_command(name: str, scenario: Scenario, inp: Path, out: Path, api_base: str) -> list[str]:
    """The command line that runs one client over the input."""
    if name == "hfbatch":
        return hfbatch_run_command(inp, out, api_base=api_base, provider=None, concurrency=scenario.concurrency,
                                   extra=["--max-tokens", str(MAX_TOKENS)])  # fmt: skip
    return [
        sys.executable,
        str(BENCH_DIR / "clients.py"),
        name,
        "--input",
        str(inp),
        "--output",
        str(out),
        "--api-base",
        api_base,
        "--model",
        MODEL,
        "--concurrency",
        str(scenario.concurrency),
        "--max-tokens",
        str(MAX_TOKENS),
    ]


def measure(name: str, scenario: Scenario, inp: Path, rows: int, workdir: Path, server: BenchServer) -> dict[str, Any]:
    """Run one client once in its own process; return its figures, or why it failed."""
    out = workdir / f"out-{name}.jsonl"
    for p in workdir.glob(f"out-{name}.jsonl*"):
        p.unlink()
    log = workdir / f"{name}.log"
    result: dict[str, Any] = {"client": name, "status": "ok"}
    before = server.stats()
    with open(log, "w") as f:
        usage = run_measured(
            client_command(name, scenario, inp, out, server.api_base),
            env=hfbatch_env(),
            stdout=f,
            stderr=f,
            cwd=workdir,
        )
    after = server.stats()
    server_cpu = (after["user_s"] + after["sys_s"]) - (before["user_s"] + before["sys_s"])
    written = count_lines(out) if out.exists() else 0
    result |= {
        "wall_s": usage.wall_s,
        "rows_per_s": rows / usage.wall_s,
        "cpu_s": usage.cpu_s,
        "cpu_s_per_1k_rows": usage.cpu_s / rows * 1000,
        "user_s": usage.user_s,
        "sys_s": usage.sys_s,
        "peak_rss_mb": usage.peak_rss_mb,
        "server_requests": after["requests"] - before["requests"],
        "server_cpu_s": server_cpu,
        "server_cpu_share": server_cpu / usage.wall_s,
        "rows_written": written,
    }
    text = log.read_text(errors="replace")
    if name == "hfbatch":
        stats_path = out.with_name(out.name + ".stats.json")
        if stats_path.exists():
            stats = json.loads(stats_path.read_text())
            result["loop_rows_per_s"] = stats.get("rows_per_second")
            result["stats_rows_done"] = stats["rows"]["done"]
            result["event_loop"] = stats.get("event_loop")
            result["json"] = stats.get("json")
        else:
            result["stats_rows_done"] = None
    else:
        last = text.strip().splitlines()[-1:] or ["{}"]
        try:
            loop_s = json.loads(last[0]).get("loop_s")
            result["loop_rows_per_s"] = rows / loop_s if loop_s else None
        except ValueError:
            result["loop_rows_per_s"] = None
    problem = None
    if usage.exit_code != 0:
        problem = f"exited {usage.exit_code}: {text.strip().splitlines()[-1:] or ''}"
    elif written != rows:
        problem = f"wrote {written} rows, expected {rows}"
    elif name == "hfbatch" and result.get("stats_rows_done") != rows:
        problem = f"stats file says {result.get('stats_rows_done')} rows done, expected {rows}"
    if problem:
        result["status"] = "failed"
        result["reason"] = problem
    return result


def available(name: str) -> str | None:
    """Why a client cannot run here, or None."""
    module = PEER_MODULES.get(name)
    if module and importlib.util.find_spec(module) is None:
        return f"{module} is not installed (pip install -e '.[bench]')"
    return None


def ratios(results: dict[str, dict[str, Any]], scenario: Scenario) -> dict[str, Any]:
    """hfbatch's ratios to the bare loop and the peers, with the issue's targets where they apply."""
    hf = results.get("hfbatch")
    if not hf or hf["status"] != "ok":
        return {}
    out: dict[str, Any] = {}
    bare = results.get("bare")
    if bare and bare["status"] == "ok":
        rows_ratio = hf["rows_per_s"] / bare["rows_per_s"]
        cpu_ratio = hf["cpu_s_per_1k_rows"] / bare["cpu_s_per_1k_rows"]
        out["rows_per_s_vs_bare"] = rows_ratio
        out["cpu_per_row_vs_bare"] = cpu_ratio
        if scenario.latency_ms == 0:
            out["targets"] = {
                f"rows/s >= {TARGET_ROWS_LATENCY0} x bare": rows_ratio >= TARGET_ROWS_LATENCY0,
                f"CPU/row <= {TARGET_CPU_LATENCY0} x bare": cpu_ratio <= TARGET_CPU_LATENCY0,
            }
        else:
            out["targets"] = {f"rows/s >= {TARGET_ROWS_LATENCY} x bare": rows_ratio >= TARGET_ROWS_LATENCY}
    for peer in PEER_MODULES:
        r = results.get(peer)
        if r and r["status"] == "ok":
            out[f"rows_per_s_vs_{peer}"] = hf["rows_per_s"] / r["rows_per_s"]
    return out


def run_scenario(
    scenario: Scenario, clients: list[str], inp: Path, rows: int, workdir: Path, server: BenchServer, repeat: int
) -> dict[str, Any]:
    """Every client over the input in this scenario (`repeat` rounds, the median run by rows/s kept)."""
    server.set_latency(scenario.latency_ms)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in clients}
    skipped: dict[str, dict[str, Any]] = {}
    for name in clients:
        if (why := available(name)) is not None:
            skipped[name] = {"client": name, "status": "skipped", "reason": why}
    for _ in range(repeat):
        for name in clients:
            if name in skipped:
                continue
            print(f"  {scenario.name}: {name} ...", file=sys.stderr, flush=True)
            r = measure(name, scenario, inp, rows, workdir, server)
            if r["status"] != "ok":
                print(f"  {name} failed: {r['reason']}", file=sys.stderr, flush=True)
                if name in PEER_MODULES:
                    r["status"] = "skipped"
                    skipped[name] = r
                    continue
            runs[name].append(r)
    results: dict[str, dict[str, Any]] = {}
    for name in clients:
        if name in skipped:
            results[name] = skipped[name]
            continue
        ok = [r for r in runs[name] if r["status"] == "ok"]
        pool = ok or runs[name]
        pick = sorted(pool, key=lambda r: r.get("rows_per_s", 0))[(len(pool) - 1) // 2]
        pick["runs"] = len(runs[name])
        if len(ok) > 1:
            pick["rows_per_s_all"] = [r["rows_per_s"] for r in ok]
            pick["cpu_s_per_1k_rows_median"] = statistics.median(r["cpu_s_per_1k_rows"] for r in ok)
        results[name] = pick
    block: dict[str, Any] = {
        "latency_ms": scenario.latency_ms,
        "concurrency": scenario.concurrency,
        "rows": rows,
        "clients": results,
        "hfbatch_ratios": ratios(results, scenario),
    }
    if scenario.latency_ms > 0:
        block["littles_law_rows_per_s"] = scenario.concurrency / (scenario.latency_ms / 1000)
    return block


def _f(value: Any, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def format_scenario(block: dict[str, Any]) -> str:
    """One scenario as a text table."""
    title = f"latency {block['latency_ms']:g} ms, concurrency {block['concurrency']}, {block['rows']:,} rows"
    head = (
        f"{'client':<8} {'rows/s':>8} {'loop rows/s':>11} {'CPU s/1k rows':>13} {'peak RSS MB':>11} "
        f"{'wall s':>7} {'server CPU':>10}  note"
    )
    lines = [title, head]
    little = block.get("littles_law_rows_per_s")
    for name, r in block["clients"].items():
        if r["status"] != "ok":
            lines.append(f"{name:<8} {r['status']}: {r.get('reason', '')}")
            continue
        notes = []
        if r.get("event_loop"):
            notes.append(f"on {r['event_loop']}")
        if r.get("json"):
            notes.append(f"JSON by {r['json']}")
        if r["server_cpu_share"] > SERVER_BUSY_LIMIT:
            notes.append("SERVER SATURATED: figures are the server's limit")
        if little:
            notes.append(f"{r['rows_per_s'] / little:.0%} of Little's law")
        lines.append(
            f"{name:<8} {r['rows_per_s']:>8.0f} {_f(r.get('loop_rows_per_s'), '>11.0f')} "
            f"{r['cpu_s_per_1k_rows']:>13.3f} {r['peak_rss_mb']:>11.1f} {r['wall_s']:>7.2f} "
            f"{r['server_cpu_share']:>10.0%}  {'; '.join(notes)}"
        )
    if little:
        lines.append(
            f"Little's law ceiling: {block['concurrency']} / {block['latency_ms'] / 1000:g} s = {little:,.0f} rows/s"
        )
    rat = block["hfbatch_ratios"]
    if rat:
        parts = []
        if "rows_per_s_vs_bare" in rat:
            parts.append(f"rows/s {rat['rows_per_s_vs_bare']:.2f}x bare")
            parts.append(f"CPU/row {rat['cpu_per_row_vs_bare']:.2f}x bare")
        parts += [
            f"rows/s {rat[f'rows_per_s_vs_{p}']:{'.2f' if p == 'bare_uv' else '.1f'}}x {p}"
            for p in PEER_MODULES
            if f"rows_per_s_vs_{p}" in rat
        ]
        lines.append("hfbatch: " + ", ".join(parts))
        for target, met in rat.get("targets", {}).items():
            lines.append(f"  target {target}: {'meets' if met else 'MISSES'}")
    return "\n".join(lines)


def main() -> None:
    """Parse the flags, run every scenario and print the tables (or JSON)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=None, help="rows in the input (default 20,000; --quick: 2,000)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 2,000 rows, start-up over 3 runs")
    parser.add_argument(
        "--scenario",
        type=Scenario.parse,
        action="append",
        metavar="LATENCY_MS:CONCURRENCY",
        help="a scenario to run (repeatable; default 0:64 and 50:256)",
    )
    parser.add_argument(
        "--only", action="append", choices=CLIENTS, metavar="NAME", help=f"only these clients: {CLIENTS}"
    )
    parser.add_argument("--repeat", type=int, default=1, help="rounds per scenario; the median run is kept")
    parser.add_argument("--no-startup", action="store_true", help="skip the start-up measurement")
    parser.add_argument("--workdir", type=Path, help="keep inputs, outputs and logs here (default: a temp dir)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    args = parser.parse_args()
    rows = args.rows or (2_000 if args.quick else 20_000)
    scenarios = args.scenario or [Scenario(0, 64), Scenario(50, 256)]
    clients = [c for c in CLIENTS if not args.only or c in args.only]

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="hfbatch-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"rows": rows, "python": sys.version.split()[0], "scenarios": []}
    try:
        inp = workdir / f"prompts-{rows}.jsonl"
        if not inp.exists():
            make_jsonl(inp, rows)
        with BenchServer() as server:
            for scenario in scenarios:
                block = run_scenario(scenario, clients, inp, rows, workdir, server, max(1, args.repeat))
                report["scenarios"].append(block)
        if not args.no_startup:
            print("  start-up ...", file=sys.stderr, flush=True)
            report["startup"] = measure_startup(3 if args.quick else 10)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        print(json.dumps(report, indent=2))
        return
    sections = [format_scenario(b) for b in report["scenarios"]]
    if "startup" in report:
        sections.append(format_startup(report["startup"]))
    print("\n\n".join(sections))


if __name__ == "__main__":
    main()
