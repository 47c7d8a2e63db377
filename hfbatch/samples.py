"""One row's request as the runner sends it: one reply, or N samples (`n`), each checked.

A plain row (n = 1, no `response_format`) is one trip through `call_with_failover`, as it
always was. A row asking for n > 1, or for structured output, is collected sample by sample:

- n > 1 is asked for natively (`"n": N`). A provider that refuses it (a 400 naming `n`:
  `SamplingNotSupportedError`, asked again at once) or sends fewer choices is remembered for the
  run and from then on asked one sample per request, with `seed + i` for sample i when a seed is set.
- Every choice is checked: with a `response_format` it must be the JSON asked for
  (`hfbatch.structured`), else it must not be empty. Good choices are kept across attempts, so
  only the missing samples are asked for again; a bad one fails the attempt (`InvalidOutputError`
  or `EmptyResponseError`, both retried like a 5xx) and is never written.

Each HTTP request is one attempt of the fail-over loop, so the provider stats count every
request. The row's record holds the N samples, with the tokens of every reply they came from.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Awaitable, Sequence
from typing import Any

from hfbatch.budget import Budget, estimate_prompt_tokens
from hfbatch.client import HuggingFaceAPI
from hfbatch.errors import (
    APIError,
    BadRequestError,
    EmptyResponseError,
    InvalidOutputError,
    ModelNotSupportedError,
    SamplingNotSupportedError,
)
from hfbatch.failover import Scheduler, call_with_failover
from hfbatch.messages import Message
from hfbatch.retry import RetryPolicy
from hfbatch.router_models import fetch_provider_info, without_structured_output
from hfbatch.structured import OutputCheck, check_for
from hfbatch.wire import ChatResult, Choice

__all__ = ["RowSender", "rejects_n"]

# A word "n" standing alone in an error message ("n > 1 is not supported", "'n' must be 1").
_MENTIONS_N = re.compile(r"(?<![\w.-])[`'\"]?n[`'\"]?(?![\w-])")


def rejects_n(error: BadRequestError) -> bool:
    """Whether a 400 to a request with n > 1 is about `n`: its error's `param` is "n", or its message names n."""
    body = error.body or ""
    if '"param"' in body and re.search(r'"param"\s*:\s*"n"', body):
        return True
    return _MENTIONS_N.search(error.message) is not None


async def _collect(stream: AsyncIterator[str | ChatResult]) -> ChatResult:
    """The result at the end of a streamed attempt."""
    async for item in stream:
        if isinstance(item, ChatResult):
            return item
    raise AssertionError("stream() ends with its result")


