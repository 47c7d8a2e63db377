"""Where rows come from: a registry of input formats, each streaming `Row`s with bounded memory.

`open_input(spec)` checks the whole input up front and raises `InputError` for anything
that makes it unusable; iterating the returned reader streams `Row`s, `BadRow`s and
`DoneRow`s. One module per format (`jsonl.py`, `parquet.py`), the shared reader in
`base.py`, the per-row rules in `rows.py`. Adding a format is one module and one entry
in `FORMATS`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hfbatch.errors import InputError
from hfbatch.inputs.base import InputReader, InputSpec, one_line
from hfbatch.inputs.jsonl import open_jsonl
from hfbatch.inputs.parquet import open_parquet
from hfbatch.inputs.rows import BadRow, DoneRow, Row, RowBuilder
from hfbatch.template import Template

__all__ = ["FORMATS", "BadRow", "DoneRow", "InputFormat", "InputReader", "InputSpec", "Row", "open_input"]


@dataclass(frozen=True, slots=True)
class InputFormat:
    """One input format: the names it is recognised by and how to open it."""

    name: str
    suffixes: tuple[str, ...]
    #: Parquet structs give every message every field, unset ones as null: the rows drop them.
    nulls_in_structs: bool
    open: Callable[[Path, InputSpec, RowBuilder, Template | None], InputReader]
    folders: bool = False  # a folder of this format's part files is one input


def _jsonl(path: Path, spec: InputSpec, builder: RowBuilder, template: Template | None) -> InputReader:
    return open_jsonl(path, builder, keep_columns=spec.keep_columns)


FORMATS: tuple[InputFormat, ...] = (
    InputFormat("jsonl", (".jsonl", ".jsonl.gz"), False, _jsonl),
    InputFormat("parquet", (".parquet",), True, open_parquet, folders=True),
)
SUPPORTED = ".jsonl, .jsonl.gz, .parquet, or a folder of .parquet part files"


def _format_of(path: Path, is_dir: bool) -> InputFormat:
    name = path.name.lower()
    for fmt in FORMATS:
        if (is_dir and fmt.folders) or (not is_dir and name.endswith(fmt.suffixes)):
            return fmt
    hint = " (if it holds one JSON object per line, rename it to .jsonl)" if name.endswith(".json") else ""
    raise InputError(f"{path}: unsupported input type{hint}; hfbatch reads {SUPPORTED}")


def open_input(spec: InputSpec) -> InputReader:
    """Check the input named by `spec` and return a reader; raises InputError if unusable."""
    path = Path(spec.path)
    template: Template | None = None
    if spec.template is not None:
        try:
            template = Template(spec.template)
        except ValueError as exc:
            raise InputError(f"{path}: the template {spec.template!r} is not usable: {exc}") from None
    try:
        is_dir = path.is_dir()
        exists = is_dir or path.is_file()
    except OSError as exc:
        raise InputError(f"{path}: cannot be reached ({one_line(exc)}); check the path") from exc
    if not exists:
        raise InputError(f"{path}: no such file or folder; check the path")
    fmt = _format_of(path, is_dir)
    builder = RowBuilder(
        id_column=spec.id_column,
        prompt_column=spec.prompt_column,
        template=template,
        keep_columns=spec.keep_columns,
        system=spec.system,
        nulls_in_structs=fmt.nulls_in_structs,
    )
    return fmt.open(path, spec, builder, template)
