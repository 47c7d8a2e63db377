"""What a kill -9 costs: rows paid twice after SIGKILLs at random moments, against the rows in flight.

    python bench/kill_cost.py                                # 3,000 rows, concurrency 32 and 64, 5 kills each
    python bench/kill_cost.py --rows 6000 --kills 8 --concurrency 64 --json

The simulator (hfbatch/sim) runs in a thread of this process, with two providers answering after
30 ms. For each concurrency, `python -m hfbatch run` (JSONL in and out, in its own process) first
runs once unkilled over a fresh output: its rows/s, start-up included, against Little's law
(concurrency / latency). Then, over another fresh output, the same command is started, killed
with SIGKILL once the output holds a random number of results plus a random fraction of a
request's latency, and started again, `--kills` times; the last run is left to finish.

Per kill it reports the run's rows in flight at the kill: requests the simulator was answering
plus replies it had sent (and billed) that were not in the output yet, which a run that hands
each result to the OS as it arrives keeps at most `--concurrency` of. Then the replies billed
and not in the output once the dead process is reaped and its connections are gone (a SIGKILL
takes some milliseconds to close them, and replies sent meanwhile are billed too): what the
rerun must pay again, and what the next run did pay twice. The total is the simulator's
`paid_twice()`: billed whole replies beyond the first per distinct request (same messages, n,
seed, response_format); it should be at most the rows in flight at the kills, and so at most
concurrency x kills. In the end every input id must be in the output exactly once.

The unkilled run also gives the CPU each side used (as a share of one core): on a busy machine
both wait for a core, replies wait to be read, and rows/s and the rows in flight say so.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import IO, Any

from benchlib import make_jsonl, run_measured

from hfbatch.sim import SimConfig, SimModel, SimProvider, SimServer

MODEL = "bench/model"
PROVIDERS = ("p1", "p2")
#: Poll period while waiting for results or for the simulator to drop a dead run's requests.
POLL_S = 0.005
#: The simulator drops a dead client's requests within a few ms; past this something is wrong.
SETTLE_TIMEOUT_S = 5.0
RUN_TIMEOUT_S = 300.0


class OutputTail:
    """Whole result lines in a JSONL output, counted by reading only what was appended since last time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.lines = 0

    def count(self) -> int:
        """Whole lines in the file now (reread from the start if a rerun cut a torn last line)."""
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return 0
        if size < self.offset:
            self.offset = self.lines = 0
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            block = f.read()
        whole = block.rfind(b"\n") + 1
        self.lines += block.count(b"\n", 0, whole)
        self.offset += whole
        return self.lines


def run_command(sim: SimServer, inp: Path, out: Path, concurrency: int) -> list[str]:
    """`hfbatch run` over the simulator, as a user types it."""
    return [
        sys.executable, "-m", "hfbatch", "run", "--input", str(inp), "--output", str(out), "--model", MODEL,
        "--api-base", sim.api_base, "--hub-url", sim.hub_url, "--concurrency", str(concurrency),
        "--max-tokens", "16",
    ]  # fmt: skip


def start(cmd: list[str], env: dict[str, str], log: IO[bytes]) -> subprocess.Popen[bytes]:
    """Start one run, its stderr appended to `log`."""
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=log)


def finish(proc: subprocess.Popen[bytes], log: Path) -> None:
    """Wait for a run to end; it must exit 0."""
    if proc.wait(timeout=RUN_TIMEOUT_S) != 0:
        tail = log.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"hfbatch run exited {proc.returncode}:\n{tail}")


def in_flight(sim: SimServer) -> int:
    """Requests the simulator is answering right now."""
    return sum(sim.state.in_flight().values())


def settle(sim: SimServer) -> None:
    """Wait until the simulator has dropped every request of a dead run."""
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    while in_flight(sim):
        if time.monotonic() > deadline:
            raise RuntimeError("the simulator still answers a killed run's requests")
        time.sleep(POLL_S)


def close_rerun(per_kill: list[dict[str, Any]], sim: SimServer) -> None:
    """Give the last kill what the run after it paid twice, now that that run is over."""
    if per_kill and "paid_twice_at_kill" in per_kill[-1]:
        per_kill[-1]["rerun_paid_twice"] = sim.paid_twice() - per_kill[-1].pop("paid_twice_at_kill")


def every_id_once(out: Path, rows: int) -> dict[str, int]:
    """Ids missing from the output, ids in it more than once, and ids not in the input."""
    counts = Counter(json.loads(line)["id"] for line in out.read_text(encoding="utf-8").splitlines())
    expected = {f"r{i}" for i in range(rows)}
    return {
        "missing": len(expected - counts.keys()),
        "repeated": sum(1 for n in counts.values() if n > 1),
        "foreign": len(counts.keys() - expected),
    }


