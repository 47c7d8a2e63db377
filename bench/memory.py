"""Peak memory of `hfbatch run` over Parquet inputs of growing size.

Starts `hfbatch sim` (one healthy provider, no latency) in its own process, then
runs `hfbatch run` on a Parquet file of N short rows for each N given, and
reports the run's peak RSS (from wait4, the run's process alone) and its rate.

    python bench/memory.py --rows 100000 1000000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from benchlib import free_port, hfbatch_run_command, run_measured, wait_for_port

SIM_CONFIG = """
token = "hf_bench"
[[models]]
id = "bench/model"
  [[models.providers]]
  name = "fast"
"""


def make_parquet(path: Path, rows: int) -> None:
    """A one-column Parquet file of short prompts, in row groups of 64k."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    with pq.ParquetWriter(path, pa.schema([("prompt", pa.string())])) as writer:
        for start in range(0, rows, 65_536):
            n = min(65_536, rows - start)
            writer.write_table(pa.table({"prompt": [f"short prompt {i}" for i in range(start, start + n)]}))


def measure(workdir: Path, rows: int, port: int, concurrency: int) -> dict[str, float]:
    """Run hfbatch once over `rows` rows; return its peak RSS in MB, wall time and rate."""
    inp = workdir / f"in-{rows}.parquet"
    if not inp.exists():
        make_parquet(inp, rows)
    out = workdir / f"out-{rows}.jsonl"
    for p in workdir.glob(f"out-{rows}.jsonl*"):
        p.unlink()
    base = f"http://127.0.0.1:{port}"
    cmd = hfbatch_run_command(inp, out, api_base=f"{base}/v1", provider="fast", concurrency=concurrency,
                              extra=["--hub-url", base])  # fmt: skip
    env = {**os.environ, "HF_TOKEN": "hf_bench"}
    usage = run_measured(cmd, env=env)
    if usage.exit_code != 0:
        raise RuntimeError(f"hfbatch run exited {usage.exit_code} for {rows} rows")
    done = json.loads(out.with_name(out.name + ".stats.json").read_text())["rows"]["done"]
    return {
        "rows": rows,
        "done": done,
        "peak_rss_mb": usage.peak_rss_mb,
        "wall_s": usage.wall_s,
        "rows_per_s": rows / usage.wall_s,
    }


def main() -> None:
    """Measure and print a table (or JSON with --json)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
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
            results = [measure(workdir, n, port, args.concurrency) for n in args.rows]
        finally:
            sim.terminate()
            sim.wait()
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"{'rows':>10} {'done':>10} {'peak RSS MB':>12} {'wall s':>8} {'rows/s':>8}")
    for r in results:
        print(f"{r['rows']:>10} {r['done']:>10} {r['peak_rss_mb']:>12.1f} {r['wall_s']:>8.1f} {r['rows_per_s']:>8.0f}")
    if len(results) > 1:
        print(f"ratio of peak RSS, largest to smallest: {results[-1]['peak_rss_mb'] / results[0]['peak_rss_mb']:.2f}")


if __name__ == "__main__":
    main()
