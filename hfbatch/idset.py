"""A set of row ids in about 11 bytes per id, whatever the ids are.

Two sets of ids live for a whole run: the ids the output already holds (a resume skips
those rows) and the ids of the other rows the feeder has seen (a second row with one is a
duplicate). A Python set of strings costs some 100 bytes per id, so both are compact here:

- Row numbers, or any non-negative ints dense enough, live in a bitmap: one bit each.
  The bitmap grows only while it costs at most 8 bytes per id it holds (64 KiB are free),
  so a huge or sparse int cannot make it allocate much.
- Every other id is an 8-byte record: 63 bits of a keyed hash of its canonical bytes, and
  one bit that says whether the id was claimed (see `claim`). The canonical bytes of a
  string are its UTF-8 (lone surrogates passed through); those of an int are 0xFF then its
  little-endian two's complement, and no UTF-8 string holds the byte 0xFF, so "1" and 1
  never meet. Records sit in buckets of about 32 (bytearrays searched by `find`), split
  one at a time as the set grows (linear hashing): there is never a pause to rehash all.
  String ids added in bulk (a journal's, by `update_strings` or `update`) are hashed at C
  speed and put in their buckets at the next lookup, sorted part by part.

Two different ids are taken for one when their 63 bits agree: among n ids, odds of that
below n**2 / 2**64 (5e-8 for a million ids, 5e-6 for ten million). The hash is keyed by a
secret drawn at random in each process (CPython's SipHash, or keyed BLAKE2b when
PYTHONHASHSEED fixes that secret), so ids crafted to collide cannot be found ahead of a
run, and a rerun draws anew. Such a collision is not silent while the done ids are ids of
the input (the manifest checks the input is the one they came from): the done and the
seen ids share the hash and each done id is claimed once, so of two rows whose ids collide
the second is reported as a duplicate id, and the first is run, or skipped as done when
the output holds either id. Any other hashable id (a float in a foreign output) is kept
as itself.
"""

from __future__ import annotations

import hashlib
import os
import struct
import sys
from array import array
from bisect import bisect_left
from collections.abc import Callable, Iterable
from itertools import chain, filterfalse, islice
from operator import eq
from typing import Any

__all__ = ["IdSet"]

#: Bytes per hashed id.
RECORD_BYTES = 8
#: Average records per bucket before one more bucket is split off (search cost vs. overhead).
BUCKET_RECORDS = 32
#: Keys `update` takes at a time to see whether they can go in bulk.
BULK_BATCH = 4096
#: The bitmap may always grow to this many bytes (row numbers below 524,288)...
BITMAP_FREE_BYTES = 64 << 10
#: ...and beyond it only while it costs at most this many bytes per id it holds.
BITMAP_BYTES_PER_ID = 8

# A record: the 64-bit hash, signed as hash() gives it, in native byte order (records live in
# memory only); a claimed id's record has its top bit flipped. Buckets are picked by top bits.
_RECORD = struct.Struct("=q")
_PACK = _RECORD.pack
_UNPACK = _RECORD.unpack
_TOP_BIT = -(1 << 63)  # XOR with it flips bit 63 and keeps a signed 64-bit value
_TOP_BYTE = 7 if sys.byteorder == "little" else 0  # the byte of a record that holds bit 63
_INT_TAG = b"\xff"
_PART_SHIFT = 56  # ids added in bulk wait in 256 parts, by the top 8 bits of their hash
_HASH_MASK = (1 << 64) - 1
_SIGN = 1 << 63

Hasher = Callable[[bytes], int]


def _keyed_blake2b() -> Hasher:
    """64 bits of BLAKE2b keyed with a fresh random secret."""
    key = os.urandom(16)
    blake2b = hashlib.blake2b
    from_bytes = int.from_bytes

    def digest(data: bytes) -> int:
        return from_bytes(blake2b(data, digest_size=8, key=key).digest(), "little", signed=True)

    return digest


def _builtin_hash_is_keyed() -> bool:
    """True when hash() of bytes is a 64-bit SipHash keyed by a secret drawn for this process.

    A set PYTHONHASHSEED makes that secret known (0 turns it off), and then crafted ids could
    collide on purpose. The fast path also takes hash() of an ASCII str itself, which CPython
    computes over the same bytes as its UTF-8.
    """
    return (
        sys.hash_info.width == 64
        and sys.hash_info.algorithm.startswith("siphash")
        and os.environ.get("PYTHONHASHSEED", "random") == "random"
        and sys.flags.hash_randomization == 1
        and hash("hfbatch-id\0") == hash(b"hfbatch-id\0")
    )