def unkilled(sim: SimServer, inp: Path, folder: Path, concurrency: int) -> dict[str, float]:
    """One run to its end over a fresh output: wall seconds (start-up included) and CPU seconds of each side."""
    out = folder / f"clean-{concurrency}.jsonl"
    log = folder / f"clean-{concurrency}.log"
    sim_cpu = time.process_time()  # this process is the simulator's thread, the main one waits
    with open(log, "wb") as f:
        usage = run_measured(run_command(sim, inp, out, concurrency), env=run_env(sim, folder), stderr=f)
    sim_cpu = time.process_time() - sim_cpu
    if usage.exit_code != 0:
        raise RuntimeError(f"hfbatch run exited {usage.exit_code}:\n{log.read_text(errors='replace')[-2000:]}")
    if sim.paid_twice():
        raise RuntimeError(f"an unkilled run paid {sim.paid_twice()} rows twice")
    latency = json.loads(out.with_name(out.name + ".stats.json").read_text())["overall"]["latency_s"]
    return {"wall_s": usage.wall_s, "hfbatch_cpu_s": usage.cpu_s, "sim_cpu_s": sim_cpu, "p50_s": latency["p50"]}


def killed(
    sim: SimServer, inp: Path, folder: Path, rows: int, concurrency: int, kills: int, rng: random.Random, latency: float
) -> dict[str, Any]:
    """Kill runs of one output `kills` times at random moments, rerunning after each; then let it finish."""
    out = folder / f"killed-{concurrency}.jsonl"
    log = folder / f"killed-{concurrency}.log"
    cmd = run_command(sim, inp, out, concurrency)
    env = run_env(sim, folder)
    tail = OutputTail(out)
    step = rows * 0.8 / kills
    target = 0
    per_kill: list[dict[str, Any]] = []
    proc: subprocess.Popen[bytes] | None = None
    started = time.monotonic()
    with open(log, "wb") as f:
        while len(per_kill) < kills:
            target += rng.randint(int(step / 2), int(step * 1.5))
            if target > rows - 2 * concurrency:
                break  # too near the end to land inside the run
            proc = start(cmd, env, f)
            while tail.count() < target and proc.poll() is None:
                time.sleep(POLL_S)
            time.sleep(rng.random() * 2 * latency)  # anywhere in a request's life: sent, answered, written
            if proc.poll() is not None:
                break  # it finished first: nothing left to interrupt
            # Written first: every written row was billed before, so billed - written is never below 0.
            written = tail.count()
            flying, billed = in_flight(sim), sim.paid_keys()
            killed_at = time.monotonic()
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            reaped_ms = (time.monotonic() - killed_at) * 1000
            proc = None
            settle(sim)
            close_rerun(per_kill, sim)
            per_kill.append(
                {
                    "results_written": tail.count(),
                    # The run's rows in flight: sent and not yet written (answered, or still being answered).
                    "in_flight": flying + billed - written,
                    "sim_answering": flying,
                    "answered_not_written": billed - written,
                    "billed_not_written": sim.paid_keys() - tail.count(),
                    "reaped_after_ms": round(reaped_ms, 1),
                    "paid_twice_at_kill": sim.paid_twice(),
                }
            )
        finish(proc or start(cmd, env, f), log)
    wall = time.monotonic() - started
    close_rerun(per_kill, sim)
    stats = json.loads(out.with_name(out.name + ".stats.json").read_text())
    return {
        "kills": len(per_kill),
        "paid_twice": sim.paid_twice(),
        "in_flight_at_kills": sum(k["in_flight"] for k in per_kill),
        "bound": len(per_kill) * concurrency,
        "billed_not_written": sum(k["billed_not_written"] for k in per_kill),
        "per_kill": per_kill,
        "ids": every_id_once(out, rows),
        "stats_done": stats["rows"]["done"],
        "wall_s": round(wall, 2),
    }


def run_env(sim: SimServer, folder: Path) -> dict[str, str]:
    """The token, no time scaling or debug, and a cache of learned limits of this benchmark's own."""
    env = {k: v for k, v in os.environ.items() if k not in ("HFBATCH_TIME_SCALE", "HFBATCH_DEBUG", "HF_ENDPOINT")}
    return {**env, "HF_TOKEN": sim.config.token, "XDG_CACHE_HOME": str(folder / "cache")}


