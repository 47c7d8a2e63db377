"""JSONL output: the journal is the output itself, one hfbatch record per line.

`JournalFormat` is also the base every other format builds on: it says how a record
becomes a journal line, how the next run finds the row id in such a line (the format's
`IdScanner`, its resume invariant), and what a run's end does to make the final file.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar

from hfbatch.json_codec import dumps_record
from hfbatch.outputs.journal import IdScanner, dumps

__all__ = ["JournalFormat"]


class JournalFormat:
    """A format whose journal is the output itself: plain JSONL, one hfbatch record per line.

    Resume invariant: every line is one whole record, newline last, and its first key
    is `id` (our encoder writes the keys in the record's order, and records start with
    the id), so the id is read without parsing the line.
    """

    name: ClassVar[str] = "jsonl"
    #: The extensions that imply this format (none: it is used only when named).
    suffixes: ClassVar[tuple[str, ...]] = (".jsonl",)
    scanner: ClassVar[IdScanner] = IdScanner()
    #: Whether records must carry each reply's whole body (`response`) for `encode`.
    needs_raw: ClassVar[bool] = False

    @classmethod
    def fits(cls, output: Path) -> bool:
        """Whether this format can write `output` (by its extension)."""
        return output.suffix.lower() in cls.suffixes

    @classmethod
    def writes(cls) -> str:
        """The outputs it writes, for messages."""
        return " or ".join(cls.suffixes) + " files"

    def journal_path(self, output: Path) -> Path:
        """Where results are appended during a run."""
        return output

    def encode(self, record: dict[str, Any]) -> str:
        """One result record as a journal line (compact JSON), without its newline."""
        return dumps_record(record)

    def encode_error(self, record: dict[str, Any]) -> str:
        """One failed row as a line of the errors file, without its newline."""
        return dumps(record)

    def existing_ids(self, output: Path) -> Iterable[Any]:
        """Ids finished in the output file itself when it is not the journal (none here)."""
        return ()

    def finalize(self, output: Path, journal: Path) -> None:
        """Make the final output from the journal at the end of a run (nothing to do here)."""
