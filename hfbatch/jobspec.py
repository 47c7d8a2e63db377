"""Job settings: one table of fields drives the TOML job file, the CLI flags and validation.

A job file holds any of the keys below at its top level, plus an optional `[sim]`
table that starts the built-in simulated server in-process. Flags override the file.
Relative paths in a job file are relative to the file's folder; on the command line,
to the current folder.
"""

from __future__ import annotations

import difflib
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from hfbatch import defaults
from hfbatch.errors import JobSpecError

__all__ = ["FIELDS", "JobField", "JobSpec", "build_spec", "load_job_file"]


@dataclass(frozen=True, slots=True)
class JobField:
    """One setting: its key, type, default and help; the flag is the key with dashes."""

    key: str
    kind: str  # str | path | int | float | bool | list
    help: str
    default: Any = None
    minimum: float | None = None
    in_manifest: bool = False  # a change to it makes earlier results incomparable

    @property
    def flag(self) -> str:
        """The command-line flag for this key."""
        return "--" + self.key.replace("_", "-")


FIELDS: tuple[JobField, ...] = (
    JobField("input", "path", "Input file: .jsonl, .jsonl.gz, .parquet or a folder of .parquet parts."),
    JobField("output", "path", "Output file: .jsonl or .parquet (by extension)."),
    JobField("model", "str", "Model id or alias, e.g. meta-llama/Llama-3.3-70B-Instruct.", in_manifest=True),
    JobField("providers", "list", "Providers to try, in order (comma-separated). Default: the Hub's live ones."),
    JobField("api_base", "str", "OpenAI-compatible base URL.", defaults.DEFAULT_API_BASE, in_manifest=True),
    JobField("hub_url", "str", "Hub URL for provider mappings (env HF_ENDPOINT)."),
    JobField("api_key_env", "str", "Environment variable holding the token.", defaults.DEFAULT_API_KEY_ENV),
    JobField(
        "id_column",
        "str",
        "Column holding each row's id (default: id, then custom_id, else row number).",
        in_manifest=True,
    ),
    JobField("prompt_column", "str", "Column holding the prompt text.", "prompt", in_manifest=True),
    JobField("template", "str", "Prompt template over columns, e.g. 'Summarise: {text}'.", in_manifest=True),
    JobField("system", "str", "System prompt for rows without their own.", in_manifest=True),
    JobField("keep_columns", "list", "Input columns copied to the output (comma-separated).", ()),
    JobField("max_tokens", "int", "Maximum tokens to generate per row.", defaults.DEFAULT_MAX_TOKENS, 1, True),
    JobField("temperature", "float", "Sampling temperature.", None, 0, True),
    JobField("top_p", "float", "Nucleus sampling probability.", None, 0, True),
    JobField("seed", "int", "Sampling seed, for providers that honour it.", None, None, True),
    JobField(
        "max_input_length",
        "int",
        "Trim prompts longer than this many characters (0: never).",
        defaults.DEFAULT_MAX_INPUT_LENGTH,
        0,
        True,
    ),
    JobField("concurrency", "int", "Requests in flight at most, over all providers.", defaults.DEFAULT_CONCURRENCY, 1),
    JobField("provider_concurrency", "int", "Requests in flight at most per provider (default: concurrency).", None, 1),
    JobField("max_retries", "int", "Retries per provider before failing over.", defaults.DEFAULT_MAX_RETRIES, 0),
    JobField("timeout", "float", "Deadline per attempt, seconds.", defaults.DEFAULT_TIMEOUT, 0.001),
    JobField("idle_timeout", "float", "Longest silence inside a reply, seconds.", defaults.DEFAULT_IDLE_TIMEOUT, 0.001),
    JobField("stream", "bool", "Stream replies (SSE) instead of waiting for whole ones.", False),
    JobField("errors", "path", "Where failed rows go (default: <output>.errors.jsonl)."),
    JobField("stats", "path", "Where stats go (default: <output>.stats.json)."),
    JobField(
        "grace", "float", "Seconds in-flight requests get to finish after Ctrl-C or SIGTERM.", defaults.DEFAULT_GRACE, 0
    ),
)
_BY_KEY = {f.key: f for f in FIELDS}
_SECRET_KEYS = frozenset({"token", "api_key", "hf_token", "key", "secret", "password", "authorization"})
_EXTRA_TABLES = frozenset({"sim"})


