"""Telling 429s that depend on our load from 429s that come by chance.

Providers also answer 429 for reasons that have nothing to do with what we send
(shared upstream load, other users' bursts): a share of requests, whatever our
in-flight count or rate. Such refusals must cost only themselves. A limit is
different: a cap refuses what is sent above it, a full window everything until it
reopens. So the tests here ask whether, among our last `keep` sends, some group was
refused more often than the rest by more than chance would make, with odds below
`CHANCE` (or those the caller gives):

- `is_cap`: the sends at the refused request's level or above, as the run of
  refusals there since the provider last took one at that level, or all of them,
  against the sends below (a chance refusal is as likely at any level);
- `is_run`: the run of refusals that ends with this one (nothing taken between them,
  in send order, at any level) against every other send (as likely at any moment);
- `probe_failed`: the sends at a probed level since the probe began against a
  `Baseline` of the sends below it kept from before, which every send going at the
  probed level cannot wash out; with no refusal in the baseline, any refusal fails it.

The odds are those of the likelihood ratio of two refusal shares against one shared
share: n1 KL(s1 | s) + n2 KL(s2 | s) >= log(1 / odds), s1 > s2 (`surprise`). With no
other refusal among 250 sends, three in a run will do; with 5% of them refused, five;
with 50%, 22 (and a run of `SURE_RUN` always will: a provider that has refused every
request from the start is not refusing by chance).

Levels here are what the provider saw (`Send.seen`): our in-flight count at the
send, less our requests then in flight that it refused. Those never reached its
count, and past a cap they are many: by our count alone, requests sent "above"
the cap get through whenever one is taken while refusals are on their way back.
A request counts as taken when it succeeded, or when it went before the refused
one and is still in flight: 429s come back at once, so one in flight longer than
a refused later one was taken. Requests sent after it and still in flight are too
young to say.
"""

from __future__ import annotations

import collections
import enum
import math
from dataclasses import dataclass

__all__ = ["CHANCE", "SURE_RUN", "Baseline", "Outcome", "RefusalEvidence", "Send", "surprise"]

CHANCE = 1e-6  # odds at which refusal shares that differ are taken for a limit
SURE_RUN = 30  # a run this long is a limit's whatever else was refused (even at 50% by chance: 1 in 1e9)


class Outcome(enum.Enum):
    """How a request ended, as far as refusals go."""

    PENDING = "pending"
    TAKEN = "taken"
    REFUSED = "refused"
    DROPPED = "dropped"  # an error, a timeout, or never sent: says nothing


class Send:
    """One request as the evidence sees it: when it went, at which level, how it ended."""

    __slots__ = ("level", "outcome", "seen", "sent_at", "seq")

    def __init__(self, level: int, sent_at: float) -> None:
        #: Requests of ours in flight to the provider when this one went, itself included.
        self.level = level
        #: Those of them sent before it (`RefusalEvidence.sent` counts them), less those the
        #: provider refused (as far as their replies have come): what the provider had.
        self.seen = level
        self.sent_at = sent_at
        self.outcome = Outcome.PENDING
        self.seq = 0  # send order, set by `RefusalEvidence.sent`


@dataclass(frozen=True, slots=True)
class Baseline:
    """The sends below a probed level before the probe: the last send then, the level, refused and all."""

    seq: int
    floor: int
    refused: int
    total: int


def _kl(share: float, base: float) -> float:
    """Kullback-Leibler divergence of a refusal share from a base share (both in [0, 1])."""
    out = 0.0
    if share > 0:
        out += share * math.log(share / base)
    if share < 1:
        out += (1 - share) * math.log((1 - share) / (1 - base))
    return out


def surprise(refused1: int, n1: int, refused2: int, n2: int) -> float:
    """How unlikely (log odds) it is that group 1 was refused more often than group 2 by chance; 0 if it was not."""
    if n1 == 0 or n2 == 0 or refused1 * n2 <= refused2 * n1:
        return 0.0
    base = (refused1 + refused2) / (n1 + n2)
    return n1 * _kl(refused1 / n1, base) + n2 * _kl(refused2 / n2, base)


