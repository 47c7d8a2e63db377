"""Resume cost: a rerun of `hfbatch run` whose output already holds every id, against one plain read of the input.

    python bench/resume.py                          # 1,000,000 rows, in a temp dir removed afterwards
    python bench/resume.py --keep /tmp/hfb-resume   # keep the input and the done output for the next time

The first time, it writes a JSONL of N short prompts and runs `hfbatch run` over it for real against
`bench/server.py` (latency 0; a few minutes for 1,000,000 rows), so the output, its manifest and stats
are exactly what a user's finished run leaves. With --keep DIR they are reused as long as they are whole.
Then it times, each in a fresh process, `--runs` reruns of the same command (nothing left to do: no
request may reach the server) and `--runs` plain reads of the input (`for line in f: json.loads(line)`),
and prints the medians and their ratio. Target (issue 5): the rerun takes at most twice the plain read.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchlib import (
    BenchServer,
    ChildUsage,
    count_lines,
    free_port,
    hfbatch_env,
    hfbatch_run_command,
    make_jsonl,
    run_measured,
)

TARGET = 2.0
CONCURRENCY = 64
PLAIN_READ = (
    "import json, sys\nwith open(sys.argv[1], encoding='utf-8') as f:\n    for line in f:\n        json.loads(line)\n"
)


def hfbatch_command(inp: Path, out: Path, port: int) -> list[str]:
    """The one `hfbatch run` command, for the first run and every rerun alike."""
    return hfbatch_run_command(inp, out, api_base=f"http://127.0.0.1:{port}/v1", provider=None,
                               concurrency=CONCURRENCY, extra=["--max-tokens", "16"])  # fmt: skip


def stats_of(out: Path) -> dict[str, Any]:
    """The stats file hfbatch wrote beside the output."""
    data: dict[str, Any] = json.loads(out.with_name(out.name + ".stats.json").read_text())
    return data


def prepare(workdir: Path, rows: int) -> tuple[Path, Path, int]:
    """The input, an output holding all its ids (made by a real run unless a whole one is kept), and its port."""
    inp = workdir / f"prompts-{rows}.jsonl"
    out = workdir / f"done-{rows}.jsonl"
    state_path = workdir / f"done-{rows}.state.json"
    if not inp.exists():
        print(f"writing {rows:,} rows to {inp} ...", file=sys.stderr, flush=True)
        make_jsonl(inp, rows)
    if state_path.exists() and out.exists():
        state = json.loads(state_path.read_text())
        if state.get("rows") == rows and count_lines(out) == rows:
            return inp, out, int(state["port"])
    port = free_port()
    for p in workdir.glob(f"{out.name}*"):
        p.unlink()
    print(f"running hfbatch over {rows:,} rows once to fill {out} ...", file=sys.stderr, flush=True)
    with BenchServer(port=port), open(workdir / "first-run.log", "w") as log:
        usage = run_measured(hfbatch_command(inp, out, port), env=hfbatch_env(), stdout=log, stderr=log)
    if usage.exit_code != 0 or count_lines(out) != rows:
        raise SystemExit(f"the first run exited {usage.exit_code}; see {workdir / 'first-run.log'}")
    print(f"  done in {usage.wall_s:.0f}s ({rows / usage.wall_s:,.0f} rows/s)", file=sys.stderr, flush=True)
    state_path.write_text(json.dumps({"rows": rows, "port": port, "first_run_wall_s": usage.wall_s}))
    return inp, out, port


def rerun(inp: Path, out: Path, port: int, rows: int, server: BenchServer) -> ChildUsage:
    """One rerun with nothing left to do; checks that it sent nothing and skipped every row."""
    before = server.stats()["requests"]
    usage = run_measured(hfbatch_command(inp, out, port), env=hfbatch_env())
    sent = server.stats()["requests"] - before
    stats = stats_of(out)
    if usage.exit_code != 0 or sent or stats["rows"]["skipped_already_done"] != rows:
        raise SystemExit(
            f"rerun: exit {usage.exit_code}, {sent} requests sent, "
            f"{stats['rows']['skipped_already_done']} of {rows} rows skipped"
        )
    return usage


def measure(workdir: Path, rows: int, runs: int) -> dict[str, Any]:
    """Median wall times of the rerun and of a plain read, and their ratio."""
    inp, out, port = prepare(workdir, rows)
    reruns: list[ChildUsage] = []
    reads: list[ChildUsage] = []
    with BenchServer(port=port) as server:
        rerun(inp, out, port, rows, server)  # warm-up: page cache, .pyc files
        run_measured([sys.executable, "-c", PLAIN_READ, str(inp)])
        for _ in range(runs):
            reruns.append(rerun(inp, out, port, rows, server))
            read = run_measured([sys.executable, "-c", PLAIN_READ, str(inp)])
            if read.exit_code != 0:
                raise SystemExit(f"the plain read exited {read.exit_code}")
            reads.append(read)
    rerun_s = statistics.median(u.wall_s for u in reruns)
    read_s = statistics.median(u.wall_s for u in reads)
    return {
        "rows": rows,
        "runs": runs,
        "input_mb": inp.stat().st_size / 1e6,
        "output_mb": out.stat().st_size / 1e6,
        "rerun_wall_s": rerun_s,
        "rerun_cpu_s": statistics.median(u.cpu_s for u in reruns),
        "rerun_peak_rss_mb": max(u.peak_rss_mb for u in reruns),
        "plain_read_wall_s": read_s,
        "plain_read_peak_rss_mb": max(u.peak_rss_mb for u in reads),
        "ratio": rerun_s / read_s,
        "target": TARGET,
        "meets_target": rerun_s / read_s <= TARGET,
    }


def format_result(r: dict[str, Any]) -> str:
    """A text table of `measure`'s result."""
    verdict = "meets" if r["meets_target"] else "MISSES"
    return "\n".join(
        [
            f"Resume with every id done: {r['rows']:,} rows (input {r['input_mb']:.0f} MB, "
            f"output {r['output_mb']:.0f} MB), median of {r['runs']} runs",
            f"{'':<34} {'wall s':>7} {'peak RSS MB':>11}",
            f"{'hfbatch run (nothing to do)':<34} {r['rerun_wall_s']:>7.2f} {r['rerun_peak_rss_mb']:>11.1f}"
            f"   CPU {r['rerun_cpu_s']:.2f} s",
            f"{'plain read: json.loads per line':<34} {r['plain_read_wall_s']:>7.2f}"
            f" {r['plain_read_peak_rss_mb']:>11.1f}",
            f"ratio: {r['ratio']:.2f}x; target <= {r['target']:g}x: {verdict}",
        ]
    )


def main() -> None:
    """Parse the flags, measure and print a table (or JSON with --json)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3, help="timed reruns and plain reads (medians reported)")
    parser.add_argument("--keep", type=Path, metavar="DIR", help="make or reuse the input and the done output here")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="hfbatch-resume-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        result = measure(workdir, args.rows, max(1, args.runs))
    finally:
        if args.keep is None:
            shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(result, indent=2) if args.json else format_result(result))


if __name__ == "__main__":
    main()
