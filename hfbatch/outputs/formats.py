"""The registry of output formats: a name, the extensions that imply it, and the class that writes it.

Every format writes through a JSONL journal (`journal.py`); `jsonl.py` defines the base
class. Adding a format is one module defining a `JournalFormat` subclass and one line in
`FORMATS` below.
"""

from __future__ import annotations

from pathlib import Path

from hfbatch.outputs.jsonl import JournalFormat
from hfbatch.outputs.openai import OpenAIFormat
from hfbatch.outputs.parquet import ParquetFormat

__all__ = ["FORMATS", "format_for", "suffix_format"]

FORMATS: dict[str, type[JournalFormat]] = {
    "jsonl": JournalFormat,
    "parquet": ParquetFormat,
    "openai": OpenAIFormat,
}
_BY_SUFFIX = {suffix: name for name, cls in FORMATS.items() for suffix in cls.suffixes}


def suffix_format(output: Path) -> str | None:
    """The format an output's extension implies, or None."""
    return _BY_SUFFIX.get(output.suffix.lower())


def format_for(output: Path, name: str | None = None) -> JournalFormat:
    """The format named `name`, else the one the output's extension implies; KeyError when neither is known."""
    key = name or suffix_format(output)
    if key is None:
        raise KeyError(output.suffix)
    return FORMATS[key]()
