"""Job settings: the JobSpec dataclass is the one home of every setting (type, default, help, range).

A job file holds any of the keys below at its top level, plus an optional `[sim]`
table that starts the built-in simulated server in-process, and `[providers.NAME]`
tables of settings for one provider (`ProviderSettings`; with them, the provider order
is `providers.order`). Flags override the file.
Relative paths in a job file are relative to the file's folder; on the command line,
to the current folder.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hfbatch import defaults

if TYPE_CHECKING:
    from hfbatch.outputs.files import OutputFiles

__all__ = ["FIELDS", "ORDER_KEY", "PROVIDER_FIELDS", "JobField", "JobSpec", "ProviderSettings", "setting"]


@dataclass(frozen=True, slots=True)
class JobField:
    """One setting as the job file and the CLI see it: key, kind, help, default, range."""

    key: str
    kind: str  # str | url | path | int | float | bool | list | schema ("json" or a path)
    help: str
    default: Any = None
    minimum: float | None = None
    in_manifest: bool = False  # a change to it makes earlier results incomparable

    @property
    def flag(self) -> str:
        """The command-line flag for this key."""
        return "--" + self.key.replace("_", "-")


def setting(
    kind: str,
    help: str,
    default: Any = MISSING,
    *,
    minimum: float | None = None,
    in_manifest: bool = False,
) -> Any:
    """A JobSpec field that is also a job-file key and a flag (its one home: type, default, help)."""
    meta = {"kind": kind, "help": help, "minimum": minimum, "in_manifest": in_manifest}
    return field(default=default, metadata={"setting": meta})


@dataclass(frozen=True, slots=True)
class ProviderSettings:
    """One `[providers.NAME]` table: settings for that provider alone. Each field is a key of the table."""

    price_in: float | None = setting("float", "USD per million input tokens on this provider.", None, minimum=0)
    price_out: float | None = setting("float", "USD per million output tokens on this provider.", None, minimum=0)
    concurrency: int | None = setting(
        "int", "Requests in flight at most on this provider (default: --provider-concurrency).", None, minimum=1
    )
    rpm: float | None = setting("float", "Requests per minute at most on this provider.", None, minimum=0.001)
    tpm: float | None = setting(
        "float", "Tokens per minute at most on this provider (prompt estimate + max_tokens).", None, minimum=1
    )

    def __post_init__(self) -> None:
        if (self.price_in is None) != (self.price_out is None):
            raise ValueError("price_in and price_out are set together (a cost needs both)")


@dataclass(frozen=True, slots=True)
class JobSpec:
    """A validated job: every setting typed, defaults filled, paths resolved.

    Each field made with `setting(...)` is a job-file key and a flag of the same name.
    """

    input: Path = setting(
        "path",
        "Input: a .jsonl, .jsonl.gz or .parquet file, a folder of .parquet parts, or a Hub dataset "
        "hf://datasets/ORG/NAME[@REVISION][/path or glob] (needs hfbatch[hub]). Required (here or in the job file).",
    )
    output: Path = setting(
        "path", "Output file: .jsonl or .parquet (by extension). Required (here or in the job file)."
    )
    split: str | None = setting(
        "str", "Split of an hf:// input that has several (train, test, ...); default: the only one.", None
    )
    subset: str | None = setting(
        "str",
        "Subset (config) of an hf:// input with several; default: the one its card marks default, else the only one.",
        None,
    )
    model: str | None = setting(
        "str",
        "Model id or alias, e.g. meta-llama/Llama-3.3-70B-Instruct (default: each OpenAI batch line's body.model).",
        None,
        in_manifest=True,
    )
    providers: tuple[str, ...] = setting(
        "list", "Providers to try, in order (comma-separated). Default: the Hub's live ones.", ()
    )
    api_base: str = setting("url", "OpenAI-compatible base URL.", defaults.DEFAULT_API_BASE, in_manifest=True)
    hub_url: str | None = setting(
        "url",
        "Hub URL for provider mappings, hf:// inputs and pushes. Default: $HF_ENDPOINT, else "
        "https://huggingface.co; with another --api-base, no Hub.",
        None,
    )
    api_key_env: str | None = setting(
        "str",
        "Environment variable holding the token; only it is read. Default: HF_TOKEN, HUGGING_FACE_HUB_TOKEN, "
        "then $HF_HOME/token, sent only to Hugging Face hosts (or a server given a --hub-url).",
        None,
    )
    id_column: str | None = setting(
        "str", "Column holding each row's id (default: id, then custom_id, else row number).", None, in_manifest=True
    )
    prompt_column: str = setting("str", "Column holding the prompt text.", "prompt", in_manifest=True)
    template: str | None = setting(
        "str",
        "Prompt template over columns, e.g. 'Summarise: {text}'. Default: none (the prompt column).",
        None,
        in_manifest=True,
    )
    system: str | None = setting(
        "str", "System prompt for rows without their own. Default: none.", None, in_manifest=True
    )
    keep_columns: tuple[str, ...] = setting(
        "list", "Input columns copied to the output (comma-separated). Default: none.", ()
    )
    allow_local_images: Path | None = setting(
        "path",
        "Let rows' images name local files, only image files under this folder (symlinks resolved; never "
        f"/proc, /sys or /dev; at most {defaults.MAX_IMAGE_BYTES // 2**20} MiB). Default: off.",
        None,
    )
    keep_prompt: bool = setting(
        "bool", "Store each row's prompt in the output ('prompt', or 'messages' for anything but one user turn).", False
    )
    keep_response: bool = setting(
        "bool", "Store each reply's whole chat.completion (tool calls, logprobs, usage) as 'response'.", False
    )
    max_tokens: int | None = setting(
        "int", "Maximum tokens to generate per row.", defaults.DEFAULT_MAX_TOKENS, minimum=1, in_manifest=True
    )
    temperature: float | None = setting(
        "float", "Sampling temperature. Default: the provider's.", None, minimum=0, in_manifest=True
    )
    top_p: float | None = setting(
        "float", "Nucleus sampling probability. Default: the provider's.", None, minimum=0, in_manifest=True
    )
    seed: int | None = setting(
        "int", "Sampling seed, for providers that honour it. Default: none.", None, in_manifest=True
    )
    n: int | None = setting(
        "int",
        "Samples per row; with more than 1 the output has 'outputs', a list. Default: 1.",
        None,
        minimum=1,
        in_manifest=True,
    )
    response_format: str | None = setting(
        "schema",
        "Structured output: 'json' (any JSON object) or a JSON Schema file; every reply is checked against it. "
        "Default: free text.",
        None,
        in_manifest=True,
    )
    max_input_length: int = setting(
        "int",
        "Trim prompts longer than this many characters, text plus 16 per message (0: never): drop the oldest "
        "messages but system ones and the last, then cut the last message's text, keeping its start.",
        defaults.DEFAULT_MAX_INPUT_LENGTH,
        minimum=0,
        in_manifest=True,
    )
    concurrency: int = setting(
        "int", "Requests in flight at most, over all providers.", defaults.DEFAULT_CONCURRENCY, minimum=1
    )
    provider_concurrency: int | None = setting(
        "int", "Requests in flight at most per provider (default: concurrency).", None, minimum=1
    )
    max_retries: int = setting(
        "int",
        "Retries of a row on one provider after a transient failure (5xx, timeout, reset, malformed or empty "
        "reply) before it moves to the next.",
        defaults.DEFAULT_MAX_RETRIES,
        minimum=0,
    )
    max_attempts: int = setting(
        "int",
        "Transient failures a row may meet across all providers (cycling back to them) before it fails; "
        "429s never count.",
        defaults.DEFAULT_ROW_ATTEMPTS,
        minimum=1,
    )
    rpm: float | None = setting(
        "float", "Requests per minute at most, over the whole run. Default: no cap.", None, minimum=0.001
    )
    tpm: float | None = setting(
        "float",
        "Tokens per minute at most, over the whole run (prompt estimate + max_tokens, then usage). Default: no cap.",
        None,
        minimum=1,
    )
    max_wait: float | None = setting(
        "float",
        "Longest a row waits for a provider with room, seconds (default: as long as the run goes on); "
        "a row past it fails as 429.",
        None,
        minimum=0,
    )
    max_cost: float | None = setting(
        "float",
        "Stop before spending more than this many USD (each request's worst case is reserved first); exit 5. "
        "Default: no cap.",
        None,
        minimum=0,
    )
    max_requests: int | None = setting(
        "int", "Stop after sending this many requests; exit 5. Default: no cap.", None, minimum=1
    )
    max_tokens_total: int | None = setting(
        "int",
        "Stop before using more than this many tokens (prompt + completion); exit 5. Default: no cap.",
        None,
        minimum=1,
    )
    learned_limits: bool = setting(
        "bool", "Start from the limits earlier runs learned for these providers (kept a day).", True
    )
    timeout: float | None = setting(
        "float",
        "Deadline per attempt, seconds. Default: learned per provider, 10 x its p99 latency within 30-600 s "
        "(120 s until 20 replies).",
        None,
        minimum=0.001,
    )
    idle_timeout: float = setting(
        "float", "Longest silence inside a reply, seconds.", defaults.DEFAULT_IDLE_TIMEOUT, minimum=0.001
    )
    stream: bool = setting("bool", "Stream replies (SSE) instead of waiting for whole ones.", False)
    hedge: bool = setting(
        "bool",
        "Once the input is drained, send a second try of a request slower than 3x its provider's p99 "
        "latency to a provider with room; the first answer wins, the other is cancelled.",
        True,
    )
    allow_empty: bool = setting(
        "bool", "Take a reply with empty text as a result (default: retry it as an 'empty' failure).", False
    )
    price_in: float | None = setting(
        "float", "USD per million input tokens, for every provider. Default: the router's prices.", None, minimum=0
    )
    price_out: float | None = setting(
        "float", "USD per million output tokens, for every provider. Default: the router's prices.", None, minimum=0
    )
    bill_to: str | None = setting(
        "str", "Organization the router bills instead of you (X-HF-Bill-To). Default: you.", None
    )
    route: str = setting(
        "str",
        "Provider order: order (the Hub's, or --providers), cheapest (by published or given price), "
        "fastest (by published throughput). Spill-over and fail-over follow it.",
        "order",
    )
    dry_run: bool = setting(
        "bool", "Check the job and estimate rows, tokens, cost and time: no generation request, no file written.", False
    )
    errors: Path | None = setting("path", "Where failed rows go (default: <output>.errors.jsonl).", None)
    stats: Path | None = setting("path", "Where stats go (default: <output>.stats.json).", None)
    push_to_hub: str | None = setting(
        "str",
        "Dataset repo ORG/NAME to push the output, its stats and a dataset card to when the run completes, "
        "creating it if needed (needs hfbatch[hub]). Default: no push.",
        None,
    )
    private: bool = setting("bool", "With --push-to-hub: create the dataset repo private.", False)
    hub_path: str | None = setting(
        "str", "With --push-to-hub: the output's path in the repo (default data/<output name>).", None
    )
    push_every: float | None = setting(
        "float",
        "With --push-to-hub: also push the results so far every this many minutes (default: at the end only).",
        None,
        minimum=1,
    )
    output_format: str | None = setting(
        "str",
        "Output format: jsonl, parquet, or openai (OpenAI Batch API output lines, .jsonl). Default: by extension.",
        None,
        in_manifest=True,
    )
    shard: str | None = setting(
        "str",
        "Take only the rows whose id hashes to K modulo N: 'K/N' (K from 0), or 'auto' (K from "
        "JOB_COMPLETION_INDEX or SLURM_ARRAY_TASK_ID). Paths may hold {shard} (00003-of-00008). "
        "Default: every row (no shard).",
        None,
        in_manifest=True,
    )
    shards: int | None = setting(
        "int", "With --shard auto: how many shards (default: SLURM_ARRAY_TASK_COUNT).", None, minimum=1
    )
    grace: float = setting(
        "float", "Seconds in-flight requests get to finish after Ctrl-C or SIGTERM.", defaults.DEFAULT_GRACE, minimum=0
    )
    log_format: str = setting(
        "str",
        "How progress and events go to stderr: plain (lines of text; a bar on a terminal) or json "
        "(one JSON object per line, for log collectors).",
        "plain",
    )
    #: The `[sim]` table: start the built-in simulated server in-process (job files only).
    sim: dict[str, Any] | None = None
    #: The `[providers.NAME]` tables, by provider name (job files only).
    provider_settings: dict[str, ProviderSettings] = field(default_factory=dict)
    #: Where the settings came from, for error messages.
    source: str = "command line"

    @property
    def errors_path(self) -> Path:
        """Where failed rows go."""
        return self.output_files().paths.errors

    @property
    def stats_path(self) -> Path:
        """Where the stats JSON goes."""
        return self.output_files().paths.stats

    def output_files(self) -> OutputFiles:
        """The files of this job's output (nothing is opened or checked)."""
        from hfbatch.outputs.files import OutputFiles

        return OutputFiles(self.output, errors=self.errors, stats=self.stats, format=self.output_format)

    def provider(self, name: str) -> ProviderSettings:
        """The settings of provider `name` (its `[providers.NAME]` table, or none set)."""
        return self.provider_settings.get(name) or _NO_SETTINGS

    def public_settings(self) -> dict[str, Any]:
        """Every setting with its value, for the stats file and reports (job files hold no secrets)."""
        return {f.key: jsonable(getattr(self, f.key)) for f in FIELDS}

    def manifest_settings(self) -> dict[str, Any]:
        """The settings that decide what a row's result is; a change forbids resuming.

        A schema file is recorded by its content, so an edited schema is noticed too.
        """
        settings = {f.key: jsonable(getattr(self, f.key)) for f in FIELDS if f.in_manifest}
        if self.response_format is not None:
            settings["response_format"] = self.request_params()["response_format"]
        return settings

    def request_params(self) -> dict[str, Any]:
        """Parameters sent with every request; JobSpecError when the response_format file is unusable."""
        params: dict[str, Any] = {
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "seed": self.seed,
            "n": self.n if self.n is not None and self.n > 1 else None,
        }
        out = {k: v for k, v in params.items() if v is not None}
        if self.response_format is not None:
            from hfbatch.structured import load_response_format

            out["response_format"] = load_response_format(self.response_format)
        return out


FIELDS: tuple[JobField, ...] = tuple(
    JobField(f.name, default=None if f.default is MISSING else f.default, **f.metadata["setting"])
    for f in fields(JobSpec)
    if "setting" in f.metadata
)
BY_KEY = {f.key: f for f in FIELDS}
PROVIDER_FIELDS: tuple[JobField, ...] = tuple(
    JobField(f.name, default=f.default, **f.metadata["setting"]) for f in fields(ProviderSettings)
)
_NO_SETTINGS = ProviderSettings()
#: In table form, `[providers]` may give the order under this key; every other key names a provider.
ORDER_KEY = "order"


def jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    return value


def with_overrides(spec: JobSpec, **changes: Any) -> JobSpec:
    """A copy of `spec` with some settings changed (for tests and the in-process simulator)."""
    return replace(spec, **changes)
