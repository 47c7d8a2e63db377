"""The `hfbatch` command: the only module that talks to the terminal (with progress.py beside it).

Heavy imports (aiohttp, pyarrow) happen inside the commands, so `hfbatch --help` stays fast.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import click

from hfbatch import defaults

T = TypeVar("T")

# The codes, as errors.ExitCode defines them; read here without importing the library, so --help stays fast.
EXIT_FAILED, EXIT_ERROR, EXIT_PUSH_FAILED, EXIT_INTERRUPTED = 1, 6, 7, 130
# huggingface_hub's own progress bars would tear ours (it reads this when it is first imported).
_HF_BARS_ENV = "HF_HUB_DISABLE_PROGRESS_BARS"


def _fail(message: str, code: int) -> None:
    click.echo(f"hfbatch: error: {message}", err=True)
    sys.exit(code)


def _unwrap(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def _run_async(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine; turn any error into one line and an exit code (HFBATCH_DEBUG=1: the traceback)."""
    from hfbatch.errors import AuthenticationError, HfbatchError

    try:
        return asyncio.run(make())
    except KeyboardInterrupt:
        _fail("interrupted", EXIT_INTERRUPTED)
    except Exception as raised:
        if os.environ.get(defaults.DEBUG_ENV):
            raise
        exc = _unwrap(raised)
        if isinstance(exc, AuthenticationError):
            _fail(f"{exc} (the token is read from the environment; check it)", exc.exit_code)
        elif isinstance(exc, HfbatchError):
            _fail(str(exc), exc.exit_code)
        elif isinstance(exc, OSError):
            _fail(f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": "), EXIT_ERROR)
        else:
            # A bug in hfbatch: still one line, with the way to see more.
            _fail(
                f"internal error: {type(exc).__name__}: {exc} (set {defaults.DEBUG_ENV}=1 for a traceback)", EXIT_ERROR
            )
    raise AssertionError("unreachable")


def _connection_options(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option(
        "--api-key-env",
        default=None,
        help="Environment variable that holds the token; only it is read. "
        "Default: HF_TOKEN, HUGGING_FACE_HUB_TOKEN, then $HF_HOME/token, sent only to Hugging Face.",
    )(f)
    f = click.option("--hub-url", default=None, help="Hub URL for provider mappings (default https://huggingface.co).")(
        f
    )
    f = click.option("--api-base", default=None, help="OpenAI-compatible base URL (default the HF router).")(f)
    return f


def _api(api_base: str | None, hub_url: str | None, api_key_env: str | None, **kw: Any) -> Any:
    from hfbatch.client import HuggingFaceAPI
    from hfbatch.credentials import token_for

    token = token_for(api_base or defaults.DEFAULT_API_BASE, hub_url, api_key_env)
    return HuggingFaceAPI(token, api_base=api_base, hub_url=hub_url, api_key_env=api_key_env, **kw)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="hfbatch")
def cli() -> None:
    """Batch text generation through Hugging Face Inference Providers."""


@cli.command()
@_connection_options
def models(api_base: str | None, hub_url: str | None, api_key_env: str | None) -> None:
    """List the models served live for chat."""

    async def go() -> list[str]:
        async with _api(api_base, hub_url, api_key_env) as api:
            return list(await api.get_models())

    for model in _run_async(go):
        click.echo(model)


@cli.command()
@click.argument("model")
@_connection_options
def mapping(model: str, api_base: str | None, hub_url: str | None, api_key_env: str | None) -> None:
    """Show the providers that serve MODEL live for chat, in the Hub's order."""

    async def go() -> list[Any]:
        async with _api(api_base, hub_url, api_key_env) as api:
            return list(await api.get_mapping(model))

    rows = _run_async(go)
    if not rows:
        _fail(f"no live provider serves {model} for chat", EXIT_FAILED)
    for m in rows:
        click.echo(f"{m.provider}\t{m.provider_id}\t{m.status}\t{m.task}")