class RefusalEvidence:
    """The last `keep` sends to one provider (at most `levels` in flight), and what their refusals say.

    Sends and refusals are counted by level as they come and go, so a test walks back
    only over the run it measures and the requests sent since the refused one.
    """

    def __init__(self, keep: int, levels: int) -> None:
        self._sends: collections.deque[Send] = collections.deque()
        self._keep = max(keep, 16)
        self._top = max(levels, 1)
        self._seq = 0
        self._open = 0  # sent and not yet answered
        # Sends in `_sends` not dropped, and those refused: by level, and in all.
        self._count = [0] * (self._top + 1)
        self._refused = [0] * (self._top + 1)
        self._total = 0
        self._total_refused = 0

    def sent(self, send: Send) -> None:
        """Record a request as it goes."""
        if len(self._sends) >= self._keep:
            self._uncount(self._sends.popleft())
        self._seq += 1
        self._open += 1
        send.seq = self._seq
        # Places granted together share a level; they still go one by one.
        send.seen = min(self._open, self._top)
        self._sends.append(send)
        self._count[send.seen] += 1
        self._total += 1

    @property
    def last_seq(self) -> int:
        """The `Send.seq` of the last request sent."""
        return self._seq

    def ended(self, send: Send) -> None:
        """`send` is answered (or given up): no longer in flight."""
        self._open -= 1

    def _kept(self, send: Send) -> bool:
        return bool(self._sends) and send.seq >= self._sends[0].seq

    def _uncount(self, send: Send) -> None:
        if send.outcome is Outcome.DROPPED:
            return
        self._count[send.seen] -= 1
        self._total -= 1
        if send.outcome is Outcome.REFUSED:
            self._refused[send.seen] -= 1
            self._total_refused -= 1

    def dropped(self, send: Send) -> None:
        """`send` ended without a reply that says anything (an error, a timeout, never sent)."""
        if self._kept(send):
            self._uncount(send)
        send.outcome = Outcome.DROPPED

    def taken(self, send: Send) -> None:
        """`send` was answered."""
        send.outcome = Outcome.TAKEN

    def refused(self, send: Send) -> None:
        """`send` was answered 429: it was in flight, but not in the provider's count, for every later send."""
        send.outcome = Outcome.REFUSED
        if self._kept(send):
            self._refused[send.seen] += 1
            self._total_refused += 1
        for later in reversed(self._sends):
            if later.seq <= send.seq:
                break
            if later.seen > 1:
                if later.outcome is not Outcome.DROPPED:
                    is_refused = later.outcome is Outcome.REFUSED
                    self._count[later.seen] -= 1
                    self._refused[later.seen] -= is_refused
                    self._count[later.seen - 1] += 1
                    self._refused[later.seen - 1] += is_refused
                later.seen -= 1

    def _tally(self, refused: Send, floor: int) -> tuple[int, int, int, int, int]:
        """The run of refusals at `floor` or above that ends with `refused` (newest first, in send
        order), then refused and all settled sends, first at `floor` or above, then in all."""
        run = 0
        in_run = True
        young = young_above = 0  # sent after `refused` and still in flight: too young to say
        for send in reversed(self._sends):
            older = send.seq <= refused.seq
            if older and not in_run:
                break
            outcome = send.outcome
            if outcome is Outcome.DROPPED or send.seen < floor:
                continue
            if outcome is Outcome.PENDING and not older:
                young += 1
                young_above += 1
                continue
            in_run = in_run and outcome is Outcome.REFUSED
            run += in_run
        for send in reversed(self._sends):  # young ones below `floor`, missed above
            if send.seq <= refused.seq:
                break
            young += send.outcome is Outcome.PENDING and send.seen < floor
        above = sum(self._count[floor:]) - young_above
        refused_above = sum(self._refused[floor:])
        return run, refused_above, above, self._total_refused, self._total - young

    def is_cap(self, refused: Send, chance: float = CHANCE) -> bool:
        """Whether sends at `refused`'s level or above are refused more than those below, beyond `chance`.

        Either a run of them (nothing at that level taken since the run began) against all
        other sends, or all of them against those below: a cap that our count sees blurred
        (replies on the wire) refuses only some of the sends just above it.
        """
        run, refused_above, above, refused_all, total = self._tally(refused, refused.seen)
        odds = math.log(1 / chance)
        return (
            run >= SURE_RUN
            or surprise(run, run, refused_all - run, total - run) >= odds
            or surprise(refused_above, above, refused_all - refused_above, total - above) >= odds
        )

    def baseline(self, floor: int, below: int) -> Baseline:
        """What the recent sends below level `below` met, kept as a probe of `floor` and above begins."""
        return Baseline(self._seq, floor, sum(self._refused[:below]), sum(self._count[:below]))

    def probe_failed(self, refused: Send, baseline: Baseline, chance: float = CHANCE) -> bool:
        """Whether sends at the probed level or above since `baseline` are refused more than the sends
        below it were before, beyond `chance`; with no refusal below it then, whether any is.

        The baseline is kept, not the window: probing a cap our count sees blurred, every send
        soon goes at the probed level, and its refusals would become the yardstick of the next.
        """
        refused_above = above = 0
        for send in reversed(self._sends):
            if send.seq <= baseline.seq:
                break
            outcome = send.outcome
            if send.seen < baseline.floor or outcome is Outcome.DROPPED:
                continue
            if outcome is Outcome.PENDING and send.seq > refused.seq:
                continue
            refused_above += outcome is Outcome.REFUSED
            above += 1
        if baseline.refused == 0:
            return refused_above > 0  # nothing refused below the probe: a refusal at it is the probe's
        return surprise(refused_above, above, baseline.refused, baseline.total) >= math.log(1 / chance)

    def is_run(self, refused: Send, chance: float = CHANCE) -> bool:
        """Whether the run of refusals ending with `refused`, at any level, is longer than `chance` would make."""
        run, _, _, refused_all, total = self._tally(refused, 0)
        return run >= SURE_RUN or surprise(run, run, refused_all - run, total - run) >= math.log(1 / chance)
