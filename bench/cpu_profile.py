"""Where `hfbatch run` spends its CPU: one run under cProfile against `bench/server.py`.

    python bench/cpu_profile.py                       # 20,000 rows, latency 0 ms, concurrency 64
    python bench/cpu_profile.py --rows 5000 --top 40 --save /tmp/hfbatch.prof

Prints the functions with the most time of their own, then hfbatch's own functions by cumulative time.
cProfile slows the run about twofold and weighs small Python calls more than C ones: read the ranking,
not the absolute times (a sampling profiler such as py-spy gives truer shares).
"""

from __future__ import annotations

import argparse
import io
import pstats
import sys
import tempfile
from pathlib import Path

from benchlib import BenchServer, hfbatch_env, make_jsonl, run_measured


def main() -> None:
    """Run hfbatch once under cProfile and print the top functions."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--save", type=Path, help="also keep the pstats file here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hfbatch-prof-") as tmp:
        workdir = Path(tmp)
        inp, out = workdir / "in.jsonl", workdir / "out.jsonl"
        prof = args.save or workdir / "hfbatch.prof"
        make_jsonl(inp, args.rows)
        with BenchServer(latency_ms=args.latency_ms) as server:
            cmd = [sys.executable, "-m", "cProfile", "-o", str(prof), "-m", "hfbatch", "run"]
            cmd += ["--input", str(inp), "--output", str(out), "--model", "bench/model"]
            cmd += ["--api-base", server.api_base, "--concurrency", str(args.concurrency), "--max-tokens", "16"]
            usage = run_measured(cmd, env=hfbatch_env())
        if usage.exit_code != 0:
            raise SystemExit(f"hfbatch run exited {usage.exit_code}")
        print(f"{args.rows:,} rows in {usage.wall_s:.2f}s under cProfile, CPU {usage.cpu_s:.2f}s")
        text = io.StringIO()
        stats = pstats.Stats(str(prof), stream=text)
        stats.sort_stats("tottime").print_stats(args.top)
        stats.sort_stats("cumulative").print_stats(r"/hfbatch/", args.top)
        print(text.getvalue())


if __name__ == "__main__":
    main()
