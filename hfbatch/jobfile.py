"""Reading a job: the TOML job file and the flags, checked and merged into one JobSpec.

Unknown keys, wrong types and values out of range are errors naming the file and the key;
a value shaped like a token is refused without being repeated. Relative paths in a job file
are relative to the file's folder; on the command line, to the current folder.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

from hfbatch import defaults
from hfbatch.credentials import check_url, looks_like_token
from hfbatch.errors import JobSpecError
from hfbatch.hubspec import check_hub_settings
from hfbatch.jobspec import BY_KEY, ORDER_KEY, PROVIDER_FIELDS, JobField, JobSpec, ProviderSettings
from hfbatch.route_order import ROUTES
from hfbatch.shards import resolve_shard

__all__ = ["build_spec", "load_job_file"]

_PROVIDER_KEYS = {f.key: f for f in PROVIDER_FIELDS}
# What the router takes as an organization name for X-HF-Bill-To.
_ORG_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}")
#: The values of `log_format`.
LOG_FORMATS = ("plain", "json")
_SECRET_KEYS = frozenset({"token", "api_key", "hf_token", "key", "secret", "password", "authorization"})
_EXTRA_TABLES = frozenset({"sim"})


def _unknown_key(source: str, key: str) -> JobSpecError:
    if key.lower() in _SECRET_KEYS:
        return JobSpecError(
            f"{source}: key '{key}': tokens do not belong in job files; put the token in an environment "
            f"variable and name it with api_key_env (default {defaults.DEFAULT_API_KEY_ENV})"
        )
    if looks_like_token(key):
        return JobSpecError(f"{source}: a key looks like a token; tokens do not belong in job files")
    close = difflib.get_close_matches(key, [*BY_KEY, *_EXTRA_TABLES], n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return JobSpecError(f"{source}: unknown key '{key}'{hint}")


def _coerce(source: str, f: JobField, value: Any, base: Path | None) -> Any:
    """Check one value's type and range; return it in the JobSpec's type."""
    where = f"{source}: key '{f.key}'"
    if value is None:
        return None
    if _holds_token(value):
        # The value is not echoed: it may be the very token that must not be printed.
        raise JobSpecError(
            f"{where}: the value looks like a Hugging Face token; tokens do not belong in job files or flags: "
            f"put it in an environment variable and name it with api_key_env (default {defaults.DEFAULT_API_KEY_ENV})"
        )
    if f.kind in ("str", "path", "url", "schema"):
        if not isinstance(value, str) or (f.kind != "str" and not value):
            raise JobSpecError(f"{where}: expected a string, got {value!r}")
        if f.kind == "url":
            return check_url(value, where)
        if f.kind == "schema":
            # "json", or a schema file: relative to the job file's folder like any path.
            path = Path(value).expanduser()
            return value if value == "json" or path.is_absolute() or base is None else str(base / path)
        if f.kind == "path":
            path = Path(value).expanduser()
            # A Hub dataset (hf://...) is not relative to the job file's folder.
            return path if path.is_absolute() or base is None or value.startswith("hf://") else base / path
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


def _holds_token(value: Any) -> bool:
    """True when a setting's value (or an item of a list) is shaped like a token."""
    if isinstance(value, str):
        return looks_like_token(value)
    return isinstance(value, list | tuple) and any(isinstance(v, str) and looks_like_token(v) for v in value)


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
        if key == "providers" and isinstance(value, dict):
            order, values["provider_settings"] = _provider_tables(source, value, path.parent)
            if order is not None:
                values["providers"] = order
            continue
        f = BY_KEY.get(key)
        if f is None:
            raise _unknown_key(source, key)
        values[key] = _coerce(source, f, value, path.parent)
    values["source"] = source
    return values


