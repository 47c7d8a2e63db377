"""`--shard K/N`: which rows one of N independent processes takes, by a stable hash of each row's id.

Every shard reads the whole input and keeps the rows whose id hashes to K modulo N, so the
shards are disjoint and together cover the input, whatever the engine that runs them
(a Kubernetes Indexed Job, a Slurm array, HF Jobs) and whatever order they run in. The hash
is blake2b over a type-tagged form of the id (`"1"` and `1` are different ids), so it does
not depend on the row's position, the number of rows, the Python version or
PYTHONHASHSEED. A row without a usable id (a line that is not JSON) belongs to the shard of
its row number, so exactly one shard reports it as bad.

`--shard auto` reads K and N from the engine's environment (`SHARD_ENV` below); the output
path (and `--errors`, `--stats`) may hold `{shard}`, which becomes `00003-of-00008`, so that
the parts sort in shard order and name their place. Settings are never divided by N:
`--concurrency`, `--rpm`, `--tpm` and spending limits apply to each shard process alone.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Container, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hfbatch.errors import JobSpecError
from hfbatch.inputs.rows import DoneRow

if TYPE_CHECKING:
    from hfbatch.jobspec import JobSpec

__all__ = ["AUTO", "PLACEHOLDER", "SHARD_ENV", "Shard", "parse_shard", "resolve_shard", "shard_from_env", "shard_of"]

#: The value of `--shard` that reads K (and N) from the environment.
AUTO = "auto"
#: Replaced in output, errors and stats paths by the shard's name.
PLACEHOLDER = "{shard}"
#: Where `--shard auto` looks, in this order: the variable holding K and, when the engine sets one, N.
SHARD_ENV = (
    ("JOB_COMPLETION_INDEX", None),  # Kubernetes Indexed Job: N is the Job's `completions`, given as --shards
    ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT"),  # K is offset by SLURM_ARRAY_TASK_MIN
)
_SLURM_MIN = "SLURM_ARRAY_TASK_MIN"
# Eight bytes of blake2b: uniform enough that N shards of a million rows differ by well under 1%.
_DIGEST_SIZE = 8


def _canonical(key: str | int) -> bytes:
    """An id's bytes for hashing, tagged with its type so that the string "1" and the integer 1 differ."""
    if type(key) is int:
        return b"i:" + str(key).encode()
    # Lone surrogates (valid in JSON ids) pass through unchanged rather than failing the run.
    return b"s:" + str(key).encode("utf-8", "surrogatepass")


def shard_of(key: str | int, n: int) -> int:
    """The shard (0 to n - 1) that owns the row with id `key`."""
    digest = hashlib.blake2b(_canonical(key), digest_size=_DIGEST_SIZE).digest()
    return int.from_bytes(digest, "big") % n


@dataclass(frozen=True, slots=True)
class Shard:
    """Shard `k` of `n` (0 <= k < n)."""

    k: int
    n: int

    def __str__(self) -> str:
        return f"{self.k}/{self.n}"

    @property
    def name(self) -> str:
        """What `{shard}` in a path becomes: zero-padded, so the parts sort in shard order."""
        return f"{self.k:05d}-of-{self.n:05d}"

    def owns(self, key: str | int) -> bool:
        """True when the row with id `key` is this shard's."""
        return self.n == 1 or shard_of(key, self.n) == self.k

    def owns_item(self, item: Any) -> bool:
        """True when an input item (Row, DoneRow or BadRow) is this shard's; an id-less bad row goes by its index."""
        key = item.id
        return self.owns(item.index if key is None else key)

    def elsewhere(self, item: Any, done: Container[Any]) -> bool:
        """True when an item read through `skip_others(done)` is another shard's, hashing as little as possible.

        Readers test ids against that container before building a row, so a Row (and a BadRow with an
        id) is this shard's, and a DoneRow whose id is not in `done` is another shard's.
        """
        if item.id is None:
            return not self.owns(item.index)
        if isinstance(item, DoneRow):
            return item.id not in done
        return False

    def skip_others(self, done: Container[Any]) -> Container[Any]:
        """`done` widened to the other shards' ids, so readers skip those rows without building them."""
        return _DoneOrElsewhere(done, self)