@dataclass(frozen=True, slots=True)
class JobSpec:
    """A validated job: every setting typed, defaults filled, paths resolved."""

    input: Path
    output: Path
    model: str
    providers: tuple[str, ...] = ()
    api_base: str = defaults.DEFAULT_API_BASE
    hub_url: str | None = None
    api_key_env: str = defaults.DEFAULT_API_KEY_ENV
    id_column: str | None = None
    prompt_column: str = "prompt"
    template: str | None = None
    system: str | None = None
    keep_columns: tuple[str, ...] = ()
    max_tokens: int | None = defaults.DEFAULT_MAX_TOKENS
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    max_input_length: int = defaults.DEFAULT_MAX_INPUT_LENGTH
    concurrency: int = defaults.DEFAULT_CONCURRENCY
    provider_concurrency: int | None = None
    max_retries: int = defaults.DEFAULT_MAX_RETRIES
    timeout: float = defaults.DEFAULT_TIMEOUT
    idle_timeout: float = defaults.DEFAULT_IDLE_TIMEOUT
    stream: bool = False
    errors: Path | None = None
    stats: Path | None = None
    grace: float = defaults.DEFAULT_GRACE
    sim: dict[str, Any] | None = field(default=None)
    source: str = "command line"

    @property
    def errors_path(self) -> Path:
        """Where failed rows go."""
        return self.errors or self.output.with_name(self.output.name + ".errors.jsonl")

    @property
    def stats_path(self) -> Path:
        """Where the stats JSON goes."""
        return self.stats or self.output.with_name(self.output.name + ".stats.json")

    def manifest_settings(self) -> dict[str, Any]:
        """The settings that decide what a row's result is; a change forbids resuming."""
        return {f.key: _jsonable(getattr(self, f.key)) for f in FIELDS if f.in_manifest}

    def request_params(self) -> dict[str, Any]:
        """Sampling parameters sent with every request."""
        params = {
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "seed": self.seed,
        }
        return {k: v for k, v in params.items() if v is not None}


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    return value


def _unknown_key(source: str, key: str) -> JobSpecError:
    if key.lower() in _SECRET_KEYS:
        return JobSpecError(
            f"{source}: key '{key}': tokens do not belong in job files; put the token in an environment "
            f"variable and name it with api_key_env (default {defaults.DEFAULT_API_KEY_ENV})"
        )
    close = difflib.get_close_matches(key, [*_BY_KEY, *_EXTRA_TABLES], n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return JobSpecError(f"{source}: unknown key '{key}'{hint}")


def _coerce(source: str, f: JobField, value: Any, base: Path | None) -> Any:
    """Check one value's type and range; return it in the JobSpec's type."""
    where = f"{source}: key '{f.key}'"
    if value is None:
        return None
    if f.kind in ("str", "path"):
        if not isinstance(value, str) or (f.kind == "path" and not value):
            raise JobSpecError(f"{where}: expected a string, got {value!r}")
        if f.kind == "path":
            path = Path(value).expanduser()
            return path if path.is_absolute() or base is None else base / path
        return value
    if f.kind == "bool":
        if not isinstance(value, bool):
            raise JobSpecError(f"{where}: expected true or false, got {value!r}")
        return value
    if f.kind == "list":
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
            raise JobSpecError(f"{where}: expected a list of strings, got {value!r}")
        return tuple(i.strip() for i in items if i.strip())
    number_types: tuple[type, ...] = (int,) if f.kind == "int" else (int, float)
    if isinstance(value, bool) or not isinstance(value, number_types):
        raise JobSpecError(f"{where}: expected {'a whole number' if f.kind == 'int' else 'a number'}, got {value!r}")
    assert isinstance(value, int | float)
    if f.minimum is not None and value < f.minimum:
        raise JobSpecError(f"{where}: must be at least {f.minimum:g}, got {value!r}")
    return float(value) if f.kind == "float" else value


def load_job_file(path: Path) -> dict[str, Any]:
    """Read and check a TOML job file; return its values typed, paths resolved against its folder."""
    source = str(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise JobSpecError(f"{source}: job file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise JobSpecError(f"{source}: cannot read the job file ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise JobSpecError(f"{source}: not valid TOML: {exc}") from None
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key == "sim":
            if not isinstance(value, dict):
                raise JobSpecError(f"{source}: key 'sim': expected a table")
            values["sim"] = value
            continue
        f = _BY_KEY.get(key)
        if f is None:
            raise _unknown_key(source, key)
        values[key] = _coerce(source, f, value, path.parent)
    values["source"] = source
    return values


def build_spec(file_values: dict[str, Any], flag_values: dict[str, Any]) -> JobSpec:
    """Merge a job file's values with flags (flags win) into a checked JobSpec."""
    merged = dict(file_values)
    for key, value in flag_values.items():
        if value is None or (key in _BY_KEY and _BY_KEY[key].kind == "list" and value == ()):
            continue
        merged[key] = _coerce("command line", _BY_KEY[key], value, None) if key in _BY_KEY else value
    source = merged.get("source", "command line")
    missing = [k for k in ("input", "output", "model") if not merged.get(k)]
    if missing:
        names = ", ".join(f"'{k}' (flag {_BY_KEY[k].flag})" for k in missing)
        raise JobSpecError(f"{source}: missing required setting {names}")
    known = {f.name for f in fields(JobSpec)}
    spec = JobSpec(**{k: v for k, v in merged.items() if k in known and v is not None})
    if spec.output.suffix not in (".jsonl", ".parquet"):
        raise JobSpecError(f"{source}: key 'output': {spec.output} must end in .jsonl or .parquet")
    if spec.template is not None:
        _check_template(source, spec.template)
    return spec


def _check_template(source: str, template: str) -> None:
    import string

    try:
        names = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as exc:
        raise JobSpecError(f"{source}: key 'template': {exc} (write {{{{ and }}}} for literal braces)") from None
    if not names:
        raise JobSpecError(f"{source}: key 'template': names no column; write e.g. 'Summarise: {{text}}'")


def with_overrides(spec: JobSpec, **changes: Any) -> JobSpec:
    """A copy of `spec` with some settings changed (for tests and the in-process simulator)."""
    return replace(spec, **changes)
