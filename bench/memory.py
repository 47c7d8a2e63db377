"""Peak memory of `hfbatch run` over Parquet inputs of growing size, with row-number or string ids.

Starts `hfbatch sim` (one healthy provider, no latency) in its own process, then
runs `hfbatch run` on a Parquet file of N short rows for each N given, and
reports the run's peak RSS (from wait4, the run's process alone) and its rate.
With --resume, each run is followed by a rerun of the same command, which finds
every row done in the output: what a resume over N done ids costs.

    python bench/memory.py --rows 100000 1000000                         # row-number ids
    python bench/memory.py --ids string --rows 50000 200000 1000000 --resume

String ids look like "row-000123-abcdef" (17 characters, in an `id` column).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchlib import free_port, hfbatch_run_command, run_measured, wait_for_port

SIM_CONFIG = """
token = "hf_bench"
[[models]]
id = "bench/model"
  [[models.providers]]
  name = "fast"
"""
ID_KINDS = ("row-number", "string")


def make_parquet(path: Path, rows: int, ids: str) -> None:
    """A Parquet file of short prompts, in row groups of 64k; with string ids, an `id` column too."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = random.Random(rows)
    columns = [("prompt", pa.string())] + ([("id", pa.string())] if ids == "string" else [])
    with pq.ParquetWriter(path, pa.schema(columns)) as writer:
        for start in range(0, rows, 65_536):
            numbers = range(start, min(start + 65_536, rows))
            batch = {"prompt": [f"short prompt {i}" for i in numbers]}
            if ids == "string":
                batch["id"] = [f"row-{i:06d}-{rng.getrandbits(24):06x}" for i in numbers]
            writer.write_table(pa.table(batch))


def run_once(cmd: list[str], out: Path, rows: int) -> dict[str, Any]:
    """Run one `hfbatch run`; its peak RSS in MB, wall time, rate and what its stats file says."""
    usage = run_measured(cmd, env={**os.environ, "HF_TOKEN": "hf_bench"})
    if usage.exit_code != 0:
        raise RuntimeError(f"hfbatch run exited {usage.exit_code} for {rows} rows")
    stats = json.loads(out.with_name(out.name + ".stats.json").read_text())["rows"]
    return {
        "rows": rows,
        "done": stats["done"],
        "skipped": stats["skipped_already_done"],
        "peak_rss_mb": usage.peak_rss_mb,
        "wall_s": usage.wall_s,
        "cpu_s": usage.cpu_s,
        "rows_per_s": rows / usage.wall_s,
    }


def measure(workdir: Path, rows: int, ids: str, port: int, concurrency: int, resume: bool) -> list[dict[str, Any]]:
    """Run hfbatch over `rows` rows with `ids` ids, and rerun it when `resume`; one result per run."""
    inp = workdir / f"in-{ids}-{rows}.parquet"
    if not inp.exists():
        make_parquet(inp, rows, ids)
    out = workdir / f"out-{ids}-{rows}.jsonl"
    for p in workdir.glob(f"{out.name}*"):
        p.unlink()
    base = f"http://127.0.0.1:{port}"
    cmd = hfbatch_run_command(inp, out, api_base=f"{base}/v1", provider="fast", concurrency=concurrency,
                              extra=["--hub-url", base])  # fmt: skip
    results = [{"run": "first", "ids": ids, **run_once(cmd, out, rows)}]
    if resume:
        again = run_once(cmd, out, rows)
        if again["skipped"] != rows:
            raise RuntimeError(f"the rerun over {rows} rows skipped {again['skipped']}, not every row")
        results.append({"run": "resume", "ids": ids, **again})
    return results


def format_results(results: list[dict[str, Any]]) -> str:
    """A text table, and the ratio of the largest run's peak RSS to the smallest's for each kind of run."""
    header = f"{'ids':>10} {'run':>6} {'rows':>9} {'done':>9} {'skipped':>9} {'peak RSS MB':>11}"
    lines = [header + f" {'wall s':>7} {'rows/s':>7}"]
    for r in results:
        lines.append(
            f"{r['ids']:>10} {r['run']:>6} {r['rows']:>9} {r['done']:>9} {r['skipped']:>9} {r['peak_rss_mb']:>11.1f}"
            f" {r['wall_s']:>7.1f} {r['rows_per_s']:>7.0f}"
        )
    for ids in ID_KINDS:
        for run in ("first", "resume"):
            same = [r for r in results if r["ids"] == ids and r["run"] == run]
            if len(same) > 1:
                small, large = same[0], same[-1]
                ratio = large["peak_rss_mb"] / small["peak_rss_mb"]
                per_row = (large["peak_rss_mb"] - small["peak_rss_mb"]) * 2**20 / (large["rows"] - small["rows"])
                lines.append(
                    f"{ids} ids, {run} run: peak RSS {ratio:.2f}x from {small['rows']:,} to {large['rows']:,} rows"
                    f" ({per_row:.0f} bytes per added row)"
                )
    return "\n".join(lines)


def main() -> None:
    """Measure and print a table (or JSON with --json)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--ids", choices=ID_KINDS, nargs="+", default=["row-number"])
    parser.add_argument("--resume", action="store_true", help="rerun each run once all its rows are done")
    parser.add_argument("--concurrency", type=int, default=128)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hfbatch-mem-") as tmp:
        workdir = Path(tmp)
        (workdir / "sim.toml").write_text(SIM_CONFIG)
        port = free_port()
        sim = subprocess.Popen(
            [sys.executable, "-m", "hfbatch", "sim", "--port", str(port), "--config", str(workdir / "sim.toml")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_for_port(port)
            results = [
                result
                for ids in args.ids
                for n in args.rows
                for result in measure(workdir, n, ids, port, args.concurrency, args.resume)
            ]
        finally:
            sim.terminate()
            sim.wait()
    print(json.dumps(results, indent=2) if args.json else format_results(results))


if __name__ == "__main__":
    main()
