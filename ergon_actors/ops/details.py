"""Everything about one flow for an operator: times, durations, what it waits for, its steps
(attempts, results, tracebacks) and its event history."""

from __future__ import annotations

import asyncio
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from typing import Any
from collections.abc import AsyncIterator

from ..core import TERMINAL, Crash, Failure, FlowRecord, FlowStatus, StepRecord
from ..errors import FlowNotFoundError
from ..storage.base import LogBase
from ..storage.crashes import how
from ..storage.events import FlowEvent
from .values import Value, decode, iso

__all__ = ["FlowDetails", "StepDetails", "Wait", "inspect_flow", "follow_history", "flow_summary",
           "failure_json", "crash_json", "event_json", "event_text"]

HISTORY_PAGE = 1000


@dataclass(frozen=True, slots=True)
class Wait:
    """What a flow that is not running waits for.

    kind: "start" (PENDING), "timer", "signal", "child", "step-retry", "retry" (the flow's next
    attempt) or "resume" (woken at `until`).
    """

    kind: str
    name: str | None = None  # the timer, signal, child flow id or step
    until: float | None = None  # when it runs again at the latest (a timeout, a timer, a retry)
    child_status: str | None = None

    def describe(self) -> str:
        if self.kind == "signal":
            return f"signal {self.name!r}" + (f" (timeout at {iso(self.until)})" if self.until is not None else "")
        if self.kind == "child":
            return f"child flow {self.name} ({self.child_status or 'missing'})"
        if self.kind == "timer":
            return f"timer {self.name!r} firing at {iso(self.until)}"
        if self.kind == "step-retry":
            return f"retry of step {self.name!r} at {iso(self.until)}"
        if self.kind == "retry":
            return f"attempt {self.name} at {iso(self.until)}"
        if self.kind == "start":
            return f"a worker (due at {iso(self.until)})" if self.until is not None else "a worker"
        return f"its resumption at {iso(self.until)}" if self.until is not None else "a wake-up"


@dataclass(frozen=True, slots=True)
class StepDetails:
    """One journaled step; `took` is the time from the step's start (the previous step's end, or
    the claim that resumed the flow) to its end, None when unknown."""

    step: StepRecord
    result: Value | None
    took: float | None


@dataclass(frozen=True, slots=True)
class FlowDetails:
    flow: FlowRecord
    args: Value | None
    result: Value | None
    steps: tuple[StepDetails, ...]
    history: tuple[FlowEvent, ...]
    started_at: float | None  # its first claim
    ended_at: float | None
    wait: Wait | None

    @property
    def duration(self) -> float | None:
        """From creation to its end (None while it has not ended)."""
        return None if self.ended_at is None else self.ended_at - self.flow.created_at

    @property
    def queued(self) -> float | None:
        """From creation to its first claim."""
        return None if self.started_at is None else self.started_at - self.flow.created_at

    def to_json(self) -> dict[str, Any]:
        """The details as JSON-ready data (values stay Value: pass the result through values.to_json)."""
        flow = self.flow
        data = flow_summary(flow)
        data.update(
            args=self.args, result=self.result, version=flow.version, epoch=flow.epoch, owner=flow.owner,
            parent_id=flow.parent_id, lease_expires=iso(flow.lease_expires), ready_at=iso(flow.ready_at),
            started_at=iso(self.started_at), ended_at=iso(self.ended_at), duration=self.duration,
            queued=self.queued, cancel_requested=flow.cancel_requested,
            waiting=None if self.wait is None else {"kind": self.wait.kind, "name": self.wait.name,
                                                    "until": iso(self.wait.until),
                                                    "description": self.wait.describe()},
            error=failure_json(flow.error))
        data["steps"] = [{
            "position": s.step.position, "name": s.step.name, "status": s.step.status,
            "attempt": s.step.attempt, "tries": s.step.tries, "completed_at": iso(s.step.completed_at),
            "took": s.took, "retry_at": iso(s.step.retry_at), "result": s.result,
            "error": failure_json(s.step.error)} for s in self.steps]
        data["crashes"] = [crash_json(c) for c in flow.crashes]
        data["history"] = [event_json(e) for e in self.history]
        return data


