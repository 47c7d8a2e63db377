"""Hard caps on what a run may spend: `--max-cost` USD, `--max-requests`, `--max-tokens-total`.

Before each attempt, its worst case is reserved: one request, its estimated prompt tokens plus
`max_tokens`, and their price at the serving provider (prompt estimate x input price +
`max_tokens` x output price). When the reply comes, the reservation is released and what the
provider billed (its `usage`) is counted instead. An attempt whose worst case no longer fits
is not sent: the run stops admitting rows, lets those in flight finish, and ends with exit 5.
So spend never passes a cap, however many requests are in flight.

What is guaranteed: with `max_tokens` set (it is, by default), the cost cap holds as long as
providers bill no more than `usage` says and the prompt estimate (about 4 characters a token,
see `estimate_prompt_tokens`) is not below the provider's count; a prompt that tokenizes far
worse than 4 characters a token (some scripts) can overshoot by that difference. A reply
without `usage` is counted at its worst case.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from hfbatch.errors import BudgetReached
from hfbatch.messages import Message, calculate_length
from hfbatch.pricing import Price
from hfbatch.wire import ChatResult

__all__ = ["Budget", "Reservation", "estimate_prompt_tokens"]

CHARS_PER_TOKEN = 4


def estimate_prompt_tokens(messages: list[Message]) -> int:
    """A prompt's tokens, estimated from its characters (about 4 a token)."""
    return calculate_length(messages) // CHARS_PER_TOKEN + 1


@dataclass(slots=True)
class Reservation:
    """What one attempt holds of the budget until its reply is counted."""

    provider: str
    cost: float
    tokens: int


class Budget:
    """The run's caps, what is reserved against them and what was spent."""

    def __init__(
        self,
        *,
        max_cost: float | None = None,
        max_requests: int | None = None,
        max_tokens_total: int | None = None,
        prices: Mapping[str, Price | None] | None = None,
    ) -> None:
        self.max_cost = max_cost
        self.max_requests = max_requests
        self.max_tokens_total = max_tokens_total
        self.prices = prices or {}
        self.spent = 0.0
        self.requests = 0
        self.tokens = 0
        self._reserved_cost = 0.0
        self._reserved_tokens = 0
        #: Why the budget stopped the run, once it has.
        self.reached: str | None = None

    @property
    def active(self) -> bool:
        """True when any cap is set."""
        return self.max_cost is not None or self.max_requests is not None or self.max_tokens_total is not None

    def reserve(self, provider: str, prompt_tokens: int, max_tokens: int) -> Reservation:
        """Hold an attempt's worst case; raise BudgetReached (and remember why) when it does not fit."""
        tokens = prompt_tokens + max_tokens
        cost = 0.0
        if self.max_cost is not None:
            price = self.prices.get(provider)
            if price is None:
                self._stop(f"{provider} publishes no price, so --max-cost cannot be kept there")
            else:
                cost = price.cost(prompt_tokens, max_tokens)
                if self.spent + self._reserved_cost + cost > self.max_cost:
                    self._stop(
                        f"--max-cost ${self.max_cost:g}: ${self.spent:.6f} spent, the next request may cost ${cost:.6f}"
                    )
        if self.max_requests is not None and self.requests >= self.max_requests:
            self._stop(f"--max-requests {self.max_requests} sent")
        if self.max_tokens_total is not None and self.tokens + self._reserved_tokens + tokens > self.max_tokens_total:
            self._stop(f"--max-tokens-total {self.max_tokens_total}: {self.tokens} used")
        self.requests += 1
        self._reserved_cost += cost
        self._reserved_tokens += tokens
        return Reservation(provider, cost, tokens)

    def settle(self, held: Reservation, billed: ChatResult | None) -> None:
        """Release a reservation and count what was billed for it (a reply without usage at its worst case)."""
        self._reserved_cost -= held.cost
        self._reserved_tokens -= held.tokens
        if billed is None:
            return
        prompt, completion = billed.prompt_tokens, billed.completion_tokens
        if prompt is None or completion is None:
            self.spent += held.cost
            self.tokens += held.tokens
            return
        price = self.prices.get(held.provider)
        if price is not None:
            self.spent += price.cost(prompt, completion)
        self.tokens += prompt + completion

    def _stop(self, why: str) -> None:
        self.reached = self.reached or why
        raise BudgetReached(f"budget reached: {why}; rerun with a larger budget to go on")
