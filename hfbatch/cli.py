"""The `hfbatch` command: with cli_tools.py and progress.py, the only code that talks to the terminal.

Heavy imports (aiohttp, pyarrow) happen inside the commands, so `hfbatch --help` stays fast.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from hfbatch.cli_tools import EXIT_ERROR, chat, mapping, models, run_async, sim
from hfbatch.cli_tools import fail as _fail

# The code of a failed push (errors.ExitCode.PUSH_FAILED), read here without importing the library.
EXIT_PUSH_FAILED = 7
# huggingface_hub's own progress bars would tear ours (it reads this when it is first imported).
_HF_BARS_ENV = "HF_HUB_DISABLE_PROGRESS_BARS"
# Tracked allocations between collections of the young generation in the hfbatch process (CPython: 700).
# Each request in flight holds dozens of young objects (aiohttp's request and response, futures, our
# slot and lease), so at the default a collection walks all of them every few dozen rows: up to a tenth
# of a run's CPU at 256 in flight (bench/README.md). Requests leave almost no reference cycles, so
# collecting ten times less often costs little memory.
GC_YOUNG_THRESHOLD = 10_000


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="hfbatch")
def cli() -> None:
    """Batch text generation through Hugging Face Inference Providers."""


cli.add_command(models)
cli.add_command(mapping)
cli.add_command(chat)
cli.add_command(sim)


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


@cli.command(short_help="Run a batch job: a job file, or --input, --output, --model.")
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
    from hfbatch import events
    from hfbatch.dryrun import DryRunReport, dry_run, format_dry_run
    from hfbatch.jobfile import build_spec, load_job_file
    from hfbatch.progress import Progress
    from hfbatch.runner import RunControl, RunReport, run_job
    from hfbatch.stats import format_table

    # The flag is known at once (an error in the job file is a JSON line too); the job file's key once read.
    json_logs = ctx.get_parameter_source("log_format") is not click.core.ParameterSource.DEFAULT and (
        flags.get("log_format") == "json"
    )

    def fail(message: str, code: int) -> None:
        if not json_logs:
            _fail(message, code)
        click.echo(events.json_line(events.make("error", message, level=events.ERROR, exit_code=code)), err=True)
        sys.exit(code)

    async def go() -> RunReport | DryRunReport:
        nonlocal json_logs
        from hfbatch.errors import JobSpecError

        if restart and force:
            raise JobSpecError("--restart and --force cannot be used together")
        file_values = load_job_file(Path(job)) if job else {}
        spec = build_spec(file_values, _given(ctx, flags))
        if spec.dry_run:
            return await dry_run(spec, restart=restart, force=force)
        if as_json:
            raise JobSpecError("--json goes with --dry-run (a run's stats are JSON in <output>.stats.json)")
        json_logs = spec.log_format == "json"
        control = RunControl()
        loop = asyncio.get_running_loop()
        progress = Progress(log_format=spec.log_format)
        ended: list[events.Event] = []

        def on_event(event: events.Event) -> None:
            if event["event"] == "run_end" and not json_logs:
                ended.append(event)  # said after the table, as its last line
            else:
                progress.event(event)

        def on_signal() -> None:
            if not json_logs:
                click.echo(err=True)  # past the ^C the terminal echoed
            progress.event(events.stopping(control.draining.is_set(), spec.grace))
            control.request_stop()

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal)
        os.environ.setdefault(_HF_BARS_ENV, "1")
        try:
            report = await run_job(
                spec, restart=restart, force=force, control=control, progress=progress, on_event=on_event
            )
        finally:
            progress.close()
        if not json_logs:
            click.echo(format_table(report.stats), err=True)
            pushed = report.stats.get("push") or {}
            if pushed.get("commit") and report.exit_code != EXIT_PUSH_FAILED:
                click.echo(f"hfbatch: pushed {pushed['rows']} rows to {pushed['repo']} ({pushed['url']})", err=True)
            for event in ended:
                progress.event(event)
        return report

    report = run_async(go, fail)
    if isinstance(report, DryRunReport):
        click.echo(json.dumps(report.to_dict(), indent=2, ensure_ascii=False) if as_json else format_dry_run(report))
        sys.exit(0)
    sys.exit(int(report.exit_code))


@cli.command(short_help="Write a run's HTML report with charts.")
@click.argument("output", type=click.Path(dir_okay=False))
@click.option("--open", "open_it", is_flag=True, help="Open the report in the browser once written.")
@click.option(
    "--stats",
    "stats_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="The run's --stats, if moved. Default: OUTPUT.stats.json.",
)
@click.option(
    "--errors",
    "errors_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="The run's --errors, if moved. Default: OUTPUT.errors.jsonl.",
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


@cli.command(short_help="Show how far the run into OUTPUT got.")
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


@cli.command(short_help="Push an output, its stats and a dataset card to a Hub dataset repo.")
@click.argument("output", type=click.Path(dir_okay=False))
@click.argument("repo")
@click.option("--private", is_flag=True, help="Create the dataset repo private (when it does not exist yet).")
@click.option("--hub-path", default=None, help="The output's path in the repo (default data/<output name>).")
@click.option(
    "--stats",
    "stats_path",
    type=click.Path(dir_okay=False),
    help="The run's --stats, if moved (default: <output>.stats.json).",
)
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

    result = run_async(go)
    kept = "" if result.card else "; the repo's own README.md was kept"
    click.echo(f"pushed {result.rows} rows of {output} to {result.repo_id}: {', '.join(result.files)}{kept}")
    click.echo(result.url)


@cli.command(short_help="Join shard outputs into one file, exactly once per id.")
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
    """Entry point of the `hfbatch` console script (the process is ours: its collector is tuned for long runs)."""
    young, older, oldest = gc.get_threshold()
    if young:  # 0: collection is off, and stays so
        gc.set_threshold(max(young, GC_YOUNG_THRESHOLD), older, oldest)
    cli(prog_name="hfbatch")
