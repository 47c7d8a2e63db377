"""The id set behaves as a Python set of ids, whatever the ids, while it holds a few bytes per id."""

from __future__ import annotations

import json
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import hfbatch.idset as idset_module
from hfbatch.errors import ExitCode
from hfbatch.idset import IdSet
from hfbatch.jobspec import JobSpec
from hfbatch.runner import run_job
from hfbatch.sim import SimConfig, SimModel, SimProvider, SimServer

MODEL = "org/model"

ids = st.one_of(
    st.text(max_size=12),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.integers(min_value=-5, max_value=3000),
    st.sampled_from(["1", 1, "", 0, "\ud800", "Ł", "A\x01", 2**32 - 1, 2**63, -(2**63), True, 1.0, None]),
)


def weak_hash(data: bytes) -> int:
    """A hash with many collisions: a byte sum, so "ab" and "ba" (and most short ids) share one."""
    return sum(data) % 7


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.booleans(), ids), max_size=200))
def test_matches_a_python_set(ops: list[tuple[bool, Any]]) -> None:
    """Any mix of adds and lookups of str, int (any size, negative), bool, float and None ids answers as a set."""
    model: set[tuple[type, Any]] = set()
    ours = IdSet()
    for is_add, key in ops:
        tagged = (type(key), key)
        if is_add:
            assert ours.add(key) == (tagged not in model)
            model.add(tagged)
        else:
            assert (key in ours) == (tagged in model)
    assert len(ours) == len(model)


@settings(max_examples=100, deadline=None)
@given(st.lists(ids, max_size=200), st.lists(ids, max_size=50))
def test_keyed_blake2b_path_matches_a_python_set(added: list[Any], probes: list[Any]) -> None:
    """The path taken when PYTHONHASHSEED is fixed (keyed BLAKE2b) answers as a set too."""
    ours = IdSet(added, hasher=idset_module._keyed_blake2b())
    model = {(type(k), k) for k in added}
    assert len(ours) == len(model)
    assert all(((type(k), k) in model) == (k in ours) for k in added + probes)


@given(st.lists(st.text(), max_size=50))
def test_the_fast_string_path_hashes_the_utf8_bytes(keys: list[str]) -> None:
    """hash() of an ASCII str is that of its UTF-8 bytes, so the fast path and the bytes path agree."""
    fast, generic = IdSet(keys), IdSet(keys, hasher=hash)
    assert fast._fast and not generic._fast
    assert all(k in generic for k in keys) and all(k in fast for k in keys)
    for k in keys:
        if k.isascii():
            assert generic._hash(k) == hash(k)


def test_string_and_int_ids_never_meet() -> None:
    """ "1" and 1, "" and 0, "-1" and -1 are different ids, and so are strings CPython's str hash confuses."""
    ours = IdSet()
    assert ours.add(1) and ours.add("1") and not ours.add(1) and not ours.add("1")
    assert ours.add(0) and ours.add("") and ours.add(-1) and ours.add("-1")
    # "Ł" is stored as the bytes 41 01, as "A\x01" is: hash() gives both the same value.
    assert hash("Ł") == hash("A\x01")
    assert ours.add("Ł") and ours.add("A\x01") and len(ours) == 8


def test_huge_sparse_and_negative_ints_do_not_blow_up_the_bitmap() -> None:
    """Ids near 2**32 or 2**64, negative or beyond any machine int cost bytes, not hundreds of megabytes."""
    tracemalloc.start()
    ours = IdSet([2**32 - 1, 2**32 - 2, 2**32 - 3, 2**64 + 5, -(2**80), 10**40, -1])
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 64 << 10
    assert all(k in ours for k in [2**32 - 1, 2**32 - 2, 2**32 - 3, 2**64 + 5, -(2**80), 10**40, -1])
    assert 2**32 - 4 not in ours and 2**64 + 6 not in ours and -2 not in ours and len(ours) == 7


def test_row_numbers_live_in_the_bitmap() -> None:
    """Row numbers take about a bit each, and an int kept as a record before the bitmap reached it is still found."""
    ours = IdSet([40_000_000])  # 5 MB of bitmap for one id: kept as a record
    ours.update(range(400_000))
    assert len(ours._bits) <= 64 << 10 and ours._count == 1
    assert ours.add(40_000_001) and ours._count == 2  # 8 bytes per id held: still too sparse
    ours.update(range(400_000, 700_000))
    assert not ours.add(40_000_000) and len(ours._bits) * 8 > 40_000_000  # the bitmap grew; the record answered
    assert 40_000_001 in ours and 40_000_002 not in ours and 700_000 not in ours
    assert ours.add(40_000_002) and len(ours) == 700_003