def flow_summary(flow: FlowRecord) -> dict[str, Any]:
    """The fields of a flow that a listing shows, JSON-ready."""
    return {"flow_id": flow.flow_id, "class": flow.flow_type, "status": flow.status, "attempt": flow.attempt,
            "created_at": iso(flow.created_at), "updated_at": iso(flow.updated_at),
            "error_type": None if flow.error is None else flow.error.type,
            "waiting_on": flow.waiting_on if flow.status == FlowStatus.SUSPENDED else None}


def failure_json(failure: Failure | None) -> dict[str, Any] | None:
    if failure is None:
        return None
    return {"type": failure.type, "message": failure.message, "retryable": failure.retryable,
            "traceback": failure.traceback or None}


def crash_json(crash: Crash) -> dict[str, Any]:
    """One worker death recorded on a flow (`blamed`: the worker ran it alone)."""
    return {"at": iso(crash.at), "how": how(crash), "exit_code": crash.exit_code, "signal": crash.signal,
            "cause": crash.cause, "position": crash.position, "step": crash.step, "worker_id": crash.worker_id,
            "blamed": crash.alone}


TIME_FIELDS = ("at", "until", "retry_at", "ready_at")  # event details that are store times


def event_text(event: FlowEvent) -> str:
    """An event's details as `key=value` pairs, its times in ISO 8601."""
    return " ".join(f"{k}={iso(v) if k in TIME_FIELDS and isinstance(v, (int, float)) else v}"
                    for k, v in event.details.items())


def event_json(event: FlowEvent) -> dict[str, Any]:
    return {"seq": event.seq, "at": iso(event.at), "kind": event.kind, **event.details}


async def inspect_flow(store: LogBase, flow_id: str) -> FlowDetails:
    """Everything about one flow.

    Raises:
        FlowNotFoundError: no such flow.
    """
    flow = await store.get_flow(flow_id)
    if flow is None:
        raise FlowNotFoundError(flow_id)
    steps = await store.load_steps(flow_id)
    history = await _history(store, flow_id)
    claims = [e.at for e in history if e.kind == "claimed"]
    wait = await _wait(store, flow)
    ended = flow.updated_at if flow.status in TERMINAL else None
    return FlowDetails(flow, decode(flow.args), decode(flow.result), _step_details(steps, claims),
                       tuple(history), claims[0] if claims else None, ended, wait)


async def _history(store: LogBase, flow_id: str, after: int = 0) -> list[FlowEvent]:
    events: list[FlowEvent] = []
    while True:
        page = await store.load_history(flow_id, after=after, limit=HISTORY_PAGE)
        events += page
        if len(page) < HISTORY_PAGE:
            return events
        after = page[-1].seq


def _step_details(steps: list[StepRecord], claims: list[float]) -> tuple[StepDetails, ...]:
    ends = sorted(s.completed_at for s in steps)
    details = []
    for s in steps:
        i, j = bisect_left(ends, s.completed_at), bisect_right(claims, s.completed_at)
        starts = ([ends[i - 1]] if i else []) + ([claims[j - 1]] if j else [])  # the previous end, the claim
        took = s.completed_at - max(starts) if starts else None
        details.append(StepDetails(s, decode(s.result), took))
    return tuple(details)


async def _wait(store: LogBase, flow: FlowRecord) -> Wait | None:
    if flow.status == FlowStatus.PENDING:
        return Wait("start", until=flow.ready_at)
    if flow.status != FlowStatus.SUSPENDED:
        return None
    kind, _, name = (flow.waiting_on or "").partition(":")
    if kind == "child":
        child = await store.get_flow(name)
        return Wait("child", name, None, None if child is None else child.status)
    if kind in ("signal", "timer"):
        return Wait(kind, name, flow.ready_at)
    if kind == "retry":
        return Wait("step-retry", name, flow.ready_at)
    if flow.error is not None and flow.attempt > 1:
        return Wait("retry", str(flow.attempt), flow.ready_at)
    return Wait("resume", None, flow.ready_at)


async def follow_history(store: LogBase, flow_id: str, *, after: int = 0,
                         poll: float = 0.5) -> AsyncIterator[FlowEvent]:
    """The flow's events after `after`, then each new one as it is recorded, until the flow ends.

    Raises:
        FlowNotFoundError: no such flow.
    """
    while True:
        flow = await store.get_flow(flow_id)  # read first: an end seen here has its events below
        if flow is None:
            raise FlowNotFoundError(flow_id)
        for event in await _history(store, flow_id, after):
            after = event.seq
            yield event
        if flow.status in TERMINAL:
            return
        await asyncio.sleep(poll)