def measure(rows: int, concurrency: int, kills: int, latency: float, seed: int) -> dict[str, Any]:
    """One unkilled run, then a killed one, at one concurrency; their figures."""
    providers = tuple(SimProvider(name, latency=latency) for name in PROVIDERS)
    config = SimConfig(models=(SimModel(MODEL, providers),))
    with tempfile.TemporaryDirectory(prefix="hfbatch-kill-") as tmp, SimServer(config).in_thread() as sim:
        folder = Path(tmp)
        inp = folder / "in.jsonl"
        make_jsonl(inp, rows)
        clean = unkilled(sim, inp, folder, concurrency)
        sim.reset_counts()
        result = killed(sim, inp, folder, rows, concurrency, kills, random.Random(seed + concurrency), latency)
    return {
        "rows": rows,
        "concurrency": concurrency,
        "latency_ms": latency * 1000,
        "unkilled_wall_s": round(clean["wall_s"], 2),
        "unkilled_rows_per_s": round(rows / clean["wall_s"], 1),
        "share_of_littles_law": round(rows / clean["wall_s"] / (concurrency / latency), 3),
        "unkilled_p50_ms": round(clean["p50_s"] * 1000, 1),
        "unkilled_hfbatch_cpu_share": round(clean["hfbatch_cpu_s"] / clean["wall_s"], 3),
        "unkilled_sim_cpu_share": round(clean["sim_cpu_s"] / clean["wall_s"], 3),
        **result,
    }


def format_results(results: list[dict[str, Any]], load: tuple[float, ...]) -> str:
    """The killed runs' table, the unkilled runs' table, then a line per kill."""
    r0 = results[0]
    lines = [
        f"kill -9 at random moments: {r0['rows']:,} rows, {len(PROVIDERS)} providers at {r0['latency_ms']:.0f} ms"
        f" (load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f})",
        f"{'concurrency':>11} {'kills':>5} {'in flight':>9} {'lost':>5} {'paid twice':>10} {'per kill':>8}"
        f" {'bound':>5} {'ids once':>8}",
    ]
    for r in results:
        ids = r["ids"]
        once = "yes" if not any(ids.values()) and r["stats_done"] == r["rows"] else f"NO {ids}"
        lines.append(
            f"{r['concurrency']:>11} {r['kills']:>5} {r['in_flight_at_kills']:>9} {r['billed_not_written']:>5}"
            f" {r['paid_twice']:>10} {r['paid_twice'] / max(1, r['kills']):>8.1f} {r['bound']:>5} {once:>8}"
        )
    lines += [
        "in flight: at each kill, rows sent and not yet in the output (being answered, or answered and not yet",
        "written); lost: replies billed and not in the output once the dead run's connections were gone (what",
        "the rerun pays again); paid twice: the simulator's count at the end; bound: kills x concurrency",
        "",
        "unkilled run, start-up included",
        f"{'concurrency':>11} {'rows/s':>7} {'of Little':>9} {'p50 ms':>7} {'hfbatch CPU':>11} {'sim CPU':>7}",
    ]
    for r in results:
        lines.append(
            f"{r['concurrency']:>11} {r['unkilled_rows_per_s']:>7.0f} {r['share_of_littles_law']:>9.0%}"
            f" {r['unkilled_p50_ms']:>7.1f} {r['unkilled_hfbatch_cpu_share']:>11.0%}"
            f" {r['unkilled_sim_cpu_share']:>7.0%}"
        )
    lines += ["CPU: seconds over wall seconds, as a share of one core; the simulator is this process's thread", ""]
    for r in results:
        for i, k in enumerate(r["per_kill"], 1):
            lines.append(
                f"concurrency {r['concurrency']}, kill {i}: {k['results_written']:>5} written,"
                f" {k['in_flight']:>3} in flight ({k['sim_answering']:>2} being answered,"
                f" {k['answered_not_written']:>2} answered), {k['billed_not_written']:>3} lost;"
                f" the rerun paid {k['rerun_paid_twice']} twice; reaped after {k['reaped_after_ms']:.0f} ms"
            )
    return "\n".join(lines)


def main() -> None:
    """Parse the flags, measure each concurrency and print a table (or JSON with --json)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--latency-ms", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=9)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    load = os.getloadavg()
    results = [measure(args.rows, c, args.kills, args.latency_ms / 1000, args.seed) for c in args.concurrency]
    if args.json:
        print(json.dumps({"load_average": load, "results": results}, indent=2))
    else:
        print(format_results(results, load))


if __name__ == "__main__":
    main()