class RowSender:
    """Sends rows for one run: the plain path, or sampled and checked (see the module docstring)."""

    def __init__(
        self,
        api: HuggingFaceAPI,
        scheduler: Scheduler[Any],
        policy: RetryPolicy,
        *,
        stream: bool = False,
        allow_empty: bool = False,
        keep_raw: bool = False,
        budget: Budget | None = None,
    ) -> None:
        self.api = api
        # The scheduler's per-provider deadline (the runner's pool has one), else the client's --timeout.
        self._timeout = getattr(scheduler, "attempt_timeout", None)
        #: The run's caps (--max-cost ...); None or inactive: attempts are sent as they come.
        self.budget = budget if budget is not None and budget.active else None
        self.scheduler = scheduler
        self.policy = policy
        self.stream = stream
        self.allow_empty = allow_empty
        self.keep_raw = keep_raw
        #: Providers that refused n > 1 or sent fewer choices this run: one sample per request.
        self.single: set[str] = set()
        self._provider_info: Any = None
        self._info_lock = asyncio.Lock()
        # The job's response_format is one object shared by every row: its check is found once.
        self._last_format: Any = None
        self._last_check: OutputCheck | None = None

    def attempt(
        self, model: str, messages: Sequence[Message], provider: str, params: dict[str, Any], *, allow_empty: bool
    ) -> Awaitable[ChatResult]:
        """One request on one provider (the coroutine itself, not awaited: one layer less per request)."""
        if self.budget is not None:
            return self._budgeted(model, messages, provider, params, allow_empty=allow_empty)
        return self._send(model, messages, provider, params, allow_empty=allow_empty)

    async def _budgeted(
        self, model: str, messages: Sequence[Message], provider: str, params: dict[str, Any], *, allow_empty: bool
    ) -> ChatResult:
        """An attempt within the budget: its worst case held while it runs, then what was billed counted."""
        assert self.budget is not None
        n = params.get("n")
        samples = n if type(n) is int and n > 1 else 1
        held = self.budget.reserve(
            provider, estimate_prompt_tokens(list(messages)), (params.get("max_tokens") or 0) * samples
        )
        billed: ChatResult | None = None
        try:
            result = await self._send(model, messages, provider, params, allow_empty=allow_empty)
            billed = result
            return result
        except APIError as exc:
            billed = exc.billed if isinstance(exc.billed, ChatResult) else None
            raise
        finally:
            self.budget.settle(held, billed)

    def _send(
        self, model: str, messages: Sequence[Message], provider: str, params: dict[str, Any], *, allow_empty: bool
    ) -> Awaitable[ChatResult]:
        timeout = self._timeout(provider) if self._timeout is not None else None
        if not self.stream:
            return self.api.complete(
                model,
                messages,
                provider=provider,
                params=params,
                allow_empty=allow_empty,
                keep_raw=self.keep_raw,
                timeout=timeout,
            )
        return _collect(
            self.api.stream(
                model,
                messages,
                provider=provider,
                params=params,
                allow_empty=allow_empty,
                keep_raw=self.keep_raw,
                timeout=timeout,
            )
        )

    def _check(self, response_format: Any) -> OutputCheck | None:
        if response_format is not self._last_format:
            self._last_format, self._last_check = response_format, check_for(response_format)
        return self._last_check

    async def structured_providers(self, model: str, providers: Sequence[str]) -> list[str]:
        """`providers` without those the router marks `supports_structured_output: false` (asked once a run)."""
        if not self.api.uses_hub:
            return list(providers)
        async with self._info_lock:
            if self._provider_info is None:
                self._provider_info = await fetch_provider_info(self.api) or {}
        unsupported = without_structured_output(self._provider_info, model)
        return [p for p in providers if p not in unsupported]

    def result(
        self,
        model: str,
        messages: Sequence[Message],
        params: dict[str, Any],
        providers: Sequence[str],
        **failover: Any,
    ) -> Awaitable[ChatResult]:
        """The row's result, failing over between `providers`; raises the APIError that failed it.

        `failover` goes to every `call_with_failover` (the scheduler's sleep, the row's deadline, its
        token cost). Returns the coroutine to await (not a coroutine of its own: one layer less per row).
        """
        n = params.get("n")
        n = n if type(n) is int and n > 1 else 1
        check = self._check(params["response_format"]) if "response_format" in params else None
        if n == 1 and check is None:
            allow_empty = self.allow_empty
            attempt = self._send if self.budget is None else self.attempt  # `attempt`, one call less

            def send(provider: str) -> Awaitable[ChatResult]:
                return attempt(model, messages, provider, params, allow_empty=allow_empty)

            return call_with_failover(send, providers, self.policy, self.scheduler, **failover)
        return self._sampled(model, messages, params, providers, n, check, failover)

    async def _sampled(
        self,
        model: str,
        messages: Sequence[Message],
        params: dict[str, Any],
        providers: Sequence[str],
        n: int,
        check: OutputCheck | None,
        failover: dict[str, Any],
    ) -> ChatResult:
        if check is not None:
            providers = await self.structured_providers(model, providers)
            if not providers:
                raise ModelNotSupportedError(f"no provider of {model} supports structured output (response_format)")
        return await _Sampling(self, model, messages, params, n, check).run(providers, failover)


