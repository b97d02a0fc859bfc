"""The lease-epoch rules: no step ran again once its result was committed, no epoch was made up.

The rule is one for every shape of flow: a start of position p under epoch e is a violation
when p's result was committed before e was granted (e's claim loaded it, so e replays it and
must not run it). What was committed before a grant is known from two sources:

* the ledger: a run that started step M had got past every position its ledger line does not
  name as pending (a sequential flow: every position before M; a DAG or gather: all but the
  ones in flight beside M). What a run got past was acknowledged to its epoch, and with fencing
  every write acknowledged to an epoch was committed before any later epoch was granted. So a
  later epoch (or the same one, later) that starts such a position ran a completed step again,
  or a stale write was let through, which is how a fenced write that landed shows;
* a store's event history (`CommitOrder`): which results were committed before each claim.

Step retries are tries of one position in one attempt, each in its own epoch: try k starting
means try k-1's failure was loaded, so a later epoch must not start try k-1 or before.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Protocol
from collections.abc import Iterable, Mapping

from .kinds import PHANTOM_EPOCH, RAN_AGAIN, Reporter
from .ledger import LedgerEntry
from .summary import FlowSummary

__all__ = ["Committed", "CommitOrder", "HistoryOrder", "check_epochs"]


@dataclass(frozen=True, slots=True)
class Committed:
    """A journaled outcome that a store's history shows committed before a claim."""

    position: int
    attempt: int
    try_number: int
    complete: bool  # a result; False: a failed try


class CommitOrder(Protocol):
    """What a store's event history says was committed for a flow before an epoch was granted."""

    def before_grant(self, flow_id: str, epoch: int) -> Iterable[Committed]: ...


class HistoryOrder:
    """A CommitOrder read from stores' event histories: each flow's events in sequence order, as
    (kind, details) pairs. Step results and failed tries committed before a `claimed` event are
    what that claim's epoch loaded."""

    def __init__(self, histories: Mapping[str, Iterable[tuple[str, Mapping[str, Any]]]]) -> None:
        self._loaded: dict[tuple[str, int], tuple[Committed, ...]] = {}
        for flow_id, events in histories.items():
            committed: list[Committed] = []
            for kind, details in events:
                if kind in ("step_completed", "step_failed"):
                    committed.append(Committed(int(details["position"]), int(details["attempt"]),
                                               int(details["tries"]), kind == "step_completed"))
                elif kind == "claimed":
                    self._loaded[(flow_id, int(details["epoch"]))] = tuple(committed)

    def before_grant(self, flow_id: str, epoch: int) -> Iterable[Committed]:
        return self._loaded.get((flow_id, epoch), ())


def check_epochs(flow_id: str, obs: FlowSummary, starts: list[LedgerEntry], report: Reporter,
                 commits: CommitOrder | None = None) -> int:
    """Apply every epoch rule to one flow's ledger starts; returns the number of stale starts."""
    _phantoms(flow_id, obs, starts, report)
    _once_per_epoch(flow_id, starts, report)
    _after_got_past(flow_id, starts, report)
    _across_attempts(flow_id, obs, starts, report)
    if commits is not None:
        _after_commit(flow_id, starts, commits, report)
    return _stale(starts)


def _phantoms(flow_id: str, obs: FlowSummary, starts: list[LedgerEntry], report: Reporter) -> None:
    for e in starts:
        if e.epoch > obs.epoch:
            report(PHANTOM_EPOCH, flow_id, e.position, f"step {e.step!r} ran (pid {e.pid}) under lease "
                   f"epoch {e.epoch}, but the journal's last epoch is {obs.epoch}: a claim was "
                   "acknowledged and then lost")