@cli.command()
@click.argument("model")
@click.argument("prompt")
@click.option("--system", default=None, help="System prompt.")
@click.option("--max-tokens", type=int, default=defaults.DEFAULT_MAX_TOKENS, show_default=True)
@click.option(
    "--image",
    "images",
    multiple=True,
    help="Image file, URL or data URI (repeatable); a file named here is read, and no other.",
)
@click.option(
    "--timeout", type=float, default=defaults.DEFAULT_TIMEOUT, show_default=True, help="Deadline per attempt, s."
)
@_connection_options
def chat(
    model: str,
    prompt: str,
    system: str | None,
    max_tokens: int,
    images: tuple[str, ...],
    timeout: float,
    api_base: str | None,
    hub_url: str | None,
    api_key_env: str | None,
) -> None:
    """Stream one answer from MODEL to PROMPT on stdout."""
    from hfbatch.media import LocalImages
    from hfbatch.wire import ChatResult

    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]

    async def go() -> ChatResult | None:
        async with _api(api_base, hub_url, api_key_env, timeout=timeout) as api:
            result = None
            # The user typed these paths: each is allowed, exactly (not its folder), still only if an image.
            gen = api.create_async_generator(
                model,
                messages,
                max_tokens=max_tokens,
                media=list(images) or None,
                local_images=LocalImages.named(images),
            )
            async for item in gen:
                if isinstance(item, str):
                    click.echo(item, nl=False)
                else:
                    result = item
            click.echo()
            return result

    result = _run_async(go)
    if result is not None:
        click.echo(
            f"[{result.provider}, finish={result.finish_reason}, prompt={result.prompt_tokens} "
            f"completion={result.completion_tokens} tokens, {result.attempts} attempt(s)]",
            err=True,
        )


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8089, show_default=True)
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="TOML file describing models, providers, latency and faults.",
)
def sim(host: str, port: int, config_path: str | None) -> None:
    """Serve the simulated Hugging Face Hub and router (for trying hfbatch without a token)."""
    from hfbatch.sim import SimServer, default_sim_config, load_sim_config, serve

    config = load_sim_config(config_path) if config_path else default_sim_config()

    def ready(server: SimServer) -> None:
        click.echo(f"hfbatch sim: serving on {server.url} (Ctrl-C to stop)", err=True)
        click.echo(f"  --api-base {server.api_base} --hub-url {server.hub_url}", err=True)
        click.echo(f"  token: export HF_TOKEN={config.token}", err=True)
        for m in config.models:
            click.echo(f"  model {m.id}: " + ", ".join(p.name for p in m.providers), err=True)

    try:
        _run_async(lambda: serve(config, host, port, ready))
    except SystemExit as exc:
        if exc.code == EXIT_INTERRUPTED:
            sys.exit(0)
        raise


def _run_options(f: Callable[..., Any]) -> Callable[..., Any]:
    from hfbatch.jobspec import FIELDS

    types: dict[str, Any] = {
        "int": int,
        "float": float,
        "str": str,
        "url": str,
        "path": str,
        "list": str,
        "schema": str,
    }
    for field in reversed(FIELDS):
        # Lists are shown as the job file writes them; `run` drops values the user did not give
        # (ParameterSource.DEFAULT), so a default never overrides the job file.
        default = ",".join(field.default) or None if field.kind == "list" else field.default
        name = f"{field.flag}/--no-{field.flag[2:]}" if field.kind == "bool" else field.flag
        kind = None if field.kind == "bool" else types[field.kind]
        show = default is not None
        f = click.option(name, field.key, type=kind, default=default, help=field.help, show_default=show)(f)
    return f


def _given(ctx: click.Context, flags: dict[str, Any]) -> dict[str, Any]:
    """The flags the user gave on the command line, without the defaults click filled in."""
    source = click.core.ParameterSource.DEFAULT
    return {k: v for k, v in flags.items() if ctx.get_parameter_source(k) is not source}


