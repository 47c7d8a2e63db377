"""The most frequent error messages of an errors file of any size, counted in bounded memory."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["MessageCount", "TopMessages"]

#: Distinct (kind, message) pairs tracked exactly; past twice this, the rarest are dropped.
CAPACITY = 2000
MAX_MESSAGE = 300  # longer messages are cut before counting, so one key costs at most this much
MAX_PROVIDERS_SHOWN = 4
MAX_KINDS = 64


@dataclass(slots=True)
class MessageCount:
    """One (kind, message) group: how often it came, and from where."""

    kind: str
    message: str
    count: int
    exact: bool = True  # False: first seen after rarer messages were dropped, so it may be undercounted
    providers: list[str] = field(default_factory=list)
    more_providers: bool = False
    status: str = ""
    example_id: str = ""


class TopMessages:
    """Counts error records grouped by kind and message, keeping at most 2 x CAPACITY groups."""

    def __init__(self, capacity: int = CAPACITY) -> None:
        self.capacity = capacity
        self.total = 0
        self.by_kind: Counter[str] = Counter()
        self.dropped = False
        self._groups: dict[tuple[str, str], MessageCount] = {}

    def add_all(self, records: Iterable[Any]) -> TopMessages:
        """Count every record of `records` (read one at a time); return self."""
        for record in records:
            self.add(record)
        return self

    def add(self, record: Any) -> None:
        """Count one error record; anything that is not a dict counts as an unreadable record."""
        if not isinstance(record, dict):
            record = {"kind": "unreadable", "message": "a line of the errors file is not a JSON object"}
        self.total += 1
        kind = str(record.get("kind") or "unknown")[:40]
        if kind not in self.by_kind and len(self.by_kind) >= MAX_KINDS:
            kind = "other"
        self.by_kind[kind] += 1
        raw = record.get("message")
        if raw is None or raw == "":
            raw = record.get("error") or "(no message)"
        message = str(raw)[:MAX_MESSAGE]
        group = self._groups.get((kind, message))
        if group is None:
            status = record.get("status")
            group = self._groups[(kind, message)] = MessageCount(
                kind,
                message,
                0,
                exact=not self.dropped,
                status="" if status is None else str(status)[:20],
                example_id="" if record.get("id") is None else str(record.get("id"))[:80],
            )
            if len(self._groups) > 2 * self.capacity:
                self._prune()
        group.count += 1
        provider = record.get("provider")
        if provider is not None and str(provider)[:80] not in group.providers:
            if len(group.providers) < MAX_PROVIDERS_SHOWN:
                group.providers.append(str(provider)[:80])
            else:
                group.more_providers = True

    def _prune(self) -> None:
        """Keep the `capacity` most frequent groups."""
        keep = sorted(self._groups.items(), key=lambda kv: kv[1].count, reverse=True)[: self.capacity]
        self._groups = dict(keep)
        self.dropped = True

    def top(self, n: int) -> list[MessageCount]:
        """The `n` most frequent groups, most frequent first."""
        return sorted(self._groups.values(), key=lambda g: (-g.count, g.kind, g.message))[:n]

    @property
    def distinct(self) -> int:
        """Groups currently tracked (a lower bound on distinct messages once some were dropped)."""
        return len(self._groups)
