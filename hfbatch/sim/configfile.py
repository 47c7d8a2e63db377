"""Reading a SimConfig from TOML: a job file's `[sim]` table or a file of its own.

Every key is checked; an unknown key, a wrong type or a bad value raises JobSpecError naming
the file and the dotted key (e.g. `sim.models[0].providers[1].rate_limit.window`).
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from hfbatch.errors import JobSpecError
from hfbatch.sim.config import (
    DEFAULT_DEEP_DEPTH,
    FAULT_KINDS,
    PROVIDER_STATUSES,
    ROUTING_POLICIES,
    Fault,
    SimConfig,
    SimModel,
    SimProvider,
    default_models,
)
from hfbatch.sim.hub_repos_config import hub_repos_from_dict

__all__ = ["load_sim_config", "sim_config_from_dict"]

_T = TypeVar("_T")


class _Reader:
    """Reads typed values out of a TOML-shaped dict, naming the file and dotted key on error."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, key: str, problem: str) -> JobSpecError:
        where = f"{key}: " if key else ""
        return JobSpecError(f"{self.source}: {where}{problem}")

    def table(self, value: object, key: str, allowed: tuple[str, ...]) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.fail(key, f"expected a table, got {_type_name(value)}")
        for k in value:
            if k not in allowed:
                raise self.fail(_join(key, str(k)), f"unknown key (expected one of {', '.join(allowed)})")
        return value

    def get(
        self,
        data: Mapping[str, Any],
        key: str,
        name: str,
        convert: Callable[[object, str], _T],
        default: _T,
    ) -> _T:
        if name not in data:
            return default
        return convert(data[name], _join(key, name))

    def string(self, value: object, key: str) -> str:
        if not isinstance(value, str):
            raise self.fail(key, f"expected a string, got {_type_name(value)}")
        if not value:
            raise self.fail(key, "must not be empty")
        return value

    def boolean(self, value: object, key: str) -> bool:
        if not isinstance(value, bool):
            raise self.fail(key, f"expected true or false, got {_type_name(value)}")
        return value

    def count(self, value: object, key: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(key, f"expected an integer, got {_type_name(value)}")
        if value < 0:
            raise self.fail(key, f"must be >= 0, got {value}")
        return value

    def positive(self, value: object, key: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(key, f"expected an integer, got {_type_name(value)}")
        if value < 1:
            raise self.fail(key, f"must be >= 1, got {value}")
        return value

    def integer(self, value: object, key: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(key, f"expected an integer, got {_type_name(value)}")
        return value

    def number(self, value: object, key: str) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(key, f"expected a number, got {_type_name(value)}")
        if not 0 <= value < float("inf"):
            raise self.fail(key, f"must be a finite number >= 0, got {value}")
        return float(value)

    def seconds(self, value: object, key: str) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(key, f"expected a number of seconds, got {_type_name(value)}")
        if not 0 <= value < float("inf"):
            raise self.fail(key, f"must be a finite number >= 0, got {value}")
        return float(value)

    def fraction(self, value: object, key: str) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(key, f"expected a number between 0 and 1, got {_type_name(value)}")
        if not 0 <= value <= 1:
            raise self.fail(key, f"must be between 0 and 1, got {value}")
        return float(value)

    def array(self, value: object, key: str) -> list[Any]:
        if not isinstance(value, list | tuple):
            raise self.fail(key, f"expected an array, got {_type_name(value)}")
        return list(value)

    def header_value(self, value: object, key: str) -> str:
        # TOML users write `retry_after = 5` as often as `retry_after = "5"`.
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return str(value)
        if not isinstance(value, str):
            raise self.fail(key, f"expected a string or a whole number, got {_type_name(value)}")
        if not value:
            raise self.fail(key, "must not be empty")
        return value

    def window(self, value: object, key: str, amount: str) -> tuple[int, float]:
        """A `{ <amount> = N, window = S }` table, as `(N, S)`."""
        data = self.table(value, key, (amount, "window"))
        for name in (amount, "window"):
            if name not in data:
                raise self.fail(_join(key, name), "missing")
        window = self.seconds(data["window"], _join(key, "window"))
        if window <= 0:
            raise self.fail(_join(key, "window"), "must be > 0")
        return self.positive(data[amount], _join(key, amount)), window


def _join(key: str, name: str) -> str:
    return f"{key}.{name}" if key else name


def _type_name(value: object) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "an array"}
    if value is None:
        return "nothing"
    if isinstance(value, Mapping):
        return "a table"
    return names.get(type(value), type(value).__name__)


_CONFIG_KEYS = (
    "models",
    "token",
    "seed",
    "hang_seconds",
    "hub_fail_first",
    "sse_space",
    "sse_done",
    "usage_in_finish_chunk",
    "publish_prices",
    "hub_repos",
)
_MODEL_KEYS = ("id", "providers")
_PROVIDER_KEYS = (
    "name",
    "provider_id",
    "status",
    "task",
    "latency",
    "faults",
    "max_concurrency",
    "rate_limit",
    "token_limit",
    "limit_retry_after",
    "price_in",
    "price_out",
    "context_length",
    "throughput",
    "first_token_latency_ms",
    "max_n",
    "ratelimit_headers",
    "supports_tools",
    "supports_structured_output",
    "is_free",
    "reject_n",
    "reasoning",
    "reasoning_only",
)
_FAULT_KEYS = ("kind", "rate", "first", "after", "retry_after", "delay", "depth")


def _fault(r: _Reader, value: object, key: str) -> Fault:
    data = r.table(value, key, _FAULT_KEYS)
    if "kind" not in data:
        raise r.fail(_join(key, "kind"), "missing")
    raw_kind = data["kind"]
    # TOML users write `kind = 429` as often as `kind = "429"`.
    kind = str(raw_kind) if isinstance(raw_kind, int) and not isinstance(raw_kind, bool) else raw_kind
    if not isinstance(kind, str) or kind not in FAULT_KINDS:
        raise r.fail(
            _join(key, "kind"),
            f"unknown fault {kind!r} (expected one of {', '.join(sorted(FAULT_KINDS))})",
        )
    first = data.get("first")
    return Fault(
        kind=kind,
        rate=r.get(data, key, "rate", r.fraction, 1.0),
        first=None if first is None else r.count(first, _join(key, "first")),
        after=r.get(data, key, "after", r.count, 0),
        retry_after=r.get(data, key, "retry_after", r.header_value, None),
        delay=r.get(data, key, "delay", r.seconds, 0.0),
        depth=r.get(data, key, "depth", r.positive, DEFAULT_DEEP_DEPTH),
    )


def _provider(r: _Reader, value: object, key: str) -> SimProvider:
    data = r.table(value, key, _PROVIDER_KEYS)
    if "name" not in data:
        raise r.fail(_join(key, "name"), "missing")
    name = r.string(data["name"], _join(key, "name"))
    if name in ROUTING_POLICIES or ":" in name:
        raise r.fail(_join(key, "name"), f"{name!r} cannot be a provider name")
    status = r.get(data, key, "status", r.string, "live")
    if status not in PROVIDER_STATUSES:
        raise r.fail(_join(key, "status"), f"{status!r} is not one of {', '.join(PROVIDER_STATUSES)}")
    if ("price_in" in data) != ("price_out" in data):
        missing = "price_out" if "price_in" in data else "price_in"
        raise r.fail(_join(key, missing), "missing (price_in and price_out go together)")
    faults_key = _join(key, "faults")
    faults: list[Any] = r.get(data, key, "faults", r.array, [])
    return SimProvider(
        name=name,
        provider_id=r.get(data, key, "provider_id", r.string, None),
        status=status,
        task=r.get(data, key, "task", r.string, "conversational"),
        latency=r.get(data, key, "latency", r.seconds, 0.0),
        faults=tuple(_fault(r, f, f"{faults_key}[{i}]") for i, f in enumerate(faults)),
        max_concurrency=r.get(data, key, "max_concurrency", r.positive, None),
        rate_limit=r.get(data, key, "rate_limit", lambda v, k: r.window(v, k, "requests"), None),
        token_limit=r.get(data, key, "token_limit", lambda v, k: r.window(v, k, "tokens"), None),
        limit_retry_after=r.get(data, key, "limit_retry_after", r.header_value, "none"),
        price_in=r.get(data, key, "price_in", r.number, None),
        price_out=r.get(data, key, "price_out", r.number, None),
        context_length=r.get(data, key, "context_length", r.positive, 32768),
        throughput=r.get(data, key, "throughput", r.number, None),
        first_token_latency_ms=r.get(data, key, "first_token_latency_ms", r.number, None),
        max_n=r.get(data, key, "max_n", r.positive, None),
        ratelimit_headers=r.get(data, key, "ratelimit_headers", r.boolean, False),
        supports_tools=r.get(data, key, "supports_tools", r.boolean, True),
        supports_structured_output=r.get(data, key, "supports_structured_output", r.boolean, True),
        is_free=r.get(data, key, "is_free", r.boolean, False),
        reject_n=r.get(data, key, "reject_n", r.boolean, False),
        reasoning=r.get(data, key, "reasoning", r.boolean, False),
        reasoning_only=r.get(data, key, "reasoning_only", r.boolean, False),
    )


def _model(r: _Reader, value: object, key: str) -> SimModel:
    data = r.table(value, key, _MODEL_KEYS)
    if "id" not in data:
        raise r.fail(_join(key, "id"), "missing")
    model_id = r.string(data["id"], _join(key, "id"))
    if ":" in model_id or model_id.startswith("/") or model_id.endswith("/"):
        raise r.fail(_join(key, "id"), f"{model_id!r} is not a model id like 'org/name'")
    providers_key = _join(key, "providers")
    raw_providers: list[Any] = r.get(data, key, "providers", r.array, [])
    providers = tuple(_provider(r, p, f"{providers_key}[{i}]") for i, p in enumerate(raw_providers))
    seen: set[str] = set()
    for i, p in enumerate(providers):
        if p.name in seen:
            raise r.fail(f"{providers_key}[{i}].name", f"provider {p.name!r} is listed twice")
        seen.add(p.name)
    return SimModel(id=model_id, providers=providers)


def sim_config_from_dict(data: Mapping[str, Any], source: str, *, key: str = "sim") -> SimConfig:
    """Build a SimConfig from a TOML-shaped dict; errors name `source` and the dotted key under `key`."""
    r = _Reader(source)
    table = r.table(data, key, _CONFIG_KEYS)
    if "models" in table:
        models_key = _join(key, "models")
        models = tuple(_model(r, m, f"{models_key}[{i}]") for i, m in enumerate(r.array(table["models"], models_key)))
        seen: set[str] = set()
        for i, m in enumerate(models):
            if m.id in seen:
                raise r.fail(f"{models_key}[{i}].id", f"model {m.id!r} is listed twice")
            seen.add(m.id)
    else:
        models = default_models()
    return SimConfig(
        models=models,
        token=r.get(table, key, "token", r.string, "hf_sim_token"),
        seed=r.get(table, key, "seed", r.integer, 0),
        hang_seconds=r.get(table, key, "hang_seconds", r.seconds, 3600.0),
        hub_fail_first=r.get(table, key, "hub_fail_first", r.count, 0),
        sse_space=r.get(table, key, "sse_space", r.boolean, True),
        sse_done=r.get(table, key, "sse_done", r.boolean, True),
        usage_in_finish_chunk=r.get(table, key, "usage_in_finish_chunk", r.boolean, False),
        publish_prices=r.get(table, key, "publish_prices", r.boolean, True),
        hub_repos=hub_repos_from_dict(table["hub_repos"], r.source, _join(key, "hub_repos"))
        if "hub_repos" in table
        else None,
    )


def load_sim_config(path: str | Path) -> SimConfig:
    """Read a SimConfig from a TOML file: its `[sim]` table if it has one, else the whole file."""
    path = Path(path)
    source = str(path)
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise JobSpecError(f"{source}: cannot read ({exc.strerror or exc})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise JobSpecError(f"{source}: not valid TOML ({exc})") from exc
    if isinstance(data.get("sim"), dict):
        return sim_config_from_dict(data["sim"], source, key="sim")
    return sim_config_from_dict(data, source, key="")