class _Sampling:
    """One row's N samples, collected across attempts and providers."""

    def __init__(
        self,
        sender: RowSender,
        model: str,
        messages: Sequence[Message],
        params: dict[str, Any],
        n: int,
        check: OutputCheck | None,
    ) -> None:
        self.sender = sender
        self.model = model
        self.messages = messages
        self.params = params
        self.n = n
        self.check = check
        self.samples: list[Choice] = []
        #: The replies samples were kept from, with the positions of the kept choices.
        self.replies: list[tuple[ChatResult, list[int]]] = []

    def _params(self, need: int, native: bool) -> dict[str, Any]:
        params = dict(self.params)
        seed = params.get("seed")
        if type(seed) is int and self.samples:
            params["seed"] = seed + len(self.samples)  # sample i of the row is asked with seed + i
        if native:
            params["n"] = need
        else:
            params.pop("n", None)
        return params

    def _problem(self, choice: Choice) -> str | None:
        if self.check is not None:
            return self.check.problem(choice.text)
        if not self.sender.allow_empty and not choice.text and not choice.reasoning:
            return f"the reply has no text (finish_reason {choice.finish_reason!r})"
        return None

    async def send(self, provider: str) -> ChatResult:
        """Ask `provider` for the samples still missing; keep the good ones, raise if any was bad."""
        sender = self.sender
        need = self.n - len(self.samples)
        native = need > 1 and provider not in sender.single
        try:
            result = await sender.attempt(
                self.model, self.messages, provider, self._params(need, native), allow_empty=True
            )
        except BadRequestError as exc:
            if native and rejects_n(exc):
                sender.single.add(provider)
                raise SamplingNotSupportedError(
                    exc.message, provider=exc.provider, status=exc.status, body=exc.body
                ) from exc
            raise
        choices = result.all_choices()
        if native and len(choices) < need:
            sender.single.add(provider)  # it sent fewer than asked: the rest come one by one
        kept: list[int] = []
        problem: str | None = None
        for position, choice in enumerate(choices[:need]):
            found = self._problem(choice)
            if found is None:
                kept.append(position)
                self.samples.append(choice)
            elif problem is None:
                problem = found
        if kept:
            self.replies.append((result, kept))
        if problem is not None:
            cls = EmptyResponseError if self.check is None else InvalidOutputError
            raise cls(problem, provider=provider, billed=result)
        return result

    async def run(self, providers: Sequence[str], failover: dict[str, Any]) -> ChatResult:
        """Collect the N samples (a reply with fewer choices than asked is followed by more requests)."""
        started = time.monotonic()
        attempts = 0
        last: ChatResult | None = None
        while len(self.samples) < self.n:
            try:
                last = await call_with_failover(
                    self.send, providers, self.sender.policy, self.sender.scheduler, **failover
                )
            except APIError as exc:
                exc.attempts += attempts
                raise
            attempts += last.attempts
        assert last is not None
        return self._combined(last, attempts, time.monotonic() - started)

    def _combined(self, last: ChatResult, attempts: int, latency: float) -> ChatResult:
        """One result for the row: its samples, the tokens of every reply they came from."""
        first = self.samples[0]
        replies = [r for r, _ in self.replies]
        result = ChatResult(
            text=first.text,
            finish_reason=first.finish_reason,
            prompt_tokens=_total(r.prompt_tokens for r in replies),
            completion_tokens=_total(r.completion_tokens for r in replies),
            provider=last.provider,
            model=last.model,
            attempts=attempts,
            latency=latency,
            reasoning=first.reasoning,
            samples=tuple(self.samples) if self.n > 1 else None,
            request_id=replies[0].request_id,
        )
        if self.sender.keep_raw:
            result.raw = _merged_body(self.replies)
        return result


def _total(values: Any) -> int | None:
    found = [v for v in values if v is not None]
    return sum(found) if found else None


def _merged_body(replies: list[tuple[ChatResult, list[int]]]) -> dict[str, Any] | None:
    """One chat.completion holding the kept choices of every reply, renumbered, with their usage summed."""
    bodies = [(r.raw, kept) for r, kept in replies if r.raw is not None]
    if not bodies:
        return None
    if len(bodies) == 1 and len(bodies[0][1]) == len(bodies[0][0].get("choices") or ()):
        return bodies[0][0]  # one reply, every choice kept: the body as the provider sent it
    merged = {k: v for k, v in bodies[0][0].items() if k not in ("choices", "usage")}
    choices: list[Any] = []
    usage: dict[str, int] = {}
    for body, kept in bodies:
        raw_choices = body.get("choices") or []
        for position in kept:
            if position < len(raw_choices) and isinstance(raw_choices[position], dict):
                choices.append({**raw_choices[position], "index": len(choices)})
        for key, value in (body.get("usage") or {}).items():
            if type(value) is int:
                usage[key] = usage.get(key, 0) + value
    merged["choices"] = choices
    if usage:
        merged["usage"] = usage
    return merged
