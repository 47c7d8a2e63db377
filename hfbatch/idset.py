"""A set of row ids that stays small for the common case of row-number ids."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = ["IdSet"]

_BITMAP_LIMIT = 1 << 32


class IdSet:
    """Ids seen so far: small non-negative ints live in a bitmap (1 bit each), others in a set."""

    __slots__ = ("_bits", "_other")

    def __init__(self, ids: Iterable[Any] = ()) -> None:
        self._bits = bytearray()
        self._other: set[Any] = set()
        for key in ids:
            self.add(key)

    def add(self, key: Any) -> bool:
        """Add `key`; return True when it was not there before."""
        if type(key) is int and 0 <= key < _BITMAP_LIMIT:
            byte, bit = key >> 3, 1 << (key & 7)
            if byte >= len(self._bits):
                self._bits.extend(bytes(max(byte + 1 - len(self._bits), len(self._bits))))
            if self._bits[byte] & bit:
                return False
            self._bits[byte] |= bit
            return True
        other = self._other
        size = len(other)
        other.add(key)
        return len(other) != size

    def update(self, keys: Iterable[Any]) -> None:
        """Add every key."""
        add = self.add
        for key in keys:
            add(key)

    @property
    def strings(self) -> set[str]:
        """The string ids, as a plain set: hot loops test and add string ids through it directly."""
        return self._other

    def update_strings(self, keys: Iterable[str]) -> None:
        """Add keys known to be strings, at the speed of set.update."""
        self._other.update(keys)

    def __bool__(self) -> bool:
        return bool(self._other) or any(self._bits)

    def __contains__(self, key: Any) -> bool:
        if type(key) is int and 0 <= key < _BITMAP_LIMIT:
            byte = key >> 3
            return byte < len(self._bits) and bool(self._bits[byte] & (1 << (key & 7)))
        return key in self._other
