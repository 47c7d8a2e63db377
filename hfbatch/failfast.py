"""Noticing a systematic mistake early: the first rows of a run all failing the same way.

A wrong column name, a template that fits no row, or a parameter every provider refuses makes
every row fail alike; a run of a million rows should stop after a few, with the reason on the
terminal (exit 2), not after a million entries in the errors file. `FailFast` watches rows as
they end: once `threshold` rows failed for one reason (an input reason, or the same
non-retryable 400/404/422) and none succeeded or failed otherwise, it trips. Any other outcome
settles it for the rest of the run. `refused_everywhere` covers what trips before `threshold`
rows: every provider out because it does not serve the model or refuses the request.
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


def _systematic(error: APIError) -> bool:
    """True for a failure no retry or other provider would change: a bad request, a model not served."""
    return isinstance(error, BadRequestError | ModelNotSupportedError) and error.status in SYSTEMATIC_STATUSES


def _key(kind: str, message: str) -> str:
    # Row numbers, lengths and counts differ from row to row; the mistake is the same.
    return f"{kind}: {_NUMBERS.sub('N', message)}"


class FailFast:
    """Trips when the first `threshold` rows all failed for one systematic reason and none succeeded."""

    def __init__(self, threshold: int = defaults.FAIL_FAST_ROWS) -> None:
        self.threshold = threshold
        self.count = 0
        self._key: str | None = None
        self._settled = False
        #: Why the run should stop, once tripped.
        self.reason: str | None = None

    def row_ok(self) -> None:
        """A row succeeded (or, in a dry run, would be sent): nothing is systematically wrong."""
        self._settled = True

    def bad_row(self, reason: str) -> bool:
        """A bad input row; True when this trips the check."""
        return self._observe(_key("input", reason), f"bad input: {reason}")

    def failed_row(self, error: APIError) -> bool:
        """A row that failed on the providers; True when this trips the check."""
        if not _systematic(error):
            self._settled = True  # a 5xx or a 402 says nothing about the settings
            return False
        return self._observe(_key(f"{error.kind.value} {error.status}", error.message), str(error))

    def _observe(self, key: str, shown: str) -> bool:
        if self._settled or self.reason is not None:
            return False
        if self._key is None:
            self._key = key
        elif key != self._key:
            self._settled = True
            return False
        self.count += 1
        if self.count < self.threshold:
            return False
        self.reason = (
            f"stopped: the first {self.count} rows all failed the same way and none succeeded, so every row "
            f"would: {shown}. Fix the settings or the input and rerun"
        )
        return True


def refused_everywhere(causes: Mapping[str, APIError | None]) -> str | None:
    """Why the run should stop with exit 2, when every provider is out because it does not serve the model
    or refuses the request (400/404/422); None otherwise. `causes` maps each provider to what put it out."""
    if not causes or not all(c is not None and _systematic(c) for c in causes.values()):
        return None
    reasons = "; ".join(f"{name}: {cause}" for name, cause in causes.items())
    return f"stopped: every provider refuses this request ({reasons}). Fix the model or the settings and rerun"
