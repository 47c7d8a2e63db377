"""Where rows come from: a registry of input formats, each streaming `Row`s with bounded memory.

`open_input(spec)` checks the whole input up front and raises `InputError` for anything
that makes it unusable; iterating the returned reader streams `Row`s, `BadRow`s and
`DoneRow`s. One module per format (`jsonl.py`, `parquet.py`, `hub.py` for `hf://`), the shared reader in
`base.py`, the per-row rules in `rows.py`. Adding a format is one module and one entry
in `FORMATS`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hfbatch.errors import InputError
from hfbatch.inputs.base import HUB_SCHEME, InputReader, InputSpec, input_name, one_line
from hfbatch.inputs.jsonl import open_jsonl
from hfbatch.inputs.parquet import open_parquet
from hfbatch.inputs.rows import BadRow, DoneRow, Row, RowBuilder
from hfbatch.template import Template

__all__ = ["FORMATS", "BadRow", "DoneRow", "InputFormat", "InputReader", "InputSpec", "Row", "input_name", "open_input"]


@dataclass(frozen=True, slots=True)
class InputFormat:
    """One input format: the names it is recognised by and how to open it."""

    name: str
    suffixes: tuple[str, ...]
    #: Parquet structs give every message every field, unset ones as null: the rows drop them.
    nulls_in_structs: bool
    open: Callable[[Path, InputSpec, RowBuilder, Template | None], InputReader]
    folders: bool = False  # a folder of this format's part files is one input
    scheme: str | None = None  # an input named by URL (hf://...) rather than by a local path


def _jsonl(path: Path, spec: InputSpec, builder: RowBuilder, template: Template | None) -> InputReader:
    return open_jsonl(path, builder, keep_columns=spec.keep_columns)


def _hub(path: Path, spec: InputSpec, builder: RowBuilder, template: Template | None) -> InputReader:
    # huggingface_hub is an optional extra: imported only for an hf:// input.
    from hfbatch.inputs.hub import open_hub

    return open_hub(path, spec, builder, template)


FORMATS: tuple[InputFormat, ...] = (
    InputFormat("jsonl", (".jsonl", ".jsonl.gz"), False, _jsonl),
    InputFormat("parquet", (".parquet",), True, open_parquet, folders=True),
    # Parquet first on the Hub; a JSONL message's null fields are dropped as well, which no API takes anyway.
    InputFormat("hub", (), True, _hub, scheme=HUB_SCHEME),
)
SUPPORTED = ".jsonl, .jsonl.gz, .parquet, a folder of .parquet part files, or hf://datasets/ORG/NAME"


def _format_of(path: Path, is_dir: bool) -> InputFormat:
    name = path.name.lower()
    for fmt in FORMATS:
        if (is_dir and fmt.folders) or (not is_dir and name.endswith(fmt.suffixes)):
            return fmt
    hint = " (if it holds one JSON object per line, rename it to .jsonl)" if name.endswith(".json") else ""
    raise InputError(f"{path}: unsupported input type{hint}; hfbatch reads {SUPPORTED}")


def _scheme_format(name: str) -> InputFormat | None:
    return next((f for f in FORMATS if f.scheme is not None and name.startswith(f.scheme)), None)


def open_input(spec: InputSpec) -> InputReader:
    """Check the input named by `spec` and return a reader; raises InputError if unusable."""
    path = Path(spec.path)
    name = input_name(path)
    template: Template | None = None
    if spec.template is not None:
        try:
            template = Template(spec.template)
        except ValueError as exc:
            raise InputError(f"{name}: the template {spec.template!r} is not usable: {exc}") from None
    by_scheme = _scheme_format(name)
    if by_scheme is not None:
        return by_scheme.open(path, spec, _builder(spec, template, by_scheme), template)
    try:
        is_dir = path.is_dir()
        exists = is_dir or path.is_file()
    except OSError as exc:
        raise InputError(f"{path}: cannot be reached ({one_line(exc)}); check the path") from exc
    if not exists:
        raise InputError(f"{path}: no such file or folder; check the path")
    fmt = _format_of(path, is_dir)
    return fmt.open(path, spec, _builder(spec, template, fmt), template)


def _builder(spec: InputSpec, template: Template | None, fmt: InputFormat) -> RowBuilder:
    return RowBuilder(
        id_column=spec.id_column,
        prompt_column=spec.prompt_column,
        template=template,
        keep_columns=spec.keep_columns,
        system=spec.system,
        nulls_in_structs=fmt.nulls_in_structs,
    )
