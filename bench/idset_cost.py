"""What the id set costs per id: bytes held and CPU time per operation, against a plain Python set.

    python bench/idset_cost.py                  # 1,000,000 ids of each kind
    python bench/idset_cost.py --ids 200000 --kind str --json

For each kind of id (strings like "row-000123-abcdef", row numbers, sparse ints, ints near 2**32,
huge and negative ints) it fills an `IdSet` and a `set` with N ids and reports, for each:

- bytes/id: memory held per id once built (tracemalloc; for `set`, the id objects it keeps alive
  are counted too, as the old IdSet kept them), and at the peak while it was built;
- build ns: CPU time per id to build it from a list of ids and make a first lookup (what a resume
  does with the ids of its output);
- add ns: CPU time per id to add N/10 new ids one by one (the feeder, for each row);
- hit ns / miss ns: CPU time per lookup of N/10 ids that are there / that are not (the resume).

Each id is a fresh object made inside the timed loop, as the readers make them; the cost of making
it is measured alone and taken off. Times are the best of 5 rounds, in process CPU time.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import time
import tracemalloc
from collections.abc import Callable, Iterable
from typing import Any

from benchlib import REPO_DIR

try:
    from hfbatch.idset import IdSet
except ImportError:  # run from a checkout without `pip install -e .`
    import sys

    sys.path.insert(0, str(REPO_DIR))
    from hfbatch.idset import IdSet

REPEAT = 5

Kinds = dict[str, Callable[[int, int], list[Any]]]


def string_ids(start: int, n: int) -> list[Any]:
    """Ids like "row-000123-abcdef", 17 characters, as string-id datasets have."""
    rng = random.Random(start)
    return [f"row-{i:06d}-{rng.getrandbits(24):06x}" for i in range(start, start + n)]


KINDS: Kinds = {
    "str": string_ids,
    "row number": lambda start, n: list(range(start, start + n)),
    "sparse int (x1000)": lambda start, n: [i * 1000 for i in range(start, start + n)],
    "int near 2**32": lambda start, n: [2**32 - 1 - i for i in range(start, start + n)],
    "huge/negative int": lambda start, n: [(-1) ** i * (10**30 + i) for i in range(start, start + n)],
}


def fresh(key: Any) -> Any:
    """An equal id in a new object, as a reader makes it (so no hash is cached on it)."""
    return (key + ".")[:-1] if type(key) is str else key + 0


def best_ns(run: Callable[[], object], per: int) -> float:
    """Best of REPEAT: CPU nanoseconds per item of one call of `run`."""
    best = float("inf")
    for _ in range(REPEAT):
        started = time.process_time()
        run()
        best = min(best, time.process_time() - started)
    return best / per * 1e9


def each(op: Callable[[Any], object] | None, keys: list[Any]) -> Callable[[], None]:
    """A loop calling `op(fresh(key))` for every key (op None: making the key alone)."""

    def loop() -> None:
        if op is None:
            for key in keys:
                fresh(key)
        else:
            for key in keys:
                op(fresh(key))

    return loop


def build(make: Callable[[Iterable[Any]], Any], keys: list[Any]) -> Any:
    """The container of `keys`, with one lookup made (an IdSet puts ids added in bulk in place then)."""
    held = make(keys)
    _ = "absent" in held
    return held


def bytes_per_id(make: Callable[[Iterable[Any]], Any], keys: list[Any]) -> tuple[float, float]:
    """Bytes a container of `keys` holds per id once built, and at the peak while built."""
    gc.collect()
    tracemalloc.start()
    held = build(make, keys)
    size, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    if isinstance(held, set):
        # A set holds the callers' id objects: count them, as the old IdSet kept them alive.
        own = sum(key.__sizeof__() for key in keys if not (type(key) is int and -5 <= key <= 256))
        size, peak = size + own, peak + own
    del held
    return size / len(keys), peak / len(keys)


def adds_ns(held: Any, batches: list[list[Any]]) -> float:
    """Best over the batches: CPU nanoseconds per `held.add` of a new id."""
    best = float("inf")
    for batch in batches:  # each round adds ids not added before, so each add is a real insert
        started = time.process_time()
        each(held.add, batch)()
        best = min(best, time.process_time() - started)
    return best / len(batches[0]) * 1e9


def measure(kind: str, ids: int) -> dict[str, Any]:
    """Bytes per id and CPU ns per operation for one kind of id, IdSet against set."""
    make_keys = KINDS[kind]
    keys = make_keys(0, ids)
    sample = max(1, ids // 10)
    present = keys[:: ids // sample][:sample]
    absent = make_keys(ids, sample)
    new = make_keys(10 * ids, sample * REPEAT)
    batches = [new[i * sample : (i + 1) * sample] for i in range(REPEAT)]
    fresh_ns = best_ns(each(None, present), sample)
    result: dict[str, Any] = {"kind": kind, "ids": ids}
    makers: dict[str, Callable[[Iterable[Any]], Any]] = {"idset": IdSet, "set": set}
    for name, make in makers.items():
        held_bytes, peak_bytes = bytes_per_id(make, keys)
        held = build(make, keys)
        result[name] = {
            "bytes_per_id": held_bytes,
            "peak_bytes_per_id": peak_bytes,
            "build_ns": best_ns(lambda: build(make, keys), ids),  # noqa: B023 - called before `make` changes
            "add_ns": adds_ns(held, batches) - fresh_ns,
            "hit_ns": best_ns(each(held.__contains__, present), sample) - fresh_ns,
            "miss_ns": best_ns(each(held.__contains__, absent), sample) - fresh_ns,
        }
        del held
    return result


def format_results(results: list[dict[str, Any]]) -> str:
    """A text table of `measure`'s results."""
    lines = [
        f"{'ids':<28} {'':>6} {'bytes/id':>9} {'peak':>6} {'build ns':>9} {'add ns':>7} {'hit ns':>7} {'miss ns':>8}",
    ]
    for r in results:
        for name in ("idset", "set"):
            m = r[name]
            label = f"{r['kind']} ({r['ids']:,})" if name == "idset" else ""
            lines.append(
                f"{label:<28} {name:>6} {m['bytes_per_id']:>9.1f} {m['peak_bytes_per_id']:>6.1f}"
                f" {m['build_ns']:>9.0f} {m['add_ns']:>7.0f} {m['hit_ns']:>7.0f} {m['miss_ns']:>8.0f}"
            )
    return "\n".join(lines)


def main() -> None:
    """Parse the flags, measure each kind of id and print a table (or JSON with --json)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ids", type=int, default=1_000_000)
    parser.add_argument("--kind", action="append", choices=sorted(KINDS), help="only these kinds (repeatable)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = [measure(kind, args.ids) for kind in (args.kind or KINDS)]
    print(json.dumps(results, indent=2) if args.json else format_results(results))


if __name__ == "__main__":
    main()