def _once_per_epoch(flow_id: str, starts: list[LedgerEntry], report: Reporter) -> None:
    """One run walks each position once: a second start in the same epoch is a step run again."""
    seen: dict[int, set[int]] = defaultdict(set)
    repeats: dict[int, list[LedgerEntry]] = defaultdict(list)
    for e in starts:
        if e.position in seen[e.epoch]:
            repeats[e.epoch].append(e)
        seen[e.epoch].add(e.position)
    for epoch, again in repeats.items():
        e = again[0]
        report(RAN_AGAIN, flow_id, e.position, f"step {e.step!r} started again within lease epoch {epoch} "
               f"(pid {e.pid}); repeated positions: {_positions(again)}")


def _after_got_past(flow_id: str, starts: list[LedgerEntry], report: Reporter) -> None:
    for j, s in enumerate(starts):
        for i, r in enumerate(starts):
            if r.attempt != s.attempt or not (r.epoch < s.epoch or (r.epoch == s.epoch and i < j)):
                continue
            if r.got_past(s.position):
                report(RAN_AGAIN, flow_id, s.position, _got_past_detail(s, r))
                break
            if r.position == s.position and r.try_number > s.try_number and r.epoch < s.epoch:
                report(RAN_AGAIN, flow_id, s.position, f"try {s.try_number} of step {s.step!r} started in "
                       f"lease epoch {s.epoch} (pid {s.pid}) although epoch {r.epoch} had started try "
                       f"{r.try_number}, which needs try {s.try_number}'s failure committed: a failed try "
                       "ran again")
                break


def _got_past_detail(s: LedgerEntry, r: LedgerEntry) -> str:
    if r.epoch == s.epoch:
        return (f"step {s.step!r} started in lease epoch {s.epoch} (pid {s.pid}) after the same epoch had "
                f"got past it (it went on to step {r.position} first): its result was loaded when the epoch "
                "was granted, so a completed step ran again")
    return (f"step {s.step!r} ran in lease epoch {s.epoch} (pid {s.pid}) although the earlier epoch {r.epoch} "
            f"went on to step {r.position}, which needs this step's result acknowledged to epoch {r.epoch} "
            f"before epoch {s.epoch} was granted: a completed step ran again, or a stale write was accepted")


def _across_attempts(flow_id: str, obs: FlowSummary, starts: list[LedgerEntry], report: Reporter) -> None:
    """A result completed in one attempt replays in every later attempt: it never runs again."""
    for s in starts:
        done = obs.steps.get(s.position)
        if done is not None and done.kind == "step" and done.status == "COMPLETE" and done.attempt < s.attempt:
            report(RAN_AGAIN, flow_id, s.position, f"step {s.step!r} completed in attempt {done.attempt} and "
                   f"started again in attempt {s.attempt} (lease epoch {s.epoch}, pid {s.pid})")


def _after_commit(flow_id: str, starts: list[LedgerEntry], commits: CommitOrder, report: Reporter) -> None:
    """The exact rule, from a store's history: nothing committed before a grant runs under it."""
    known: dict[int, list[Committed]] = {}
    for s in starts:
        if s.epoch not in known:
            known[s.epoch] = list(commits.before_grant(flow_id, s.epoch))
        for c in known[s.epoch]:
            if c.position == s.position and (c.complete or (c.attempt == s.attempt
                                                              and c.try_number >= s.try_number)):
                what = "its result" if c.complete else f"the failure of its try {c.try_number}"
                report(RAN_AGAIN, flow_id, s.position, f"step {s.step!r} ran in lease epoch {s.epoch} (pid "
                       f"{s.pid}) although {what} was committed before that epoch was granted (event history)")
                break


def _stale(starts: list[LedgerEntry]) -> int:
    """Starts in an epoch that a later epoch had already overtaken (file order is start order)."""
    stale = 0
    newest = -1
    for e in starts:
        if e.epoch < newest:
            stale += 1
        newest = max(newest, e.epoch)
    return stale


def _positions(entries: list[LedgerEntry]) -> str:
    return ", ".join(str(p) for p in sorted({e.position for e in entries}))
