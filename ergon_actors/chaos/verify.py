"""The chaos verifier: pure functions from the journal, the ledger and a fault-free run to violations.

What is checked, per flow (docs/chaos.md explains why each rule is sound):

* it ended as in the fault-free run (status and result), and each journaled step holds the
  result the fault-free run journaled at that position;
* every step the fault-free run journals, and every step that started (ledger), has a
  journaled result (at-least-once: a step cut by a fault ran again to completion);
* every journaled step of an instrumented step name was seen starting in the ledger;
* within one lease epoch, step positions start in increasing order, each once;
* across epochs: once epoch e started step M, every step before M had been acknowledged to
  it, and with fencing every write acknowledged to e was committed before a later epoch e'
  was granted; so e' must not start any step before M. A start that does is a completed step
  running again, which is also what a stale worker's write that was let through looks like;
* no step ran under an epoch the journal never granted (an acknowledged claim was lost).

The ordering rules assume a flow starts its steps one after another (no gather, no DAG).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from .. import codec
from ..core import Failure, FlowRecord, StepRecord
from ..errors import ErgonError
from .ledger import LedgerEntry
from .report import Violation

__all__ = ["FlowSummary", "Verdict", "verify", "recovery_samples",
           "NOT_FINISHED", "WRONG_RESULT", "STEP_LOST", "STEP_DIFFERS", "STEP_UNEXPECTED",
           "NEVER_RAN", "RAN_AGAIN", "PHANTOM_EPOCH", "ORPHAN"]

NOT_FINISHED = "not-finished"        # the flow did not end as in the fault-free run
WRONG_RESULT = "wrong-result"        # it ended with another result
STEP_LOST = "step-lost"              # a step ran / is due but has no journaled result
STEP_DIFFERS = "step-differs"        # a journaled step differs from the fault-free run's
STEP_UNEXPECTED = "step-unexpected"  # a journaled step the fault-free run does not have
NEVER_RAN = "never-ran"              # a journaled step the ledger never saw start
RAN_AGAIN = "ran-again"              # a step started after its result had been acknowledged
PHANTOM_EPOCH = "phantom-epoch"      # a step ran under a lease epoch the journal never granted
ORPHAN = "orphan"                    # a process outlived its supervisor

Report = Callable[[str, str | None, int | None, str], None]  # (kind, flow_id, position, detail)


@dataclass(frozen=True, slots=True)
class StepSummary:
    name: str
    status: str
    value: object  # the decoded result, or "Type: message" of a failure


@dataclass(frozen=True, slots=True)
class FlowSummary:
    """A flow as the verifier compares it: outcome, final epoch and decoded steps."""

    status: str
    result: object
    error: str | None
    epoch: int
    steps: Mapping[int, StepSummary]

    @classmethod
    def of(cls, flow: FlowRecord, steps: Iterable[StepRecord]) -> FlowSummary:
        return cls(flow.status, _decode(flow.result), _failure(flow.error), flow.epoch,
                   {s.position: StepSummary(s.name, s.status, _decode(s.result) if s.error is None
                                            else _failure(s.error)) for s in steps})


@dataclass(frozen=True, slots=True)
class Verdict:
    violations: tuple[Violation, ...]
    step_runs: int          # step starts in the ledger for the verified flows
    steps_journaled: int
    re_executed: int        # starts beyond the first of each (flow, position)
    stale_runs: int         # starts in an epoch a later epoch had already overtaken (fenced zombies)
    unrecorded_steps: tuple[str, ...]  # journaled step names that never called ledger.record()


def _decode(data: bytes | None) -> object:
    if data is None:
        return None
    try:
        return codec.decode(data)
    except ErgonError:
        return data


def _failure(error: Failure | None) -> str | None:
    return None if error is None else f"{error.type_name}: {error.message}"


def verify(expected: Mapping[str, FlowSummary], observed: Mapping[str, FlowSummary | None],
           entries: list[LedgerEntry]) -> Verdict:
    """Check every flow of `expected` against the journal (`observed`) and the ledger."""
    found: dict[tuple[str, str | None, int | None], Violation] = {}

    def report(kind: str, flow_id: str | None, position: int | None, detail: str) -> None:
        found.setdefault((kind, flow_id, position), Violation(kind, flow_id, position, detail))

    by_flow: dict[str, list[LedgerEntry]] = defaultdict(list)
    for e in entries:
        if e.flow_id in expected:
            by_flow[e.flow_id].append(e)
    instrumented = {e.step for e in entries}
    unrecorded: set[str] = set()
    runs = journaled = again = stale = 0
    for flow_id, exp in expected.items():
        obs = observed.get(flow_id)
        if obs is None:
            report(NOT_FINISHED, flow_id, None, "the flow is not in the store")
            continue
        starts = by_flow.get(flow_id, [])
        runs += len(starts)
        journaled += len(obs.steps)
        again += len(starts) - len({e.position for e in starts})
        _outcome(flow_id, exp, obs, report)
        _steps(flow_id, exp, obs, starts, instrumented, unrecorded, report)
        stale += _order(flow_id, obs, starts, report)
    return Verdict(tuple(found.values()), runs, journaled, again, stale, tuple(sorted(unrecorded)))


def _outcome(flow_id: str, exp: FlowSummary, obs: FlowSummary, report: Report) -> None:
    if obs.status != exp.status:
        report(NOT_FINISHED, flow_id, None, f"ended {obs.status}; the fault-free run ended {exp.status}"
               + (f" ({obs.error})" if obs.error else ""))
    elif obs.result != exp.result:
        report(WRONG_RESULT, flow_id, None, f"result {obs.result!r}; the fault-free run: {exp.result!r}")


def _steps(flow_id: str, exp: FlowSummary, obs: FlowSummary, starts: list[LedgerEntry],
           instrumented: set[str], unrecorded: set[str], report: Report) -> None:
    terminal = obs.status in ("COMPLETE", "FAILED", "CANCELLED")
    started = {e.position for e in starts}
    for position in sorted(set(exp.steps) | set(obs.steps) | started):
        want, got = exp.steps.get(position), obs.steps.get(position)
        if got is None:
            if terminal and want is not None:
                report(STEP_LOST, flow_id, position, f"the fault-free run journals step {want.name!r} "
                       "here but this run's journal has no result for it"
                       + (" although it ran" if position in started else ""))
            elif terminal and position in started:
                report(STEP_LOST, flow_id, position, "the step ran but no result is journaled")
            continue
        if want is None:
            report(STEP_UNEXPECTED, flow_id, position, f"journaled {got.name!r}, which the fault-free run "
                   "does not have")
        elif (got.name, got.status, got.value) != (want.name, want.status, want.value):
            report(STEP_DIFFERS, flow_id, position, f"journaled {got.name} {got.status} {got.value!r}; "
                   f"the fault-free run: {want.name} {want.status} {want.value!r}")
        if got.name not in instrumented:
            unrecorded.add(got.name)
        elif position not in started:
            report(NEVER_RAN, flow_id, position, f"step {got.name!r} has a journaled result but never "
                   "started (ledger)")


def _order(flow_id: str, obs: FlowSummary, starts: list[LedgerEntry], report: Report) -> int:
    """The epoch rules; returns the number of stale (overtaken) starts."""
    by_epoch: dict[int, list[LedgerEntry]] = defaultdict(list)
    for e in starts:
        by_epoch[e.epoch].append(e)
        if e.epoch > obs.epoch:
            report(PHANTOM_EPOCH, flow_id, e.position, f"step {e.step!r} ran (pid {e.pid}) under lease "
                   f"epoch {e.epoch}, but the journal's last epoch is {obs.epoch}: a claim was "
                   "acknowledged and then lost")
    for epoch, runs in by_epoch.items():
        highest, repeats = -1, []
        for e in runs:
            if e.position <= highest:
                repeats.append(e)
            highest = max(highest, e.position)
        if repeats:
            e = repeats[0]
            report(RAN_AGAIN, flow_id, e.position, f"step {e.step!r} started again within lease epoch "
                   f"{epoch} (pid {e.pid}); repeated positions: {_positions(repeats)}")
    moved_past, by = -1, None  # the highest step started by any earlier epoch, and that epoch
    for epoch in sorted(by_epoch):
        behind = [e for e in by_epoch[epoch] if e.position < moved_past]
        if behind:
            e = behind[0]
            report(RAN_AGAIN, flow_id, e.position, f"step {e.step!r} ran in lease epoch {epoch} (pid {e.pid}) "
                   f"although the earlier epoch {by} went on to step {moved_past}, which needs this step's "
                   f"result acknowledged to epoch {by} before epoch {epoch} was granted: a completed step "
                   f"ran again, or a stale write was accepted (positions {_positions(behind)})")
        top = max(e.position for e in by_epoch[epoch])
        if top > moved_past:
            moved_past, by = top, epoch
    stale = 0
    newest = -1
    for e in starts:  # file order is the order the starts happened
        if e.epoch < newest:
            stale += 1
        newest = max(newest, e.epoch)
    return stale


def _positions(entries: list[LedgerEntry]) -> str:
    return ", ".join(str(p) for p in sorted({e.position for e in entries}))


def recovery_samples(faults: Iterable[tuple[float, frozenset[str], int | None]],
                     entries: list[LedgerEntry]) -> list[float]:
    """Seconds from each fault to the next step start of each flow it affected.

    `faults` holds (wall-clock time, affected flow ids, pid of the victim or None); starts by
    the victim itself (a paused worker running on) do not count as recovery.
    """
    by_flow: dict[str, list[LedgerEntry]] = defaultdict(list)
    for e in entries:
        by_flow[e.flow_id].append(e)
    samples = []
    for at, affected, victim in faults:
        for flow_id in affected:
            later = [e.t for e in by_flow.get(flow_id, ()) if e.t > at and e.pid != victim]
            if later:
                samples.append(min(later) - at)
    return samples