@cli.command()
@click.argument("job", required=False, type=click.Path(dir_okay=False))
@_run_options
@click.option("--restart", is_flag=True, help="Delete earlier results of this output and start over.")
@click.option("--force", is_flag=True, help="Resume even though the settings or the input changed.")
@click.option("--json", "as_json", is_flag=True, help="With --dry-run: print the report as JSON.")
@click.pass_context
def run(ctx: click.Context, /, job: str | None, restart: bool, force: bool, as_json: bool, **flags: Any) -> None:
    """Run a batch job: JOB.toml, or --input, --output and --model (flags override the file).

    \b
    Exit codes: 0 all rows done; 1 done, some rows failed (see <output>.errors.jsonl);
    2 bad usage, job file or input, nothing sent (or the first rows all failed the same
    way); 3 token missing or refused; 4 another run holds the output; 5 a budget was reached;
    6 stopped by a failure outside the rows (the endpoint, the Hub, the disk): results so far
    are kept; 7 the run completed but --push-to-hub failed (the output is intact; rerun to
    push); 130 interrupted (rerun the same command to resume). --dry-run exits 0 when the job is sound.
    """
    from hfbatch.dryrun import DryRunReport, dry_run, format_dry_run
    from hfbatch.jobfile import build_spec, load_job_file
    from hfbatch.progress import Progress
    from hfbatch.runner import RunControl, RunReport, run_job
    from hfbatch.stats import format_table

    async def go() -> RunReport | DryRunReport:
        from hfbatch.errors import JobSpecError

        if restart and force:
            raise JobSpecError("--restart and --force cannot be used together")
        file_values = load_job_file(Path(job)) if job else {}
        spec = build_spec(file_values, _given(ctx, flags))
        if spec.dry_run:
            return await dry_run(spec, restart=restart, force=force)
        if as_json:
            raise JobSpecError("--json goes with --dry-run (a run's stats are JSON in <output>.stats.json)")
        control = RunControl()
        loop = asyncio.get_running_loop()

        def on_signal() -> None:
            if control.draining.is_set():
                click.echo("\nhfbatch: stopping now", err=True)
            else:
                click.echo(
                    f"\nhfbatch: stopping: letting requests in flight finish (up to {spec.grace:g}s); "
                    "press Ctrl-C again to stop now",
                    err=True,
                )
            control.request_stop()

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal)
        os.environ.setdefault(_HF_BARS_ENV, "1")
        progress = Progress()
        try:
            report = await run_job(spec, restart=restart, force=force, control=control, progress=progress)
        finally:
            progress.close()
        click.echo(format_table(report.stats), err=True)
        pushed = report.stats.get("push") or {}
        if pushed.get("commit") and report.exit_code != EXIT_PUSH_FAILED:
            click.echo(f"hfbatch: pushed {pushed['rows']} rows to {pushed['repo']} ({pushed['url']})", err=True)
        if report.message:
            click.echo(f"hfbatch: {report.message}", err=True)
        return report

    report = _run_async(go)
    if isinstance(report, DryRunReport):
        click.echo(json.dumps(report.to_dict(), indent=2, ensure_ascii=False) if as_json else format_dry_run(report))
        sys.exit(0)
    sys.exit(int(report.exit_code))


@cli.command()
@click.argument("output", type=click.Path(dir_okay=False))
@click.option("--open", "open_it", is_flag=True, help="Open the report in the browser once written.")
@click.option(
    "--stats", "stats_path", type=click.Path(dir_okay=False), default=None, help="The run's --stats, if moved."
)
@click.option(
    "--errors", "errors_path", type=click.Path(dir_okay=False), default=None, help="The run's --errors, if moved."
)
def report(output: str, open_it: bool, stats_path: str | None, errors_path: str | None) -> None:
    """Write OUTPUT.report.html: one self-contained page with the run's charts and numbers."""
    from hfbatch.report import build_report

    path = build_report(
        Path(output),
        stats_path=Path(stats_path) if stats_path else None,
        errors_path=Path(errors_path) if errors_path else None,
    )
    click.echo(str(path))
    if open_it:
        click.launch(str(path))


