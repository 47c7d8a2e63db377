"""Which asyncio event loop the `hfbatch` command runs on: uvloop when it is installed, else asyncio's own.

On a fast server hfbatch is bound by CPU, and a good part of the CPU per request is the event
loop's own Python code (scheduling callbacks, selecting sockets). uvloop does that work in C:
`python bench/instructions.py` counts about 90,000 fewer instructions per row with it (of some
740,000). It is an optional extra (`pip install 'hfbatch[fast]'`); nothing else changes with it.
`HFBATCH_EVENT_LOOP` picks the loop: `auto` (the default), `uvloop` or `asyncio`.

Only the command chooses: a program that calls `run_job` runs it on its own loop.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

from hfbatch.errors import JobSpecError

__all__ = ["EVENT_LOOP_ENV", "LOOPS", "loop_factory", "running_loop_name"]

EVENT_LOOP_ENV = "HFBATCH_EVENT_LOOP"
LOOPS = ("auto", "uvloop", "asyncio")


def loop_factory(choice: str | None = None) -> Callable[[], asyncio.AbstractEventLoop]:
    """The factory of the loop `choice` names (default: HFBATCH_EVENT_LOOP, else `auto`)."""
    if choice is None:
        choice = os.environ.get(EVENT_LOOP_ENV) or "auto"
    choice = choice.strip().lower()
    if choice not in LOOPS:
        raise JobSpecError(f"{EVENT_LOOP_ENV}={choice!r} is not one of {', '.join(LOOPS)}")
    if choice == "asyncio":
        return asyncio.new_event_loop
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise JobSpecError(
                f"{EVENT_LOOP_ENV}=uvloop, but uvloop is not installed: pip install 'hfbatch[fast]' "
                f"(uvloop has no Windows build), or set {EVENT_LOOP_ENV}=asyncio"
            ) from None
        return asyncio.new_event_loop
    return uvloop.new_event_loop


def running_loop_name() -> str:
    """`uvloop` or `asyncio`: the kind of loop running now (what a run's stats record)."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return "none"
    return type(loop).__module__.split(".", 1)[0]
