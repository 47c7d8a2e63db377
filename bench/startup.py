"""Start-up cost of the CLI: wall time of `hfbatch --help` and `hfbatch run --help` against bare Python.

    python bench/startup.py [--runs 10] [--json]

Each command runs `--runs` times in a fresh process (after one warm-up); the median wall time is
reported. `python -X importtime -m hfbatch --help` (and `run --help`) must not import pyarrow or aiohttp.
Target (issue 5): `hfbatch --help` at most 3 times the wall time of `python -c "import click"`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from benchlib import median_wall

HEAVY = ("pyarrow", "aiohttp")
HELP_TARGET = 3.0


def hfbatch_command() -> list[str]:
    """`hfbatch` as a user types it: the console script beside this Python, else `python -m hfbatch`."""
    script = Path(sys.executable).with_name("hfbatch")
    return [str(script)] if script.exists() else [sys.executable, "-m", "hfbatch"]


def heavy_imports(args: list[str]) -> list[str]:
    """Modules under pyarrow or aiohttp that `python -X importtime -m hfbatch ARGS` imports."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "hfbatch", *args],
        capture_output=True,
        text=True,
        check=True,
    )
    found = []
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or line.count("|") < 2:
            continue
        name = line.rsplit("|", 1)[1].strip()
        if name.split(".")[0] in HEAVY:
            found.append(name)
    return found


def measure_startup(runs: int = 10) -> dict[str, Any]:
    """Median wall times, the ratios to `import click`, and the heavy modules each help command imports."""
    py = sys.executable
    hfbatch = hfbatch_command()
    commands = {
        "python -c pass": [py, "-c", "pass"],
        'python -c "import click"': [py, "-c", "import click"],
        "hfbatch --help": [*hfbatch, "--help"],
        "hfbatch run --help": [*hfbatch, "run", "--help"],
    }
    wall = {name: median_wall(cmd, runs) for name, cmd in commands.items()}
    click_s = wall['python -c "import click"']
    help_ratio = wall["hfbatch --help"] / click_s
    return {
        "runs": runs,
        "median_wall_s": wall,
        "ratio_to_import_click": {name: wall[name] / click_s for name in ("hfbatch --help", "hfbatch run --help")},
        "ratio_to_python_pass": {
            name: wall[name] / wall["python -c pass"] for name in ("hfbatch --help", "hfbatch run --help")
        },
        "heavy_imports": {
            "hfbatch --help": heavy_imports(["--help"]),
            "hfbatch run --help": heavy_imports(["run", "--help"]),
        },
        "target_help_to_click": HELP_TARGET,
        "meets_target": help_ratio <= HELP_TARGET,
    }


def format_startup(result: dict[str, Any]) -> str:
    """A text table of `measure_startup`'s result."""
    wall = result["median_wall_s"]
    lines = [f"Start-up (median of {result['runs']} runs, fresh processes)", f"{'command':<28} {'wall ms':>8}"]
    lines += [f"{name:<28} {s * 1000:>8.1f}" for name, s in wall.items()]
    for name, ratio in result["ratio_to_import_click"].items():
        vs_pass = result["ratio_to_python_pass"][name]
        lines.append(f"{name}: {ratio:.2f}x `import click`, {vs_pass:.2f}x `python -c pass`")
    for name, mods in result["heavy_imports"].items():
        lines.append(f"{name} imports pyarrow/aiohttp: {'no' if not mods else 'YES: ' + ', '.join(mods[:6])}")
    verdict = "meets" if result["meets_target"] else "MISSES"
    lines.append(f"target `hfbatch --help` <= {result['target_help_to_click']:g}x `import click`: {verdict}")
    return "\n".join(lines)


def main() -> None:
    """Measure and print a table (or JSON with --json)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = measure_startup(args.runs)
    print(json.dumps(result, indent=2) if args.json else format_startup(result))


if __name__ == "__main__":
    main()
