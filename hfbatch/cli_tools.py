"""The `hfbatch` commands that look things up or serve (models, mapping, chat, sim), and what every command shares.

Part of the CLI layer with cli.py, which registers these commands: shared here are the one-line
errors and exit codes (`run_async`, `fail`) and the connection options (`connection_options`, `open_api`).
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import click

from hfbatch import defaults

T = TypeVar("T")

# The codes, as errors.ExitCode defines them; read here without importing the library, so --help stays fast.
EXIT_FAILED, EXIT_ERROR, EXIT_INTERRUPTED = 1, 6, 130


def fail(message: str, code: int) -> None:
    """Say `hfbatch: error: message` on stderr and exit with `code`."""
    click.echo(f"hfbatch: error: {message}", err=True)
    sys.exit(code)


def _unwrap(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def run_async(make: Callable[[], Coroutine[Any, Any, T]], on_error: Callable[[str, int], None] = fail) -> T:
    """Run a coroutine on the chosen event loop (`hfbatch.event_loop`); turn any error into one line and an exit code.

    HFBATCH_DEBUG=1 shows the traceback instead. `on_error(message, code)` writes the line and exits
    (default: `hfbatch: error: ...` on stderr).
    """
    from hfbatch.errors import AuthenticationError, HfbatchError
    from hfbatch.event_loop import loop_factory

    try:
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            return runner.run(make())
    except KeyboardInterrupt:
        on_error("interrupted", EXIT_INTERRUPTED)
    except Exception as raised:
        if os.environ.get(defaults.DEBUG_ENV):
            raise
        exc = _unwrap(raised)
        if isinstance(exc, AuthenticationError):
            on_error(f"{exc} (the token is read from the environment; check it)", exc.exit_code)
        elif isinstance(exc, HfbatchError):
            on_error(str(exc), exc.exit_code)
        elif isinstance(exc, OSError):
            on_error(f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": "), EXIT_ERROR)
        else:
            # A bug in hfbatch: still one line, with the way to see more.
            on_error(
                f"internal error: {type(exc).__name__}: {exc} (set {defaults.DEBUG_ENV}=1 for a traceback)", EXIT_ERROR
            )
    raise AssertionError("unreachable")


def connection_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """--api-base, --hub-url and --api-key-env, with their defaults."""
    f = click.option(
        "--api-key-env",
        default=None,
        help="Environment variable that holds the token; only it is read. "
        "Default: HF_TOKEN, HUGGING_FACE_HUB_TOKEN, then $HF_HOME/token, sent only to Hugging Face.",
    )(f)
    f = click.option(
        "--hub-url",
        default=None,
        help="Hub URL for provider mappings. Default: $HF_ENDPOINT, else https://huggingface.co.",
    )(f)
    f = click.option(
        "--api-base",
        default=None,
        help=f"OpenAI-compatible base URL. Default: the HF router, {defaults.DEFAULT_API_BASE}.",
    )(f)
    return f


def open_api(api_base: str | None, hub_url: str | None, api_key_env: str | None, **kw: Any) -> Any:
    """A HuggingFaceAPI for the connection options, with the token they allow."""
    from hfbatch.client import HuggingFaceAPI
    from hfbatch.credentials import token_for

    token = token_for(api_base or defaults.DEFAULT_API_BASE, hub_url, api_key_env)
    return HuggingFaceAPI(token, api_base=api_base, hub_url=hub_url, api_key_env=api_key_env, **kw)


@click.command(short_help="List the models served live for chat.")
@click.option("--aliases", is_flag=True, help="List the short names hfbatch takes for model ids (asks nothing).")
@click.option(
    "--strict",
    is_flag=True,
    help="When the live list cannot be had, fail (exit 6; 3 for a refused token) instead of showing "
    "hfbatch's built-in list.",
)
@connection_options
def models(aliases: bool, strict: bool, api_base: str | None, hub_url: str | None, api_key_env: str | None) -> None:
    """List the models served live for chat (the Hub's, or the --api-base server's).

    When the list cannot be read, hfbatch's built-in list of well-known models is shown instead,
    with a warning on stderr (exit 0), or with --strict an error.
    """
    from hfbatch.catalog import MODEL_ALIASES, ModelList
    from hfbatch.errors import AuthenticationError

    if aliases:
        width = max(map(len, MODEL_ALIASES))
        for alias, model in MODEL_ALIASES.items():
            click.echo(f"{alias:<{width}}  {model}")
        return

    async def go() -> ModelList:
        async with open_api(api_base, hub_url, api_key_env) as api:
            listed: ModelList = await api.list_models()
            return listed

    found = run_async(go)
    if not found.live:
        code = int(found.error.exit_code if isinstance(found.error, AuthenticationError) else EXIT_ERROR)
        if strict:
            fail(f"cannot list the live models: {found.error}", code)
        click.echo(
            f"hfbatch: warning: cannot list the live models ({found.error}); showing hfbatch's built-in "
            "list of well-known models instead: not live data (--strict makes this an error)",
            err=True,
        )
    for model in found.models:
        click.echo(model)


@click.command(short_help="Show the providers that serve MODEL, in order.")
@click.argument("model")
@connection_options
def mapping(model: str, api_base: str | None, hub_url: str | None, api_key_env: str | None) -> None:
    """Show the providers that serve MODEL live for chat, in the Hub's order.

    \b
    Columns: provider, its id for the model, status, task. With --api-base and no --hub-url,
    no Hub is asked: the server is the one provider, named by its host and port.
    """

    async def go() -> list[Any]:
        async with open_api(api_base, hub_url, api_key_env) as api:
            if not api.uses_hub:
                click.echo(
                    f"hfbatch: no --hub-url, so no Hub is asked: the server at {api.api_base} is the one "
                    "provider, named by its host and port",
                    err=True,
                )
            return list(await api.get_mapping(model))

    rows = run_async(go)
    if not rows:
        fail(f"no live provider serves {model} for chat", EXIT_FAILED)
    for m in rows:
        click.echo(f"{m.provider}\t{m.provider_id}\t{m.status}\t{m.task}")


@click.command(short_help="Stream one answer from MODEL to PROMPT.")
@click.argument("model")
@click.argument("prompt")
@click.option("--system", default=None, help="System prompt. Default: none.")
@click.option(
    "--max-tokens", type=int, default=defaults.DEFAULT_MAX_TOKENS, show_default=True, help="Maximum tokens to generate."
)
@click.option(
    "--image",
    "images",
    multiple=True,
    help="Image file, URL or data URI (repeatable); a file named here is read, and no other. Default: none.",
)
@click.option(
    "--timeout", type=float, default=defaults.DEFAULT_TIMEOUT, show_default=True, help="Deadline per attempt, seconds."
)
@connection_options
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
        async with open_api(api_base, hub_url, api_key_env, timeout=timeout) as api:
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

    result = run_async(go)
    if result is not None:
        click.echo(
            f"[{result.provider}, finish={result.finish_reason}, prompt={result.prompt_tokens} "
            f"completion={result.completion_tokens} tokens, {result.attempts} attempt(s)]",
            err=True,
        )


@click.command(short_help="Serve the simulated Hub and router (no token needed).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0: every interface).")
@click.option("--port", type=int, default=8089, show_default=True, help="Port to listen on (0: any free port).")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="TOML file describing models, providers, latency and faults. "
    "Default: providers alpha (out of credits), beta (flaky), gamma (healthy).",
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
        run_async(lambda: serve(config, host, port, ready))
    except SystemExit as exc:
        if exc.code == EXIT_INTERRUPTED:
            sys.exit(0)
        raise