class _DoneOrElsewhere:
    """A `done` container for readers: an id is 'done' here when it is done, or another shard's."""

    __slots__ = ("_done", "_shard")

    def __init__(self, done: Container[Any], shard: Shard) -> None:
        self._done = done
        self._shard = shard

    def __contains__(self, key: object) -> bool:
        if key in self._done:
            return True
        return (type(key) is str or type(key) is int) and not self._shard.owns(key)

    def __bool__(self) -> bool:
        return True  # other shards' rows are always there to skip


def parse_shard(text: str, where: str = "key 'shard'") -> Shard | None:
    """`K/N` as a Shard, None for `auto`; JobSpecError naming `where` when it is neither."""
    if text == AUTO:
        return None
    k_text, sep, n_text = text.partition("/")
    if not sep or not k_text.strip().isdigit() or not n_text.strip().isdigit():
        raise JobSpecError(f"{where}: expected K/N (e.g. 3/8, K counted from 0) or 'auto', got {text!r}")
    k, n = int(k_text), int(n_text)
    if n < 1 or not 0 <= k < n:
        raise JobSpecError(f"{where}: shard {k} of {n} does not exist: K goes from 0 to N - 1")
    return Shard(k, n)


def _env_int(env: Mapping[str, str], name: str) -> int:
    raw = env.get(name, "").strip()
    if not raw.lstrip("-").isdigit():
        raise JobSpecError(f"--shard auto: {name}={raw!r} is not a whole number")
    return int(raw)


def shard_from_env(env: Mapping[str, str], shards: int | None) -> Shard:
    """The shard `--shard auto` means here: K from the engine's variables, N from `shards` or the engine.

    JobSpecError (exit 2) when no variable is set, N is unknown, or K is out of range.
    """
    for k_name, n_name in SHARD_ENV:
        if k_name not in env:
            continue
        k = _env_int(env, k_name)
        if k_name == "SLURM_ARRAY_TASK_ID" and _SLURM_MIN in env:
            k -= _env_int(env, _SLURM_MIN)
        n = shards
        if n is None and n_name is not None and n_name in env:
            n = _env_int(env, n_name)
        if n is None:
            raise JobSpecError(
                f"--shard auto: {k_name} is set but the number of shards is not; give --shards N "
                "(the Job's completions)"
            )
        if n < 1 or not 0 <= k < n:
            raise JobSpecError(f"--shard auto: {k_name} gives shard {k}, outside 0 to {n - 1} (of {n} shards)")
        return Shard(k, n)
    names = " or ".join(k for k, _ in SHARD_ENV)
    raise JobSpecError(f"--shard auto: neither {names} is set; give --shard K/N")


def _expand(path: Path | None, shard: Shard | None, key: str) -> Path | None:
    if path is None or PLACEHOLDER not in str(path):
        return path
    if shard is None:
        raise JobSpecError(f"key '{key}': {path} holds {PLACEHOLDER}, which only a sharded run (--shard) fills in")
    return Path(str(path).replace(PLACEHOLDER, shard.name))


def resolve_shard(spec: JobSpec, env: Mapping[str, str] | None = None) -> JobSpec:
    """The spec with `shard` as K/N (auto read from `env`) and `{shard}` filled in its paths; JobSpecError if wrong.

    Idempotent: a resolved spec comes back unchanged.
    """
    shard: Shard | None = None
    if spec.shard is not None:
        shard = parse_shard(spec.shard) or shard_from_env(os.environ if env is None else env, spec.shards)
        if spec.shards is not None and spec.shards != shard.n:
            raise JobSpecError(f"key 'shards' is {spec.shards}, but shard {shard} is one of {shard.n}")
    elif spec.shards is not None:
        raise JobSpecError("key 'shards' goes with shard = 'auto'")
    output = _expand(spec.output, shard, "output")
    assert output is not None
    return replace(
        spec,
        shard=None if shard is None else str(shard),
        shards=None,
        output=output,
        errors=_expand(spec.errors, shard, "errors"),
        stats=_expand(spec.stats, shard, "stats"),
    )


def spec_shard(spec: JobSpec) -> Shard | None:
    """The shard of a resolved spec, or None when the run takes every row."""
    if spec.shard is None:
        return None
    shard = parse_shard(spec.shard)
    if shard is None:
        raise JobSpecError("shard 'auto' must be resolved first (resolve_shard)")
    return None if shard.n == 1 else shard
