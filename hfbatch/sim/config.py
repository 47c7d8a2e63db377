"""What the simulated server serves: models, providers, latencies and injected faults.

Built in code (`SimConfig(...)`), from the `[sim]` table of a job file
(`sim_config_from_dict`) or from a TOML file of its own (`load_sim_config`).
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from hfbatch.errors import JobSpecError
from hfbatch.sim.hub_repos_config import SimHubRepos, hub_repos_from_dict

__all__ = [
    "FAULT_KINDS",
    "PROVIDER_STATUSES",
    "ROUTING_POLICIES",
    "Fault",
    "SimConfig",
    "SimModel",
    "SimProvider",
    "default_sim_config",
    "load_sim_config",
    "sim_config_from_dict",
]

FAULT_KINDS = frozenset(
    {
        "401",
        "400",
        "402",
        "403",
        "404",
        "422",
        "429",
        "500",
        "502",
        "503",
        "hang",
        "reset",
        "malformed",
        "truncate",
        "down",
        "model_not_supported",
        "leak",
    }
)
PROVIDER_STATUSES = ("live", "staging", "error")
# Model suffixes the router treats as a policy rather than a provider name.
ROUTING_POLICIES = ("fastest", "cheapest", "preferred")


@dataclass(frozen=True, slots=True)
class Fault:
    """A failure injected into a share of one provider's chat requests."""

    kind: str
    rate: float = 1.0
    first: int | None = None
    after: int = 0
    retry_after: str | None = None

    def __post_init__(self) -> None:
        # Faults built in code skip sim_config_from_dict, so catch typos here too.
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {self.kind!r} (expected one of {', '.join(sorted(FAULT_KINDS))})")
        if not 0 <= self.rate <= 1:
            raise ValueError(f"fault rate must be between 0 and 1, got {self.rate}")

    def applies_to(self, n: int) -> bool:
        """Whether the provider's `n`-th request (1-based) is a candidate for this fault."""
        if n <= self.after:
            return False
        return self.first is None or n <= self.first


@dataclass(frozen=True, slots=True)
class SimProvider:
    """One provider serving a model, with its latency and faults."""

    name: str
    provider_id: str | None = None
    status: str = "live"
    task: str = "conversational"
    latency: float = 0.0
    faults: tuple[Fault, ...] = ()

    @property
    def routable(self) -> bool:
        """Whether the router sends chat requests here."""
        return self.status == "live" and self.task == "conversational"


@dataclass(frozen=True, slots=True)
class SimModel:
    """A model id and the providers mapped to it, in preference order."""

    id: str
    providers: tuple[SimProvider, ...]

    def provider(self, name: str) -> SimProvider | None:
        """The provider called `name`, if it serves this model."""
        for p in self.providers:
            if p.name == name:
                return p
        return None


@dataclass(frozen=True, slots=True)
class SimConfig:
    """Everything the simulated Hub and router serve."""

    models: tuple[SimModel, ...]
    token: str = "hf_sim_token"
    seed: int = 0
    hang_seconds: float = 3600.0
    hub_fail_first: int = 0
    sse_space: bool = True
    sse_done: bool = True
    usage_in_finish_chunk: bool = False
    hub_repos: SimHubRepos | None = None

    def model(self, model_id: str) -> SimModel | None:
        """The model with this id, if served."""
        for m in self.models:
            if m.id == model_id:
                return m
        return None


def _default_models() -> tuple[SimModel, ...]:
    latency = 0.02
    return (
        SimModel(
            id="hfbatch/sim-chat",
            providers=(
                SimProvider(name="alpha", latency=latency, faults=(Fault(kind="402"),)),
                SimProvider(
                    name="beta",
                    latency=latency,
                    faults=(Fault(kind="429", rate=0.05, retry_after="0"), Fault(kind="500", rate=0.05)),
                ),
                SimProvider(name="gamma", latency=latency),
            ),
        ),
        SimModel(id="hfbatch/sim-vision", providers=(SimProvider(name="gamma", latency=latency),)),
    )


def default_sim_config() -> SimConfig:
    """The stock setup: `alpha` is out of credits, `beta` is flaky, `gamma` is healthy."""
    return SimConfig(models=_default_models())


# --- validation -------------------------------------------------------------------------

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

    def integer(self, value: object, key: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(key, f"expected an integer, got {_type_name(value)}")
        return value

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
    "hub_repos",
)
_MODEL_KEYS = ("id", "providers")
_PROVIDER_KEYS = ("name", "provider_id", "status", "task", "latency", "faults")
_FAULT_KEYS = ("kind", "rate", "first", "after", "retry_after")


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
    retry_after = data.get("retry_after")
    if retry_after is not None:
        if isinstance(retry_after, int) and not isinstance(retry_after, bool) and retry_after >= 0:
            retry_after = str(retry_after)
        elif not isinstance(retry_after, str):
            raise r.fail(
                _join(key, "retry_after"),
                f"expected a string or a whole number, got {_type_name(retry_after)}",
            )
    return Fault(
        kind=kind,
        rate=r.get(data, key, "rate", r.fraction, 1.0),
        first=None if first is None else r.count(first, _join(key, "first")),
        after=r.get(data, key, "after", r.count, 0),
        retry_after=retry_after,
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
    faults_key = _join(key, "faults")
    faults: list[Any] = r.get(data, key, "faults", r.array, [])
    return SimProvider(
        name=name,
        provider_id=r.get(data, key, "provider_id", r.string, None),
        status=status,
        task=r.get(data, key, "task", r.string, "conversational"),
        latency=r.get(data, key, "latency", r.seconds, 0.0),
        faults=tuple(_fault(r, f, f"{faults_key}[{i}]") for i, f in enumerate(faults)),
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
        models = _default_models()
    return SimConfig(
        models=models,
        token=r.get(table, key, "token", r.string, "hf_sim_token"),
        seed=r.get(table, key, "seed", r.integer, 0),
        hang_seconds=r.get(table, key, "hang_seconds", r.seconds, 3600.0),
        hub_fail_first=r.get(table, key, "hub_fail_first", r.count, 0),
        sse_space=r.get(table, key, "sse_space", r.boolean, True),
        sse_done=r.get(table, key, "sse_done", r.boolean, True),
        usage_in_finish_chunk=r.get(table, key, "usage_in_finish_chunk", r.boolean, False),
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
