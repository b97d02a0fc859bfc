"""The rules every store applies the same way: what is runnable, what a write's epoch may do."""

from __future__ import annotations

from dataclasses import replace
from typing import Protocol

from ..core import Failure, FlowRecord, FlowStatus, StepRecord, StepStatus
from .commands import MigrateFlows, QueryFlows
from ..errors import (FencedError, FlowBusyError, FlowCancelledError, FlowNotFoundError, FlowStateError,
                      InvalidCommandError, ScheduleNotFoundError)

__all__ = ["runnable", "due_at", "fence", "child_outcome", "invalid", "matches", "retried", "serves",
           "check_migration", "migrates", "migrated_event", "REFUSALS", "RETRYABLE", "LIVE"]


def runnable(flow: FlowRecord, now: float) -> bool:
    """True when a worker may claim this flow now."""
    due = due_at(flow)
    return due is not None and due <= now


def due_at(flow: FlowRecord) -> float | None:
    """When this flow becomes runnable by time alone (runnable() turns true), or None."""
    if flow.status == FlowStatus.PENDING or flow.status == FlowStatus.SUSPENDED:
        return flow.ready_at
    if flow.status == FlowStatus.RUNNING:
        return flow.lease_expires
    return None


class Lease(Protocol):
    """What fencing reads of a flow: a FlowRecord, or a store's narrower row."""

    @property
    def epoch(self) -> int: ...
    @property
    def status(self) -> str: ...
    @property
    def cancel_requested(self) -> bool: ...


REFUSALS = (FencedError, FlowNotFoundError, FlowBusyError, FlowCancelledError, FlowStateError,
            ScheduleNotFoundError)
RETRYABLE = frozenset({FlowStatus.FAILED, FlowStatus.CANCELLED})  # what RetryFlow resumes
LIVE = (FlowStatus.PENDING, FlowStatus.RUNNING, FlowStatus.SUSPENDED)  # what MigrateFlows moves


def serves(version: str | None, flow_version: str | None) -> bool:
    """True when a worker serving `version` (None: every flow) may claim a flow of `flow_version`."""
    return version is None or flow_version is None or flow_version == version


def check_migration(c: MigrateFlows) -> None:
    """Raise ValueError if MigrateFlows `c` names no flows to move."""
    if c.from_version is None and c.flow_ids is None:
        raise ValueError("name the flows to migrate: a version to move them from, or their ids")


def migrates(c: MigrateFlows, flow: FlowRecord) -> bool:
    """True when MigrateFlows `c` moves this flow."""
    return (flow.status in LIVE and flow.version != c.to_version
            and (c.from_version is None or flow.version == c.from_version)
            and (c.flow_ids is None or flow.flow_id in c.flow_ids))


def migrated_event(old: str | None, new: str | None) -> tuple[str, dict[str, str | None]]:
    """The event of a flow moved from version `old` to `new`."""
    return "migrated", {"from": old, "to": new}


def matches(flow: FlowRecord, q: QueryFlows) -> bool:
    """True when the flow passes every filter of a QueryFlows."""
    return ((q.statuses is None or flow.status in q.statuses)
            and (q.flow_types is None or flow.flow_type in q.flow_types)
            and (q.created_after is None or flow.created_at >= q.created_after)
            and (q.created_before is None or flow.created_at < q.created_before)
            and (q.id_contains is None or q.id_contains in flow.flow_id)
            and (q.error_contains is None or (flow.error is not None and q.error_contains in flow.error.type)))


def retried(flow: FlowRecord, now: float) -> FlowRecord:
    """A FAILED or CANCELLED flow as RetryFlow leaves it: due now, its next attempt."""
    if flow.status not in RETRYABLE:
        raise FlowStateError(flow.flow_id, flow.status, "retry")
    return replace(flow, status=FlowStatus.PENDING, attempt=flow.attempt + 1, ready_at=now, owner=None,
                   lease_expires=None, result=None, waiting_on=None, cancel_requested=False, suspect=0,
                   updated_at=now)


def invalid(command: object, exc: BaseException) -> InvalidCommandError:
    """The error put in place of a command that failed on its own content, naming the cause."""
    return InvalidCommandError(type(command).__name__, f"{type(exc).__name__}: {exc}")


def fence(flow: Lease | None, flow_id: str, epoch: int, cancelling: bool = False) -> Exception | None:
    """Why a write at `epoch` is refused, or None when the epoch still owns the flow."""
    if flow is None:
        return FlowNotFoundError(flow_id)
    if flow.epoch != epoch:
        return FencedError(flow_id, epoch, f"flow is at epoch {flow.epoch}")
    if flow.status != FlowStatus.RUNNING:
        return FencedError(flow_id, epoch, f"flow is {flow.status}")
    if flow.cancel_requested and not cancelling:
        return FlowCancelledError(flow_id)
    return None


def child_outcome(step: StepRecord, child: FlowRecord, now: float) -> StepRecord:
    """The parent's journal entry for a child that ended: its result, or its error as a failure."""
    if child.status == FlowStatus.COMPLETE:
        return replace(step, status=StepStatus.COMPLETE, result=child.result, completed_at=now)
    return replace(step, status=StepStatus.FAILED, completed_at=now,
                   error=child.error or Failure.cancelled(child.flow_id))
