"""The rules for waits: timers fired, signals arrived once, child flows ended, before the flow went on.

A wait's record cannot be compared with the fault-free run by value alone: a timer's record is
a wall-clock deadline, a signal arrives whenever the harness sends it, a child ends whenever it
ends. What must hold instead, for every wait a run got past (its ledger line does not name it
pending) and for every wait of a flow that completed:

* a timer: the run went on no earlier than the journaled deadline;
* a signal: it went on no earlier than the harness sent the signal (or, for a wait that timed
  out, than the wait's journaled deadline); across all flows each signal name was received as
  often as in the fault-free run (once), and never one that was not sent;
* a child flow: the child exists, belongs to the parent, ended as the parent's record says,
  with the same result, before the parent journaled it and before the parent went on.

Times come from one host's clock: the ledger's (worker processes), the harness's and the
store's (the journal process, or Redis's TIME).
"""

from __future__ import annotations

from collections.abc import Mapping

from ..executor.context import position_label
from .kinds import CHILD_DIFFERS, SIGNAL_DELIVERY, WOKE_EARLY, Reporter
from .ledger import LedgerEntry
from .summary import FlowSummary, StepSummary

__all__ = ["check_waits", "check_signals", "child_id", "SLACK"]

SLACK = 0.001  # seconds: float rounding between the clocks' readings, nothing more
TERMINAL = ("COMPLETE", "FAILED", "CANCELLED")


def child_id(parent: str, position: int) -> str:
    """The flow_id of the child a parent invokes at `position` (executor/child.py derives it so)."""
    return f"{parent}/{position_label(position)}"


def check_waits(flow_id: str, obs: FlowSummary, observed: Mapping[str, FlowSummary | None],
                starts: list[LedgerEntry], sent: Mapping[str, float], report: Reporter) -> None:
    """Timers, signals and children of one flow (see the module docstring)."""
    due: dict[int, tuple[float, str]] = {}
    for position, record in obs.steps.items():
        if record.kind == "child":
            _child(flow_id, position, record, observed.get(child_id(flow_id, position)), report)
        when = _due(flow_id, position, record, obs, observed, sent, report)
        if when is not None:
            due[position] = when
    for s in starts:
        for position, (at, what) in due.items():
            if s.got_past(position) and s.t < at - SLACK:
                report(WOKE_EARLY, flow_id, position, f"step {s.step!r} (position {s.position}, lease epoch "
                       f"{s.epoch}, pid {s.pid}) started {at - s.t:.3f}s before {what}")
                break
    if obs.status == "COMPLETE":
        for position, (at, what) in due.items():
            if obs.finished_at < at - SLACK:
                report(WOKE_EARLY, flow_id, position, f"the flow completed {at - obs.finished_at:.3f}s "
                       f"before {what}")


def _due(flow_id: str, position: int, record: StepSummary, obs: FlowSummary,
         observed: Mapping[str, FlowSummary | None], sent: Mapping[str, float],
         report: Reporter) -> tuple[float, str] | None:
    """When the wait at `position` let the flow go on at the earliest, and what that was."""
    name = record.name.partition(":")[2]
    if record.kind == "timer" and isinstance(record.value, (int, float)):
        return float(record.value), f"its timer {name!r} was due"
    if record.kind == "signal" and record.status == "COMPLETE":
        if name not in sent:
            report(SIGNAL_DELIVERY, flow_id, position, f"received signal {name!r}, which was never sent")
            return None
        return sent[name], f"signal {name!r} was sent"
    if record.kind == "signal":  # the wait timed out: at its journaled deadline
        deadlines = [p for p, r in obs.steps.items() if p < position and r.name == f"deadline:{name}"]
        value = obs.steps[max(deadlines)].value if deadlines else None
        return (float(value), f"its wait for signal {name!r} timed out") if isinstance(value, (int, float)) else None
    if record.kind == "child":
        child = observed.get(child_id(flow_id, position))
        if child is not None and child.status in TERMINAL:
            return child.finished_at, f"its child flow {child_id(flow_id, position)!r} ended"
    return None


def _child(flow_id: str, position: int, record: StepSummary, child: FlowSummary | None,
           report: Reporter) -> None:
    cid = child_id(flow_id, position)
    if child is None:
        report(CHILD_DIFFERS, flow_id, position, f"journaled {record.label} but child flow {cid!r} is not in "
               "the store")
    elif child.parent_id != flow_id:
        report(CHILD_DIFFERS, flow_id, position, f"child flow {cid!r} names {child.parent_id!r} as its parent")
    elif child.status not in TERMINAL:
        report(CHILD_DIFFERS, flow_id, position, f"journaled {record.label} while child flow {cid!r} is "
               f"still {child.status}")
    elif (record.status == "COMPLETE") != (child.status == "COMPLETE") or record.value != (
            child.result if child.status == "COMPLETE" else child.error):
        report(CHILD_DIFFERS, flow_id, position, f"journaled {record.label} but child flow {cid!r} ended "
               f"{child.outcome}")
    elif record.completed_at < child.finished_at - SLACK:
        report(CHILD_DIFFERS, flow_id, position, f"journaled the child's outcome "
               f"{child.finished_at - record.completed_at:.3f}s before child flow {cid!r} ended")


def check_signals(expected: Mapping[str, FlowSummary], observed: Mapping[str, FlowSummary | None],
                  report: Reporter) -> None:
    """Each signal name was received (journaled COMPLETE) as often as in the fault-free run."""
    want, got = _received(expected), _received(observed)
    for name in sorted(set(want) | set(got)):
        if len(got.get(name, ())) != len(want.get(name, ())):
            where = ", ".join(f"flow {f} step {p}" for f, p in got.get(name, ())) or "nowhere"
            report(SIGNAL_DELIVERY, None, None, f"signal {name!r} was received {len(got.get(name, ()))} "
                   f"times ({where}); in the fault-free run {len(want.get(name, ()))}")


def _received(flows: Mapping[str, FlowSummary | None]) -> dict[str, list[tuple[str, int]]]:
    found: dict[str, list[tuple[str, int]]] = {}
    for flow_id, summary in flows.items():
        for position, record in ({} if summary is None else summary.steps).items():
            if record.kind == "signal" and record.status == "COMPLETE":
                found.setdefault(record.name.partition(":")[2], []).append((flow_id, position))
    return found

