"""A flow's event history: what happened to it, appended by the store with the change it records.

Every store appends an event in the same transaction as the change it describes, so the history
never claims what did not commit and never misses what did. Events are numbered per flow from 1
(`seq`) and kept as long as the flow. The kinds, and the details each carries (as a JSON object):

    scheduled         type; parent (a child flow); ready_at (a delayed start)
    claimed           worker, epoch
    lease_expired     worker, epoch: the worker whose lease lapsed before another claimed the flow
                      (taken: true when the claim took a live lease)
    step_completed    position, name, attempt, tries
    step_failed       position, name, attempt, tries, error; retry_at when the step is tried again
    retry_scheduled   at; attempt and error (the flow is retried), or step (a step is retried)
    timer_set         name, at
    timer_fired       name
    suspended         until (None: until woken)
    signal_waiting    name; until (the wait's timeout)
    signal_received   name
    child_started     child, type
    child_finished    child, status
    released          worker, epoch: the worker stopped and its flows went back to the queue
    crashed           worker, cause, exit_code, signal, position, step, alone: the worker died while
                      it held the flow (blamed on the flow when `alone`); it runs alone next
    quarantined       crashes: the flow crashed its worker too often and is FAILED as poison
    fenced            epoch, command, reason: a write from a stale lease was refused
    cancel_requested  (a running flow stops at its next step boundary)
    cancelled, completed
    failed            error, message
    retried           attempt: an operator resumed a FAILED or CANCELLED flow
    forked            into, from_step (the original) or from, from_step (the copy): an operator
                      started a copy of the flow that replays its steps before from_step
    migrated          from, to: an operator moved the flow to another code version
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii as _string
from typing import Any

from ..core import Failure, FlowRecord, FlowStatus, StepRecord, StepStatus

__all__ = ["FlowEvent", "Event", "dumps", "scheduled_event", "step_event", "suspend_event", "claim_events",
           "crash_events", "finish_event", "fenced_event"]

Event = tuple[str, dict[str, Any]]  # (kind, details) as a store's handler builds it


@dataclass(frozen=True, slots=True)
class FlowEvent:
    """One entry of a flow's history. `data` is a JSON object: the event's details."""

    seq: int
    at: float
    kind: str
    data: str = "{}"

    @property
    def details(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(self.data)
        return loaded


_ENCODER = json.JSONEncoder(separators=(",", ":"))  # built once: json.dumps with options builds one per call


def dumps(details: dict[str, Any]) -> str:
    """The details as compact ASCII JSON, as json.dumps(details, separators=(",", ":")) writes them."""
    if len(details) == 4 and type(details.get("tries")) is int:  # a step's event, one per step
        position, name, attempt, tries = details.values()
        if (type(position) is int and type(name) is str and type(attempt) is int
                and list(details) == _STEP_KEYS):
            return f'{{"position":{position},"name":{_string(name)},"attempt":{attempt},"tries":{tries}}}'
    parts = []
    for key, value in details.items():  # str, int and None as the encoder writes them; else the encoder
        kind = type(value)
        if kind is str:
            parts.append(f"{_string(key)}:{_string(value)}")
        elif kind is int:
            parts.append(f"{_string(key)}:{int.__repr__(value)}")
        elif value is None:
            parts.append(f"{_string(key)}:null")
        else:
            return _ENCODER.encode(details)
    return "{" + ",".join(parts) + "}"


_STEP_KEYS = ["position", "name", "attempt", "tries"]


def scheduled_event(flow_type: str, parent_id: str | None, ready_at: float | None) -> Event:
    details: dict[str, Any] = {"type": flow_type}
    if parent_id is not None:
        details["parent"] = parent_id
    if ready_at is not None:
        details["ready_at"] = ready_at
    return "scheduled", details


def step_event(step: StepRecord) -> Event:
    details: dict[str, Any] = {"position": step.position, "name": step.name, "attempt": step.attempt,
                               "tries": step.tries}
    if step.status == StepStatus.COMPLETE:
        return "step_completed", details
    details["error"] = step.error.type if step.error is not None else None
    if step.retry_at is not None:
        details["retry_at"] = step.retry_at
    return "step_failed", details


def suspend_event(ready_at: float | None, waiting_on: str | None, attempt: int | None,
                  error: Failure | None) -> Event:
    """The event of a SuspendFlow: a retry, a timer, or a plain wait."""
    if attempt is not None:
        return "retry_scheduled", {"at": ready_at, "attempt": attempt,
                                   "error": None if error is None else error.type}
    kind, _, name = (waiting_on or "").partition(":")
    if kind == "timer":
        return "timer_set", {"name": name, "at": ready_at}
    if kind == "retry":
        return "retry_scheduled", {"at": ready_at, "step": name}
    return "suspended", {"until": ready_at}


def claim_events(status: str, owner: str | None, epoch: int, lease_expires: float | None,
                 waiting_on: str | None, worker: str, now: float) -> list[Event]:
    """The events of claiming a flow for `worker`; the other arguments are the flow's state before."""
    events: list[Event] = []
    if status == FlowStatus.RUNNING:
        details: dict[str, Any] = {"worker": owner, "epoch": epoch}
        if lease_expires is not None and lease_expires > now:
            details["taken"] = True
        events.append(("lease_expired", details))
    elif status == FlowStatus.SUSPENDED and (waiting_on or "").startswith("timer:"):
        events.append(("timer_fired", {"name": (waiting_on or "")[6:]}))
    events.append(("claimed", {"worker": worker, "epoch": epoch + 1}))
    return events


def crash_events(flow: FlowRecord) -> list[Event]:
    """The events of a worker's death recorded on `flow` (RecordCrash): the crash, and the
    quarantine when it made the flow poison."""
    crash = flow.crashes[-1]
    events: list[Event] = [("crashed", {"worker": crash.worker_id, "cause": crash.cause,
                                        "exit_code": crash.exit_code, "signal": crash.signal,
                                        "position": crash.position, "step": crash.step, "alone": crash.alone})]
    if flow.quarantined:
        events.append(("quarantined", {"crashes": flow.blamed}))
    return events


def finish_event(status: str, error: Failure | None) -> Event:
    if status == FlowStatus.FAILED:
        return "failed", {"error": None if error is None else error.type,
                          "message": None if error is None else error.message[:500]}
    return ("completed" if status == FlowStatus.COMPLETE else "cancelled"), {}


def fenced_event(command: object, epoch: int, reason: str) -> Event:
    return "fenced", {"epoch": epoch, "command": type(command).__name__, "reason": reason}