_FAST = _builtin_hash_is_keyed()
_DEFAULT_HASHER: Hasher = hash if _FAST else _keyed_blake2b()


class IdSet:
    """A set of row ids (str, int or other hashable values); see the module docstring for its cost."""

    __slots__ = (
        "_bit_count",
        "_bits",
        "_claimed_bits",
        "_claimed_other",
        "_claims",
        "_count",
        "_fast",
        "_hashed_hi",
        "_hashed_lo",
        "_hasher",
        "_last",
        "_limit",
        "_other",
        "_pending",
        "_pending_count",
        "_shift",
        "_split",
        "_view",
    )

    def __init__(self, ids: Iterable[Any] = (), *, hasher: Hasher | None = None) -> None:
        """`hasher` (bytes -> 64-bit int) replaces the keyed hash; tests inject weak ones."""
        self._bits = bytearray()
        self._bit_count = 0
        self._claimed_bits = bytearray()
        # Linear hashing by the top bits of the hash: a round starts with N buckets, bucket b in
        # slots 2b and 2b + 1 of the view, and splitting it puts the records whose next bit is 1
        # in a new bucket in slot 2b + 1. A record's bucket is always _view[h >> _shift] (a
        # negative h counts from the end, as its unsigned value would), with no test of the split
        # point; and sorting hashes sorts them by bucket.
        # It starts at two buckets, split by the top bit: a claim flips that bit in place, so no
        # split may ever test it (a claimed record would move to the other bucket and be lost).
        first, second = bytearray(), bytearray()
        self._view = [first, first, second, second]
        self._shift = 62  # 64 bits of hash, less the bits that number the view's slots
        self._split = 0  # buckets split in this round
        self._count = 0
        self._limit = 2 * BUCKET_RECORDS
        self._claims = 0
        # Hashes of string ids added in bulk, by their top 8 bits; put in their buckets at the
        # next lookup, a part at a time: a journal of a million ids costs no Python step per id.
        self._pending: list[array[int]] = []
        self._pending_count = 0
        # The key the last lookup found, its bucket, place and whether it was unclaimed: `claim`
        # just after `in` on the same key (the resume path) need not hash and search again.
        self._last: tuple[Any, bytearray, int, bool] | None = None
        # The range of the non-negative ints kept as records (the bitmap was too sparse for them
        # then): an int in it that the bitmap lacks is looked for among the records too.
        self._hashed_lo, self._hashed_hi = 1, 0
        self._other: set[tuple[type, Any]] = set()
        self._claimed_other: set[tuple[type, Any]] = set()
        self._fast = hasher is None and _FAST
        self._hasher = _DEFAULT_HASHER if hasher is None else hasher
        self.update(ids)

    def __len__(self) -> int:
        if self._pending:
            self._settle()
        return self._bit_count + self._count + len(self._other)

    def add(self, key: Any) -> bool:
        """Add `key`; return True when it was not there before."""
        h: int | None
        if type(key) is str and key.isascii() and self._fast:
            # hash() of a str is cached on it and equals hash() of its UTF-8 bytes.
            h = hash(key)
        elif type(key) is int and key >= 0 and (key >> 3 < len(self._bits) or self._grow_bits(key)):
            byte, bit = key >> 3, 1 << (key & 7)
            bits = self._bits
            if bits[byte] & bit or (self._hashed_lo <= key <= self._hashed_hi and key in self):
                return False
            bits[byte] |= bit
            self._bit_count += 1
            return True
        else:
            h = self._hash(key)
            if h is None:
                other = self._other
                size = len(other)
                other.add((type(key), key))  # typed, so True, 1.0 and 1 stay apart as str and int do
                return len(other) != size
            if type(key) is int and key >= 0:
                self._hashed_lo = min(self._hashed_lo, key) if self._hashed_lo <= self._hashed_hi else key
                self._hashed_hi = max(self._hashed_hi, key)
        if self._pending:
            self._settle()
        bucket = self._view[h >> self._shift]
        record = _PACK(h)
        if bucket.find(record) >= 0 or self._claims:
            if _find(bucket, record) >= 0 or (self._claims and _find(bucket, _PACK(h ^ _TOP_BIT)) >= 0):
                return False
        bucket += record
        self._count += 1
        if self._count > self._limit:
            self._split_bucket()
        return True

    def __contains__(self, key: Any) -> bool:
        h: int | None
        if type(key) is str and key.isascii() and self._fast:
            h = hash(key)
        else:
            if type(key) is int and key >= 0 and key >> 3 < len(self._bits):
                if self._bits[key >> 3] & (1 << (key & 7)):
                    return True
                if not self._hashed_lo <= key <= self._hashed_hi:
                    return False
            h = self._hash(key)
            if h is None:
                return (type(key), key) in self._other
        if self._pending:
            self._settle()
        bucket = self._view[h >> self._shift]
        record = _PACK(h)
        pos = bucket.find(record)
        if pos >= 0 and not pos & 7:
            self._last = (key, bucket, pos, True)
            return True
        pos = _find(bucket, record, pos + 1) if pos >= 0 else -1  # that was across two records
        if pos >= 0:
            self._last = (key, bucket, pos, True)
            return True
        if self._claims and (pos := _find(bucket, _PACK(h ^ _TOP_BIT))) >= 0:
            self._last = (key, bucket, pos, False)
            return True
        return False

    def claim(self, key: Any) -> bool:
        """Mark `key` as met; True if it is in the set and was not claimed before.

        A resume claims each done id as the input reaches it, so a second row with that id
        is told apart as a duplicate without keeping the done ids a second time.
        """
        last = self._last
        if last is None or last[0] is not key:
            return self._claim_looked_up(key)
        _, bucket, pos, unclaimed = last
        if not unclaimed:
            return False
        bucket[pos + _TOP_BYTE] ^= 0x80
        self._last = (key, bucket, pos, False)
        self._claims += 1
        return True

    def _claim_looked_up(self, key: Any) -> bool:
        """`claim` for a key that is not the one last found."""
        if type(key) is int and key >= 0 and key >> 3 < len(self._bits) and self._bits[key >> 3] & (1 << (key & 7)):
            byte, bit = key >> 3, 1 << (key & 7)
            claimed = self._claimed_bits
            if byte >= len(claimed):
                claimed.extend(bytes(len(self._bits) - len(claimed)))
            if claimed[byte] & bit:
                return False
            claimed[byte] |= bit
            return True
        if key not in self:
            return False
        if self._last is None or self._last[0] is not key:  # kept as itself, not hashed
            typed = (type(key), key)
            if typed in self._claimed_other:
                return False
            self._claimed_other.add(typed)
            return True
        return self.claim(key)

    def update(self, keys: Iterable[Any]) -> None:
        """Add every key; runs of ASCII strings go in bulk, as in `update_strings`."""
        add = self.add
        keys = iter(keys)
        while batch := list(islice(keys, BULK_BATCH)):
            if self._fast and set(map(type, batch)) == {str} and all(map(str.isascii, batch)):
                self._add_in_bulk(batch)
            else:
                for key in batch:
                    add(key)

    def update_strings(self, keys: Iterable[str]) -> None:
        """Add many keys known to be strings (the done ids of a journal), faster than one by one."""
        keys = keys if isinstance(keys, list) else list(keys)
        if self._fast and all(map(str.isascii, keys)):
            self._add_in_bulk(keys)
        else:
            self.update(keys)

    def _add_in_bulk(self, keys: list[str]) -> None:
        """Keep the hashes of ASCII string keys, by their top 8 bits, for `_settle` to index."""
        hashes = sorted(map(hash, keys))
        parts = self._pending or [array("q") for _ in range(256)]
        self._pending = parts
        self._pending_count += len(hashes)
        start = 0
        while start < len(hashes):
            part = hashes[start] >> _PART_SHIFT
            end = bisect_left(hashes, (part + 1) << _PART_SHIFT, start)
            parts[part].fromlist(hashes[start:end])
            start = end

    def _settle(self) -> None:
        """Put the hashes kept by `_add_in_bulk` in their buckets as records, duplicates dropped."""
        parts, self._pending = self._pending, []
        total, self._pending_count = self._pending_count, 0
        self._reserve(total)  # no split in between: the buckets picked below stay right
        view, shift = self._view, self._shift
        if self._claims or 8 * total < self._count:  # few: one by one, cheaper than a sweep
            for part in parts:
                for h in part:
                    bucket = view[h >> shift]
                    record = _PACK(h)
                    if _find(bucket, record) < 0 and not (self._claims and _find(bucket, _PACK(h ^ _TOP_BIT)) >= 0):
                        bucket += record
                        self._count += 1
            return
        # Many: each part, sorted (a merge of runs sorted as they came), is one run of records
        # per bucket slot, and equal records are neighbours.
        held = self._count
        for index, part in enumerate(parts):
            parts[index] = array("q")  # freed as it goes
            if not part:
                continue
            hashes = sorted(part)
            if any(map(eq, hashes, islice(hashes, 1, None))):
                hashes = list(dict.fromkeys(hashes))
            run = array("q", hashes)
            start = 0
            for slot in range(hashes[0] >> shift, (hashes[-1] >> shift) + 1):
                end = bisect_left(hashes, (slot + 1) << shift, start)
                if end > start:
                    view[slot] += run[start:end]
                    start = end
            self._count += len(hashes)
        if not held:
            return
        count = 0
        for bucket in {id(b): b for b in view}.values():
            records = array("q", bucket)
            if len(set(records)) != len(records):
                bucket[:] = array("q", dict.fromkeys(records))
            count += len(bucket)
        self._count = count // RECORD_BYTES

    def _hash(self, key: Any) -> int | None:
        """The signed 64-bit hash of a str or int key's canonical bytes; None for other values."""
        if type(key) is str:
            data = key.encode("utf-8", "surrogatepass")
        elif type(key) is int:
            data = _INT_TAG + key.to_bytes((key.bit_length() + 8) >> 3, "little", signed=True)
        else:
            return None
        # As hash() gives them: an injected hasher may return any int.
        return ((self._hasher(data) & _HASH_MASK) ^ _SIGN) - _SIGN

    def _reserve(self, more: int) -> None:
        """Make room for `more` hashed ids ahead: adding them then moves no record already held."""
        need = self._count + self._pending_count + more
        if not self._count and need > 2 * self._limit:  # nothing to move: lay the buckets out at once
            buckets = -(-need // BUCKET_RECORDS)
            start = 1 << (buckets.bit_length() - 1)  # buckets at the start of the round they end in
            view: list[bytearray] = []
            for b in range(start):
                first = bytearray()
                view += (first, bytearray() if b < buckets - start else first)
            self._view, self._shift, self._split = view, 64 - (2 * start).bit_length() + 1, buckets - start
            self._limit = BUCKET_RECORDS * buckets
            self._last = None
        while self._limit < need:
            self._split_bucket()

    def _grow_bits(self, key: int) -> bool:
        """Grow the bitmap to hold `key` if it stays dense enough; False leaves `key` to the records."""
        need = (key >> 3) + 1
        allowed = max(BITMAP_FREE_BYTES, BITMAP_BYTES_PER_ID * (self._bit_count + 1))
        if need > allowed:
            return False
        size = len(self._bits)
        self._bits.extend(bytes(min(max(need, 2 * size), allowed) - size))
        return True

    def _split_bucket(self) -> None:
        """Split the next bucket of this round in two by one more bit of the hash."""
        view, split, shift = self._view, self._split, self._shift
        old = view[2 * split]
        records = array("q", old)
        has_bit = (1 << shift).__and__
        moving = array("q", filter(has_bit, records))
        if moving:
            old[:] = array("q", filterfalse(has_bit, records))
        view[2 * split + 1] = bytearray(moving)
        self._last = None  # places in `old` have moved
        if 2 * (split + 1) == len(view):  # the round is over: each bucket in two slots again
            self._view = list(chain.from_iterable(zip(view, view, strict=True)))
            self._shift, self._split = shift - 1, 0
        else:
            self._split = split + 1
        self._limit = BUCKET_RECORDS * (len(self._view) // 2 + self._split)


def _find(bucket: bytearray, record: bytes, start: int = 0) -> int:
    """Where `record` starts in `bucket`, on a record boundary; -1 if it is not there."""
    pos = bucket.find(record, start)
    while pos >= 0 and pos % RECORD_BYTES:  # a match across two records: keep looking
        pos = bucket.find(record, pos + 1)
    return pos