@pytest.mark.parametrize("n", [0, 1, 63, 64, 65, 5000])
def test_buckets_split_without_losing_ids(n: int) -> None:
    """As buckets split one by one, every id added stays found and no absent one appears."""
    keys = [f"id-{i}" for i in range(n)]
    ours = IdSet(keys)
    assert len(ours) == n and all(k in ours for k in keys)
    assert not any(f"id-{i}" in ours for i in range(n, n + 500))
    assert not any(ours.add(k) for k in keys)


def test_string_ids_take_at_most_16_bytes_each() -> None:
    """String ids held take at most 16 bytes each (a Python set of them takes about 100)."""
    keys = [f"row-{i:06d}-{i * 7919 % 16**6:06x}" for i in range(30_000)]
    tracemalloc.start()
    ours = IdSet(keys)
    used, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(ours) == len(keys)
    assert used / len(keys) <= 16


def test_a_weak_hash_collides_where_its_bits_agree() -> None:
    """With a 3-bit hash, ids that share it are told apart by nothing: the set then says "there"."""
    ours = IdSet(["ab"], hasher=weak_hash)
    assert "ba" in ours  # same bytes, other order: every bit of this hash agrees
    assert not ours.add("ba") and len(ours) == 1
    assert "ac" not in ours and ours.add("ac")  # another value: found apart
    # Strings and ints stay apart even so: an int's bytes start with 0xFF.
    assert 0 not in IdSet([""], hasher=weak_hash) or weak_hash(b"\xff\x00") == weak_hash(b"")


def test_a_collision_with_a_done_id_is_reported_not_skipped_silently() -> None:
    """With a hash weak enough to collide, the feeder's logic still leaves an error record for the pair."""
    done = IdSet(["ab"], hasher=weak_hash)  # "ab" was done; "ba" was not, and collides with it
    seen = IdSet(hasher=weak_hash)
    skipped: list[str] = []
    duplicates: list[str] = []
    for row_id in ["ba", "ab"]:  # as runner._feed: done rows are claimed, the others added to seen
        if row_id in done:
            (skipped if done.claim(row_id) else duplicates).append(row_id)
        elif not seen.add(row_id):
            duplicates.append(row_id)
    assert skipped == ["ba"] and duplicates == ["ab"]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["add", "in", "claim"]), ids), max_size=200))
def test_claims_match_a_model(ops: list[tuple[str, Any]]) -> None:
    """claim is True once per id in the set, and claimed ids stay in it, for every kind of id."""
    model: set[tuple[type, Any]] = set()
    claimed: set[tuple[type, Any]] = set()
    ours = IdSet()
    for op, key in ops:
        tagged = (type(key), key)
        if op == "add":
            assert ours.add(key) == (tagged not in model)
            model.add(tagged)
        elif op == "in":
            assert (key in ours) == (tagged in model)
        else:
            assert ours.claim(key) == (tagged in model and tagged not in claimed)
            if tagged in model:
                claimed.add(tagged)
    assert len(ours) == len(model)


def test_a_claim_after_a_lookup_survives_splits() -> None:
    """The place a lookup remembers for the next claim is forgotten when buckets split under it."""
    ours = IdSet(f"k{i}" for i in range(100))
    key = "k7"
    assert key in ours
    ours.update(f"more{i}" for i in range(5000))  # many splits move "k7"
    assert ours.claim(key) and not ours.claim(key) and key in ours and not ours.add(key)
    assert all(ours.claim(f"more{i}") for i in range(5000)) and ours.add("new") and len(ours) == 5101


def test_strings_added_in_bulk_match_adding_one_by_one() -> None:
    """Journal ids added in bulk (dealt to buckets at the next lookup) keep duplicates out, within and across."""
    keys = [f"r{i % 7000}" for i in range(10_000)] + ["ünï", "Ł"]
    ours = IdSet()
    ours.update_strings(keys[:3000])
    assert len(ours) == 3000  # dealt out: none held yet
    ours.update_strings(iter(keys[3000:]))  # many again: dealt out, then duplicates dropped bucket by bucket
    assert len(ours) == 7002 and all(k in ours for k in keys) and "r7000" not in ours
    ours.update_strings(["r1", "r7000", "r7000"])  # few next to those held: one by one
    assert len(ours) == 7003 and not any(ours.add(k) for k in keys) and ours.add("r7001")
    assert all(ours.claim(f"r{i}") for i in range(7001)) and not ours.claim("r0")
    ours.update(["r0", "r9999", 5, "r9999"])  # after claims: one by one, a claimed id is not added again
    assert len(ours) == 7006 and not ours.claim("r0") and ours.claim("r9999")


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.tuples(st.sampled_from(["add", "in", "claim"]), ids),
            st.tuples(st.just("bulk"), st.lists(st.text(max_size=4), max_size=40)),
        ),
        max_size=60,
    )
)
def test_bulk_adds_between_lookups_and_claims_match_a_model(ops: list[tuple[str, Any]]) -> None:
    """Bulk string adds interleaved with adds, lookups and claims answer as a set with claim marks."""
    model: set[tuple[type, Any]] = set()
    claimed: set[tuple[type, Any]] = set()
    ours = IdSet()
    for op, arg in ops:
        tagged = (type(arg), arg)
        if op == "bulk":
            ours.update_strings(arg)
            model.update((str, k) for k in arg)
        elif op == "add":
            assert ours.add(arg) == (tagged not in model)
            model.add(tagged)
        elif op == "in":
            assert (arg in ours) == (tagged in model)
        else:
            assert ours.claim(arg) == (tagged in model and tagged not in claimed)
            claimed.update({tagged} & model)
    assert len(ours) == len(model)


