"""Instructions per row, hfbatch against the bare loop, counted by valgrind: a figure the neighbours cannot move.

    python bench/instructions.py                      # latency 0, concurrency 64; needs valgrind
    python bench/instructions.py --small 1000 --large 4000 --only hfbatch
    python bench/instructions.py --only bare_uv       # the bare loop on uvloop, as hfbatch runs with it

On a shared machine wall and CPU times move by a factor of two within minutes; the instructions a
process executes do not. Each client runs under `valgrind --tool=callgrind` over `--small` and
`--large` rows against `bench/server.py` (which runs natively); instructions per row are the
difference between the two runs over the difference in rows, so start-up cancels out. About 1.5
minutes per client and size on 2 cores. Under valgrind the client is some 50 times slower, so its
event loop sees other batches of replies than at full speed: compare counts taken this way only.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from benchlib import BenchServer, hfbatch_env, make_jsonl

BENCH_DIR = Path(__file__).resolve().parent


def count(client: str, rows: int, api_base: str, concurrency: int, workdir: Path) -> int:
    """Instructions one run of `client` over `rows` rows executes (callgrind's total)."""
    inp, out = workdir / f"in-{rows}.jsonl", workdir / f"out-{client}-{rows}.jsonl"
    if not inp.exists():
        make_jsonl(inp, rows)
    for old in workdir.glob(out.name + "*"):
        old.unlink()
    if client in ("bare", "bare_uv"):
        cmd = [sys.executable, str(BENCH_DIR / "clients.py"), client]
    else:
        # Each run starts cold: a limit learned by the run before would make the two runs differ in more than rows.
        cmd = [sys.executable, "-m", "hfbatch", "run", "--no-learned-limits"]
    cmd += ["--input", str(inp), "--output", str(out), "--model", "bench/model", "--api-base", api_base]
    cmd += ["--concurrency", str(concurrency), "--max-tokens", "16"]
    report = workdir / f"callgrind-{client}-{rows}.out"
    done = subprocess.run(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={report}", *cmd],
        env=hfbatch_env(),
        capture_output=True,
        text=True,
        cwd=workdir,
    )
    found = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode != 0 or found is None:
        raise SystemExit(f"{client} over {rows} rows failed under valgrind:\n{done.stderr[-2000:]}")
    return int(found.group(1))


def main() -> None:
    """Count instructions per row for each client and print them with the ratio to the bare loop."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", type=int, default=1000)
    parser.add_argument("--large", type=int, default=4000)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--only", action="append", choices=("bare", "bare_uv", "hfbatch"), help="only these clients")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (Debian: apt-get install valgrind)")
    if args.large <= args.small:
        raise SystemExit("--large must be more rows than --small")
    per_row: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="hfbatch-instr-") as tmp, BenchServer(latency_ms=args.latency_ms) as server:
        for client in args.only or ["bare", "hfbatch"]:
            small = count(client, args.small, server.api_base, args.concurrency, Path(tmp))
            large = count(client, args.large, server.api_base, args.concurrency, Path(tmp))
            per_row[client] = (large - small) / (args.large - args.small)
            fixed = small - per_row[client] * args.small
            print(f"{client:8} {per_row[client]:>10,.0f} instructions per row, {fixed / 1e9:.2f} G fixed", flush=True)
    if "bare" in per_row and "hfbatch" in per_row:
        print(f"hfbatch / bare: {per_row['hfbatch'] / per_row['bare']:.2f}")
    if "bare_uv" in per_row and "hfbatch" in per_row:
        print(f"hfbatch / bare_uv: {per_row['hfbatch'] / per_row['bare_uv']:.2f}")


if __name__ == "__main__":
    main()
