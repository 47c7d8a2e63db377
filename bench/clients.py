"""The clients hfbatch is measured against, each run in its own process by `bench/run.py`.

    python bench/clients.py bare|bare_uv|hf_hub|openai --input in.jsonl --output out.jsonl \
        --api-base http://127.0.0.1:8099/v1 --model bench/model --concurrency 64 --max-tokens 16

Each reads the JSONL line by line (`{"id", "prompt"}`), sends one chat completion per row with
`concurrency` workers pulling from the one file iterator (a semaphore of `concurrency` without a task
per row), and writes a JSONL of `{"id", "output"}`. At the end it prints one JSON line to stdout:
the rows written and the seconds spent in the request loop (start-up and imports excluded).
`bare_uv` is the bare loop on uvloop's event loop, as the `hfbatch` command runs when uvloop is installed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from typing import IO, Any

Handler = Callable[[str], Awaitable[str]]


async def drive(lines: Iterator[str], out: IO[str], concurrency: int, handle: Handler) -> int:
    """Send every row with `concurrency` workers sharing the line iterator; return the rows written."""
    done = 0

    async def worker() -> None:
        nonlocal done
        for line in lines:
            row = json.loads(line)
            text = await handle(row["prompt"])
            out.write(json.dumps({"id": row["id"], "output": text}) + "\n")
            done += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done


async def run_bare(args: argparse.Namespace, lines: Iterator[str], out: IO[str]) -> tuple[int, float]:
    """A bare aiohttp loop: one shared session, no connection cap, raw JSON in and out."""
    import aiohttp

    url = f"{args.api_base}/chat/completions"
    headers = {"Content-Type": "application/json", "Authorization": "Bearer x"}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def handle(prompt: str) -> str:
            body = {"model": args.model, "messages": [{"role": "user", "content": prompt}]}
            body["max_tokens"] = args.max_tokens
            async with session.post(url, data=json.dumps(body).encode(), headers=headers) as resp:
                raw = await resp.read()
                if resp.status != 200:
                    raise RuntimeError(f"HTTP {resp.status}: {raw[:200]!r}")
            content: str = json.loads(raw)["choices"][0]["message"]["content"]
            return content

        loop_started = time.perf_counter()
        return await drive(lines, out, args.concurrency, handle), loop_started


async def run_hf_hub(args: argparse.Namespace, lines: Iterator[str], out: IO[str]) -> tuple[int, float]:
    """huggingface_hub's AsyncInferenceClient pointed at the server, as its docs show."""
    from huggingface_hub import AsyncInferenceClient

    async with AsyncInferenceClient(base_url=args.api_base, api_key="x") as client:

        async def handle(prompt: str) -> str:
            reply = await client.chat_completion(
                messages=[{"role": "user", "content": prompt}], model=args.model, max_tokens=args.max_tokens
            )
            return str(reply.choices[0].message.content)

        loop_started = time.perf_counter()
        return await drive(lines, out, args.concurrency, handle), loop_started


async def run_openai(args: argparse.Namespace, lines: Iterator[str], out: IO[str]) -> tuple[int, float]:
    """The openai SDK's AsyncOpenAI pointed at the server, retries off."""
    from openai import AsyncOpenAI

    async with AsyncOpenAI(base_url=args.api_base, api_key="x", max_retries=0) as client:

        async def handle(prompt: str) -> str:
            reply = await client.chat.completions.create(
                model=args.model, messages=[{"role": "user", "content": prompt}], max_tokens=args.max_tokens
            )
            return str(reply.choices[0].message.content)

        loop_started = time.perf_counter()
        return await drive(lines, out, args.concurrency, handle), loop_started


CLIENTS: dict[str, Callable[[argparse.Namespace, Iterator[str], IO[str]], Coroutine[Any, Any, tuple[int, float]]]] = {
    "bare": run_bare,
    "bare_uv": run_bare,
    "hf_hub": run_hf_hub,
    "openai": run_openai,
}


def main() -> None:
    """Run one client over the input and print its timing as JSON."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("client", choices=sorted(CLIENTS))
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--api-base", required=True)
    parser.add_argument("--model", default="bench/model")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=16)
    args = parser.parse_args()

    loop_factory = asyncio.new_event_loop
    if args.client == "bare_uv":
        import uvloop

        loop_factory = uvloop.new_event_loop
    with open(args.input, encoding="utf-8") as f, open(args.output, "w", encoding="utf-8") as out:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            rows, loop_started = runner.run(CLIENTS[args.client](args, iter(f), out))
    ended = time.perf_counter()
    print(json.dumps({"rows": rows, "loop_s": ended - loop_started}))


if __name__ == "__main__":
    main()
