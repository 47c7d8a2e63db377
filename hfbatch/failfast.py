"""Noticing a systematic mistake early: the first rows of a job all failing the same way.

A wrong column name, a template that fits no row, or a parameter every provider refuses makes
every row fail alike; a run of a million rows should stop after a few, with the reason on the
terminal (exit 2), not after a million entries in the errors file. `FailFast` watches the first
`threshold` rows in input order, whatever order their replies come back in: when every one of
them failed for one reason (an input reason, or the same non-retryable 400/404/422) and no row
anywhere succeeded, it trips. A success, or one of those rows ending otherwise, settles it for
the rest of the run. `refused_everywhere` covers what ends a run sooner: every provider out
because it does not serve the model or refuses the request.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from hfbatch import defaults
from hfbatch.errors import APIError, BadRequestError, ModelNotSupportedError

__all__ = ["FailFast", "refused_everywhere"]

#: HTTP statuses that say the request (not the provider's state) is wrong.
SYSTEMATIC_STATUSES = frozenset({400, 404, 422})
_NUMBERS = re.compile(r"\d+")
_OTHER = "other"  # the outcome of a first row that failed for a reason saying nothing about the settings


def _systematic(error: APIError) -> bool:
    """True for a failure no retry or other provider would change: a bad request, a model not served."""
    return isinstance(error, BadRequestError | ModelNotSupportedError) and error.status in SYSTEMATIC_STATUSES


def _key(kind: str, message: str) -> str:
    # Row numbers, lengths and counts differ from row to row; the mistake is the same.
    return f"{kind}: {_NUMBERS.sub('N', message)}"


class FailFast:
    """Trips when the first `threshold` rows (input order) all failed for one systematic reason, none succeeding.

    Built with `enabled=False` (a resume: earlier runs had results with these settings) it never trips.
    """

    def __init__(self, threshold: int = defaults.FAIL_FAST_ROWS, *, enabled: bool = True) -> None:
        self.threshold = threshold
        # The first rows by input index: their outcome key, None while in flight.
        self._first: dict[int, str | None] = {}
        self._settled = not enabled
        self._shown = ""
        #: Why the run should stop, once tripped.
        self.reason: str | None = None

    def row_read(self, index: int) -> None:
        """A row was read and goes to the providers: among the first rows, its outcome will count."""
        if not self._settled and len(self._first) < self.threshold:
            self._first[index] = None

    def row_ok(self) -> None:
        """A row succeeded (or, in a dry run, would be sent): nothing is systematically wrong."""
        self._settled = True

    def bad_row(self, index: int, reason: str) -> bool:
        """A bad input row; True when this trips the check."""
        if not self._settled and len(self._first) < self.threshold:
            self._first.setdefault(index, None)
        return self._outcome(index, _key("input", reason), f"bad input: {reason}")

    def failed_row(self, index: int, error: APIError) -> bool:
        """A row that failed on the providers; True when this trips the check."""
        key = _key(f"{error.kind.value} {error.status}", error.message) if _systematic(error) else _OTHER
        return self._outcome(index, key, str(error))

    def _outcome(self, index: int, key: str, shown: str) -> bool:
        if self._settled or self.reason is not None or index not in self._first:
            return False
        self._first[index] = key
        self._shown = self._shown or shown
        keys = set(self._first.values())
        if _OTHER in keys or len(keys - {None}) > 1:
            self._settled = True
            return False
        if None in keys or len(self._first) < self.threshold:
            return False
        self.reason = (
            f"stopped: the first {self.threshold} rows all failed the same way and none succeeded, so every row "
            f"would: {self._shown}. Fix the settings or the input and rerun"
        )
        return True


def refused_everywhere(causes: Mapping[str, APIError | None]) -> str | None:
    """Why the run should stop with exit 2, when every provider is out because it does not serve the model
    or refuses the request (400/404/422); None otherwise. `causes` maps each provider to what put it out."""
    if not causes or not all(c is not None and _systematic(c) for c in causes.values()):
        return None
    reasons = "; ".join(f"{name}: {cause}" for name, cause in causes.items())
    return f"stopped: every provider refuses this request ({reasons}). Fix the model or the settings and rerun"