# --------------------------------------------------------------------------- whole runs


@pytest.fixture
async def sim(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[SimServer]:
    """A running simulator with one provider; time runs a thousand times faster."""
    monkeypatch.setenv("HFBATCH_TIME_SCALE", "0.001")
    config = SimConfig(models=(SimModel(MODEL, (SimProvider("p1"),)),))
    async with SimServer(config) as server:
        monkeypatch.setenv("HF_TOKEN", config.token)
        yield server


def job(sim: SimServer, tmp_path: Path, ids: list[Any]) -> JobSpec:
    """A job over one row per id, written to tmp_path/out.jsonl."""
    inp = tmp_path / "in.jsonl"
    inp.write_text("".join(json.dumps({"id": i, "prompt": f"say {i}"}) + "\n" for i in ids))
    return JobSpec(input=inp, output=tmp_path / "out.jsonl", api_base=sim.api_base, hub_url=sim.hub_url, model=MODEL)


def errors_of(spec: JobSpec) -> list[dict[str, Any]]:
    """The error records of the latest run."""
    if not spec.errors_path.exists():
        return []
    return [json.loads(line) for line in spec.errors_path.read_text().splitlines()]


async def test_a_resume_reports_a_duplicate_of_a_done_id_again(sim: SimServer, tmp_path: Path) -> None:
    """Done ids are claimed, not kept twice: a second row with a done id is still a duplicate on every rerun."""
    spec = job(sim, tmp_path, ["a", "b", 7, "c", "b", 7, 10**30, -4])
    first = await run_job(spec)
    assert first.exit_code is ExitCode.FAILED_ROWS
    assert sorted(repr(e["id"]) for e in errors_of(spec)) == ["'b'", "7"]
    sent = sim.counts()["p1"]["requests"]
    second = await run_job(spec)
    assert sim.counts()["p1"]["requests"] == sent and second.stats["rows"]["skipped_already_done"] == 6
    assert sorted(repr(e["id"]) for e in errors_of(spec)) == ["'b'", "7"]


def colliding(data: bytes) -> int:
    """A hash under which "ab" and "ba" collide (their bytes sum alike) and most other ids do not."""
    return sum(data) * 0x9E3779B97F4A7C15


def other_secret(data: bytes) -> int:
    """Another draw of the secret: "ab" and "ba" no longer collide."""
    return sum(i * b for i, b in enumerate(data, 1)) * 0x9E3779B97F4A7C15


async def test_ids_whose_hashes_collide_are_reported_and_a_rerun_settles_them(
    sim: SimServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A collision never drops a row silently: the second id errors as a duplicate, and a rerun (new secret) runs it."""
    monkeypatch.setattr(idset_module, "_FAST", False)
    monkeypatch.setattr(idset_module, "_DEFAULT_HASHER", colliding)
    spec = job(sim, tmp_path, ["ab", "cd", "ba"])
    assert (await run_job(spec)).exit_code is ExitCode.FAILED_ROWS
    assert [(e["id"], "duplicate id" in e["message"]) for e in errors_of(spec)] == [("ba", True)]
    # Same secret: "ba" meets the done "ab" and is reported again, not skipped as done.
    assert (await run_job(spec)).exit_code is ExitCode.FAILED_ROWS
    assert [e["id"] for e in errors_of(spec)] == ["ba"]
    monkeypatch.setattr(idset_module, "_DEFAULT_HASHER", other_secret)
    assert (await run_job(spec)).exit_code is ExitCode.OK
    assert sorted(json.loads(line)["id"] for line in spec.output.read_text().splitlines()) == ["ab", "ba", "cd"]


def test_a_claimed_id_stays_claimed_and_present_across_bucket_splits() -> None:
    """Claims made before the set grows are kept: the id is neither lost nor added a second time."""
    ours = IdSet()
    first = [f"id{i}" for i in range(20)]
    ours.update_strings(first)
    assert all(ours.claim(k) for k in first)
    ours.update_strings([f"more{i}" for i in range(5000)] + first)  # many splits, and the claimed ids again
    assert not any(ours.claim(k) for k in first)
    assert not any(ours.add(k) for k in first)
    assert len(ours) == 5020