def _provider_tables(
    source: str, table: dict[str, Any], base: Path
) -> tuple[tuple[str, ...] | None, dict[str, ProviderSettings]]:
    """Read `[providers]` in table form: the order (`providers.order`) and one ProviderSettings per provider."""
    order: tuple[str, ...] | None = None
    settings: dict[str, ProviderSettings] = {}
    for name, raw in table.items():
        if name == ORDER_KEY and not isinstance(raw, dict):
            order = _coerce(source, replace(BY_KEY["providers"], key=f"providers.{ORDER_KEY}"), raw, base)
            continue
        if not isinstance(raw, dict):
            raise JobSpecError(
                f"{source}: key 'providers.{name}': expected a table of that provider's settings "
                f"([providers.{name}]), or 'providers.{ORDER_KEY}' for the order"
            )
        values: dict[str, Any] = {}
        for key, value in raw.items():
            f = _PROVIDER_KEYS.get(key)
            if f is None:
                close = difflib.get_close_matches(key, list(_PROVIDER_KEYS), n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                known = ", ".join(_PROVIDER_KEYS)
                raise JobSpecError(f"{source}: unknown key 'providers.{name}.{key}'{hint}; a provider takes {known}")
            values[key] = _coerce(source, replace(f, key=f"providers.{name}.{key}"), value, base)
        try:
            settings[name] = ProviderSettings(**values)
        except ValueError as exc:
            raise JobSpecError(f"{source}: table 'providers.{name}': {exc}") from None
    return order, settings


def _check_spec(spec: JobSpec) -> None:
    """Checks across settings, once they are merged."""
    source = spec.source
    check_hub_settings(spec)
    if (spec.price_in is None) != (spec.price_out is None):
        raise JobSpecError(f"{source}: keys 'price_in' and 'price_out' are set together (a cost needs both)")
    if spec.log_format not in LOG_FORMATS:
        choices = " or ".join(LOG_FORMATS)
        raise JobSpecError(f"{source}: key 'log_format': expected {choices}, got {spec.log_format!r}")
    if spec.route not in ROUTES:
        raise JobSpecError(f"{source}: key 'route': unknown route {spec.route!r} (choose from {', '.join(ROUTES)})")
    if spec.bill_to is not None and not _ORG_NAME.fullmatch(spec.bill_to):
        raise JobSpecError(
            f"{source}: key 'bill_to': {spec.bill_to!r} is not an organization name (letters, digits, '-', '_', '.')"
        )


def build_spec(file_values: dict[str, Any], flag_values: dict[str, Any]) -> JobSpec:
    """Merge a job file's values with flags (flags win) into a checked JobSpec."""
    merged = dict(file_values)
    for key, value in flag_values.items():
        if value is None or (key in BY_KEY and BY_KEY[key].kind == "list" and value == ()):
            continue
        merged[key] = _coerce("command line", BY_KEY[key], value, None) if key in BY_KEY else value
    source = merged.get("source", "command line")
    # The model may come from the rows (OpenAI batch lines' body.model): the runner checks that.
    missing = [k for k in ("input", "output") if not merged.get(k)]
    if missing:
        names = ", ".join(f"'{k}' (flag {BY_KEY[k].flag})" for k in missing)
        raise JobSpecError(f"{source}: missing required setting {names}")
    known = {f.name for f in fields(JobSpec)}
    spec = JobSpec(**{k: v for k, v in merged.items() if k in known and v is not None})
    try:
        spec = resolve_shard(spec)  # --shard auto reads the engine's variables now: a bad one is exit 2 at once
    except JobSpecError as exc:
        raise JobSpecError(f"{source}: {exc}") from None
    if spec.output.suffix not in (".jsonl", ".parquet"):
        raise JobSpecError(f"{source}: key 'output': {spec.output} must end in .jsonl or .parquet")
    _check_spec(spec)
    if spec.output_format is not None:
        _check_output_format(source, spec.output_format, spec.output)
    if spec.response_format is not None:
        try:
            spec.request_params()  # reads the schema file: a bad one is reported before anything runs
        except JobSpecError as exc:
            raise JobSpecError(f"{source}: {exc}") from None
    return spec


def _check_output_format(source: str, name: str, output: Path) -> None:
    from hfbatch.outputs.formats import FORMATS

    cls = FORMATS.get(name)
    if cls is None:
        raise JobSpecError(f"{source}: key 'output_format': unknown format {name!r} (choose from {', '.join(FORMATS)})")
    if not cls.fits(output):
        raise JobSpecError(f"{source}: key 'output_format': the {name} format writes {cls.writes()}, not {output.name}")
