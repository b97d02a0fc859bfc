"""The chaos verifier: pure functions from the journal, the ledger and a fault-free run to violations.

What is checked, per flow (docs/chaos.md explains why each rule is sound):

* it ended as in the fault-free run (status, result or error, attempts), and each journaled
  record holds what the fault-free run journaled at that position: a step's result and tries,
  a signal's payload, a child's outcome; for a timer or a signal wait's deadline, whose value is
  a wall-clock time, its name and status;
* every record the fault-free run journals, and every step that started (ledger), has a
  journaled result (at least once: a step cut by a fault ran again to completion), and every
  try of an instrumented step was seen starting;
* the epoch rules (epochs.py): no step ran again once its result was committed, for sequential
  and parallel steps alike; no step ran under an epoch the journal never granted; no try or
  attempt beyond what the fault-free run needed;
* the wait rules (waits.py): timers fired, signals arrived once, child flows ended, before the
  flow went on.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from collections.abc import Iterable, Mapping

from .epochs import CommitOrder, Committed, HistoryOrder, check_epochs
from .kinds import (CHILD_DIFFERS, KINDS, NEVER_RAN, NOT_FINISHED, ORPHAN, PHANTOM_EPOCH, RAN_AGAIN, Reporter,
                    RETRY_COUNT, SIGNAL_DELIVERY, STEP_DIFFERS, STEP_LOST, STEP_UNEXPECTED, WOKE_EARLY,
                    WRONG_RESULT)
from .ledger import LedgerEntry
from .report import Violation
from .summary import FlowSummary, StepSummary
from .waits import check_signals, check_waits

__all__ = ["FlowSummary", "StepSummary", "Verdict", "verify", "recovery_samples", "Committed", "CommitOrder",
           "HistoryOrder",
           "KINDS", "NOT_FINISHED", "WRONG_RESULT", "STEP_LOST", "STEP_DIFFERS", "STEP_UNEXPECTED",
           "NEVER_RAN", "RAN_AGAIN", "PHANTOM_EPOCH", "RETRY_COUNT", "WOKE_EARLY", "SIGNAL_DELIVERY",
           "CHILD_DIFFERS", "ORPHAN"]

TERMINAL = ("COMPLETE", "FAILED", "CANCELLED")


@dataclass(frozen=True, slots=True)
class Verdict:
    violations: tuple[Violation, ...]
    step_runs: int          # step starts in the ledger for the verified flows
    steps_journaled: int
    re_executed: int        # starts beyond the first of each (flow, position, attempt, try)
    stale_runs: int         # starts in an epoch a later epoch had already overtaken (fenced zombies)
    unrecorded_steps: tuple[str, ...]  # journaled step names that never called ledger.record()
    verified: Mapping[str, int] = field(default_factory=dict)  # what was checked, by kind


def verify(expected: Mapping[str, FlowSummary], observed: Mapping[str, FlowSummary | None],
           entries: list[LedgerEntry], *, sent: Mapping[str, float] | None = None,
           commits: CommitOrder | None = None) -> Verdict:
    """Check every flow of `expected` against the journal (`observed`) and the ledger.

    Args:
        expected: the fault-free run's flows (children included), by flow_id.
        observed: the same flows as the run under test journaled them (None: missing), plus
            any other flow it holds that claims one of them as its parent.
        entries: the ledger, in file order.
        sent: the signals the harness sent, by name, with the time it first tried.
        commits: a store's event history, for the exact ran-again rule.
    """
    found: dict[tuple[str, str | None, int | None], Violation] = {}

    def report(kind: str, flow_id: str | None, position: int | None, detail: str) -> None:
        found.setdefault((kind, flow_id, position), Violation(kind, flow_id, position, detail))

    by_flow: dict[str, list[LedgerEntry]] = defaultdict(list)
    for e in entries:
        if e.flow_id in expected:
            by_flow[e.flow_id].append(e)
    instrumented = {e.step for e in entries}
    unrecorded: set[str] = set()
    verified: dict[str, int] = defaultdict(int)
    runs = journaled = again = stale = 0
    for flow_id, exp in expected.items():
        obs = observed.get(flow_id)
        if obs is None:
            report(NOT_FINISHED, flow_id, None, "the flow is not in the store")
            continue
        starts = by_flow.get(flow_id, [])
        runs += len(starts)
        journaled += len(obs.steps)
        again += len(starts) - len({(e.position, e.attempt, e.try_number) for e in starts})
        _outcome(flow_id, exp, obs, report)
        _steps(flow_id, exp, obs, starts, instrumented, unrecorded, report)
        _retries(flow_id, exp, starts, report)
        stale += check_epochs(flow_id, obs, starts, report, commits)
        if commits is not None:
            verified["event history"] += 1
        check_waits(flow_id, obs, observed, starts, sent or {}, report)
        _count(obs, starts, verified)
    check_signals(expected, observed, report)
    for flow_id, obs in observed.items():
        if flow_id not in expected and obs is not None:
            report(CHILD_DIFFERS, flow_id, None, f"a flow the fault-free run does not have (parent "
                   f"{obs.parent_id!r}), ended {obs.outcome}")
    return Verdict(tuple(found.values()), runs, journaled, again, stale, tuple(sorted(unrecorded)), dict(verified))


def _outcome(flow_id: str, exp: FlowSummary, obs: FlowSummary, report: Reporter) -> None:
    if obs.status != exp.status:
        report(NOT_FINISHED, flow_id, None, f"ended {obs.outcome}; the fault-free run ended {exp.outcome}")
        return
    if (obs.result, obs.error) != (exp.result, exp.error):
        report(WRONG_RESULT, flow_id, None, f"ended {obs.outcome}; the fault-free run: {exp.outcome}")
    if obs.attempt != exp.attempt:
        report(RETRY_COUNT, flow_id, None, f"ended in attempt {obs.attempt}; the fault-free run in attempt "
               f"{exp.attempt}")


def _steps(flow_id: str, exp: FlowSummary, obs: FlowSummary, starts: list[LedgerEntry],
           instrumented: set[str], unrecorded: set[str], report: Reporter) -> None:
    terminal = obs.status in TERMINAL
    started = {e.position for e in starts}
    for position in sorted(set(exp.steps) | set(obs.steps) | started):
        want, got = exp.steps.get(position), obs.steps.get(position)
        if got is None:
            if terminal and want is not None:
                report(STEP_LOST, flow_id, position, f"the fault-free run journals {want.name!r} here but "
                       "this run's journal has no result for it" + (" although it ran" if position in started
                                                                     else ""))
            elif terminal and position in started:
                report(STEP_LOST, flow_id, position, "the step ran but no result is journaled")
            continue
        if want is None:
            report(STEP_UNEXPECTED, flow_id, position, f"journaled {got.label}, which the fault-free run "
                   "does not have")
        elif got.label != want.label:
            report(STEP_DIFFERS, flow_id, position, f"journaled {got.label}; the fault-free run: {want.label}")
        elif (got.tries, got.attempt) != (want.tries, want.attempt):
            report(RETRY_COUNT, flow_id, position, f"journaled {got.name} after {got.tries} tries in attempt "
                   f"{got.attempt}; the fault-free run after {want.tries} in attempt {want.attempt}")
        if got.kind != "step":
            continue
        if got.name not in instrumented:
            unrecorded.add(got.name)
            continue
        tried = {e.try_number for e in starts if e.position == position and e.attempt == got.attempt}
        missing = [k for k in range(1, got.tries + 1) if k not in tried]
        if missing:
            which = "" if got.tries == 1 else f" (tries {', '.join(map(str, missing))} of attempt {got.attempt})"
            report(NEVER_RAN, flow_id, position, f"step {got.name!r} has a journaled result but never "
                   f"started{which} (ledger)")


def _retries(flow_id: str, exp: FlowSummary, starts: list[LedgerEntry], report: Reporter) -> None:
    """No run beyond the tries and attempts the fault-free run needed (its policy allowed)."""
    for e in starts:
        want = exp.steps.get(e.position)
        if e.attempt > exp.attempt:
            report(RETRY_COUNT, flow_id, e.position, f"step {e.step!r} ran in attempt {e.attempt} (pid "
                   f"{e.pid}); the fault-free run ended in attempt {exp.attempt}")
        elif want is not None and e.attempt == want.attempt and e.try_number > want.tries:
            report(RETRY_COUNT, flow_id, e.position, f"try {e.try_number} of step {e.step!r} ran (pid "
                   f"{e.pid}); the fault-free run needed {want.tries}")


def _count(obs: FlowSummary, starts: list[LedgerEntry], verified: dict[str, int]) -> None:
    """What one flow's verification covered, by record kind and feature (the report lists them)."""
    verified["flow"] += 1
    if obs.status in ("FAILED", "CANCELLED"):
        verified[f"{obs.status.lower()} flow"] += 1
    if obs.attempt > 1:
        verified["retried flow"] += 1
    beside = {p for e in starts if e.pending or e.ahead for p in (e.position, *e.pending, *e.ahead)}
    for position, record in obs.steps.items():
        verified[record.kind] += 1
        timed_out = isinstance(record.value, str) and record.value.split(":")[0].endswith("TimeoutError")
        if record.kind in ("step", "signal") and record.status == "FAILED" and timed_out:
            verified[f"{record.kind} timeout"] += 1
        if record.kind == "step" and record.tries > 1:
            verified["retried step"] += 1
        if record.kind == "step" and position in beside:
            verified["parallel step"] += 1


def recovery_samples(faults: Iterable[tuple[str, float, frozenset[str], frozenset[int]]],
                     entries: list[LedgerEntry]) -> dict[str, list[float]]:
    """Seconds from each fault to the next step start of each flow it affected, by fault kind.

    `faults` holds (kind, wall-clock time, affected flow ids, pids of the victims); starts by a
    victim itself (a paused worker, a frozen host running on) do not count as recovery.
    """
    by_flow: dict[str, list[LedgerEntry]] = defaultdict(list)
    for e in entries:
        by_flow[e.flow_id].append(e)
    samples: dict[str, list[float]] = {}
    for kind, at, affected, victims in faults:
        mine = samples.setdefault(kind, [])
        for flow_id in affected:
            later = [e.t for e in by_flow.get(flow_id, ()) if e.t > at and e.pid not in victims]
            if later:
                mine.append(min(later) - at)
    return samples