@cli.command()
@click.argument("output", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
def status(output: str, as_json: bool) -> None:
    """Show how far the run into OUTPUT got; exit 0 complete, 1 incomplete, 4 while a run is going."""
    import dataclasses
    import json

    from hfbatch.status import output_status

    st = output_status(Path(output))
    if as_json:
        data = dataclasses.asdict(st) | {"output": str(st.output), "exit_code": int(st.exit_code)}
        click.echo(json.dumps(data, indent=2))
        sys.exit(int(st.exit_code))
    state = f"running (pid {st.holder_pid})" if st.running else ("complete" if st.complete else "incomplete")
    left = "?" if st.rows_left is None else str(st.rows_left)
    click.echo(f"{output}: {state}; {st.rows_done} done, {st.rows_failed} failed, {left} left")
    if st.rate:
        eta = f", about {st.eta_s:.0f}s left" if st.eta_s is not None else ""
        click.echo(f"  {st.rate:.1f} rows/s in the latest run{eta}")
    for name, p in st.providers.items():
        limit = p.get("limits", p)
        click.echo(
            f"  {name}: {p.get('requests', 0)} requests, {p.get('successes', 0)} ok, "
            f"{(p.get('failures') or {}).get('429', 0)} rate-limited, limit {limit.get('limit', '-')}"
        )
    sys.exit(int(st.exit_code))


@cli.command()
@click.argument("output", type=click.Path(dir_okay=False))
@click.argument("repo")
@click.option("--private", is_flag=True, help="Create the dataset repo private (when it does not exist yet).")
@click.option("--hub-path", default=None, help="The output's path in the repo (default data/<output name>).")
@click.option("--stats", "stats_path", type=click.Path(dir_okay=False), help="The run's --stats, if moved.")
@click.option("--hub-url", default=None, help="The Hub to push to (default HF_ENDPOINT, else https://huggingface.co).")
@click.option("--api-key-env", default=None, help="Environment variable holding the token (default HF_TOKEN, ...).")
def push(
    output: str,
    repo: str,
    private: bool,
    hub_path: str | None,
    stats_path: str | None,
    hub_url: str | None,
    api_key_env: str | None,
) -> None:
    """Push OUTPUT, its stats and a dataset card to the Hub dataset repo REPO (ORG/NAME), running nothing.

    \b
    The repo is created if needed; one commit holds the three files. Exit codes: 0 pushed;
    2 bad usage, or huggingface_hub missing (pip install 'hfbatch[hub]'); 3 no token;
    4 a run is writing OUTPUT; 7 the Hub refused or failed (OUTPUT is untouched).
    """
    from hfbatch.push import PushResult, PushTarget, push_existing

    os.environ.setdefault(_HF_BARS_ENV, "1")

    async def go() -> PushResult:
        target = PushTarget.named(repo, hub_url=hub_url, api_key_env=api_key_env, private=private, path=hub_path)
        stats = Path(stats_path) if stats_path else None
        return await asyncio.to_thread(push_existing, Path(output), target, stats_path=stats)

    result = _run_async(go)
    kept = "" if result.card else "; the repo's own README.md was kept"
    click.echo(f"pushed {result.rows} rows of {output} to {result.repo_id}: {', '.join(result.files)}{kept}")
    click.echo(result.url)


@cli.command()
@click.argument("parts", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option(
    "--output", "-o", required=True, type=click.Path(dir_okay=False), help="The merged file: .jsonl or .parquet."
)
@click.option("--dedupe", is_flag=True, help="Keep the first part's result for an id in several parts (else exit 2).")
@click.option("--partial", is_flag=True, help="Merge parts whose run has not finished, and despite missing shards.")
@click.option(
    "--output-format",
    default=None,
    help="jsonl, parquet or openai (default: by extension; openai when every part is OpenAI batch output).",
)
def merge(parts: tuple[str, ...], output: str, dedupe: bool, partial: bool, output_format: str | None) -> None:
    """Join shard outputs PARTS (JSONL, Parquet, OpenAI batch output) into one file, exactly once per id.

    \b
    Writes OUTPUT, OUTPUT.stats.json (the parts' stats added up), OUTPUT.errors.jsonl and
    OUTPUT.timeline.jsonl. Exit codes: 0 merged; 2 an id in two parts, an unfinished part or
    a missing shard (see --dedupe, --partial), or a part that is not an hfbatch output.
    """
    from hfbatch.errors import HfbatchError
    from hfbatch.merge import merge_outputs

    try:
        paths = [Path(p) for p in parts]
        report = merge_outputs(paths, Path(output), dedupe=dedupe, partial=partial, output_format=output_format)
    except HfbatchError as exc:
        _fail(str(exc), exc.exit_code)
    except OSError as exc:
        _fail(f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": "), EXIT_ERROR)
    for note in report.notes:
        click.echo(f"hfbatch: {note}", err=True)
    click.echo(
        f"hfbatch: merged {len(report.parts)} parts into {report.output}: {report.records} results, "
        f"{report.errors} failed rows",
        err=True,
    )


def main() -> None:
    """Entry point of the `hfbatch` console script."""
    cli(prog_name="hfbatch")
