"""What operators do to flows: schedule, signal, retry, fork, migrate, and cancel many by a filter."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from ..core import FlowRecord, FlowStatus
from ..errors import ConfigError, FlowIdTakenError, FlowNotFoundError
from ..executor.definition import definition_of, encode_args
from ..executor.scheduler import schedule_instance
from ..storage.base import LogBase
from ..storage.commands import CancelFlow
from .query import FlowFilter, iter_flows, live

__all__ = ["schedule_flow", "send_signal", "retry_flow", "fork_flow", "migrate_flows", "matching_live_flows",
           "cancel_flows", "Cancelled", "ScheduleOutcome", "SignalSent"]


@dataclass(frozen=True, slots=True)
class ScheduleOutcome:
    """What schedule_flow did: created the flow, or found it (`kept`: with other arguments)."""

    flow_id: str
    created: bool
    kept: bool = False


async def schedule_flow(store: LogBase, flow: object, flow_id: str | None = None, *, delay: float | None = None,
                        keep_other: bool = False, queue: str | None = None, priority: int | None = None,
                        dedup_id: str | None = None) -> ScheduleOutcome:
    """Queue a flow instance. An existing flow_id with the same class and arguments is the same
    flow (nothing is created); with another class or other arguments it is an error, unless
    keep_other keeps the existing flow as it is. queue, priority, dedup_id: as Scheduler.schedule
    takes them; a live flow of the queue with the dedup id is the same flow.

    Raises:
        FlowIdTakenError: flow_id is a flow of another class or with other arguments.
        SerializationError: an argument cannot be stored.
    """
    name = definition_of(type(flow)).name
    args = encode_args(flow)
    flow_id = flow_id or str(uuid.uuid4())
    ready_at = None if delay is None else time.time() + delay
    scheduled = await schedule_instance(store, flow, flow_id, ready_at=ready_at, queue=queue, priority=priority,
                                        dedup_id=dedup_id)
    if scheduled.created:
        return ScheduleOutcome(flow_id, True)
    if scheduled.flow_id != flow_id:  # deduplicated: the live flow with that dedup id
        return ScheduleOutcome(scheduled.flow_id, False)
    existing = await store.get_flow(flow_id)
    if existing is None or (existing.flow_type, existing.args) == (name, args):
        return ScheduleOutcome(flow_id, False)
    if keep_other:
        return ScheduleOutcome(flow_id, False, kept=True)
    what = (f"it is a {existing.flow_type}" if existing.flow_type != name
            else "its flow has other arguments")
    raise FlowIdTakenError(flow_id, what)


@dataclass(frozen=True, slots=True)
class SignalSent:
    """What send_signal did: `sent` (False: this name was sent before and this one is dropped),
    `waiting`: whether a flow was waiting for it (else it is kept until one waits)."""

    sent: bool
    waiting: bool


async def send_signal(store: LogBase, name: str, payload: bytes) -> SignalSent:
    """Deliver the signal `name` (payload: codec-encoded) to the flow that waits for it, now or later."""
    waiting = name in await store.waiting_signals(limit=1_000_000)
    return SignalSent(await store.send_signal(name, payload), waiting)

CANCEL_BATCH = 200  # cancels in one transaction


async def retry_flow(store: LogBase, flow_id: str) -> FlowRecord:
    """Resume a FAILED or CANCELLED flow (and its failed children) from its failed step: its
    completed steps replay, the failed one runs again, as attempt n + 1. Returns the flow.

    Raises:
        FlowNotFoundError: no such flow.
        FlowStateError: the flow is not FAILED or CANCELLED.
    """
    await store.retry_failed(flow_id)
    flow = await store.get_flow(flow_id)
    if flow is None:  # not reached: a flow is never deleted
        raise FlowNotFoundError(flow_id)
    return flow


async def fork_flow(store: LogBase, flow_id: str, from_step: int, new_flow_id: str | None = None) -> str:
    """Start a new flow with the arguments of `flow_id` that reuses the results of its completed
    steps before position `from_step` and runs the rest. Returns the new flow's id.

    Raises:
        FlowNotFoundError: no flow `flow_id`.
        ConfigError: from_step is negative.
        FlowIdTakenError: new_flow_id is the id of a flow.
    """
    if from_step < 0:
        raise ConfigError(f"the step to fork from is a position >= 0, got {from_step}")
    new_flow_id = new_flow_id or str(uuid.uuid4())
    if not (await store.fork_flow(flow_id, new_flow_id, from_step)).created:
        raise FlowIdTakenError(new_flow_id, "a flow has it; choose another id or leave it out")
    return new_flow_id


async def migrate_flows(store: LogBase, to_version: str | None, *, from_version: str | None = None,
                        flow_ids: list[str] | None = None) -> int:
    """Move the live flows of from_version, or those among flow_ids (or both filters), to to_version
    (None: any worker's), so that workers serving that version run them. Returns how many moved.

    Raises:
        ConfigError: neither from_version nor flow_ids given, or an empty version.
    """
    if from_version is None and flow_ids is None:
        raise ConfigError("name the flows to migrate: a version to move them from, or their ids")
    for version in (to_version, from_version):
        if version is not None and not version.strip():
            raise ConfigError("a version is a non-empty string")
    ids = None if flow_ids is None else tuple(flow_ids)
    return await store.migrate_flows(to_version, from_version=from_version, flow_ids=ids)


async def matching_live_flows(store: LogBase, flow_filter: FlowFilter) -> list[str]:
    """The ids of the flows matching the filter that have not ended, oldest first."""
    return [flow.flow_id async for flow in iter_flows(store, live(flow_filter))]


@dataclass(frozen=True, slots=True)
class Cancelled:
    """What cancel_flows did: cancelled, requested (running: they stop at their next step
    boundary) and ended (they ended before the cancel reached them: left as they are)."""

    cancelled: tuple[str, ...]
    requested: tuple[str, ...]
    ended: tuple[str, ...]


async def cancel_flows(store: LogBase, flow_ids: list[str]) -> Cancelled:
    """Cancel these flows (and their children), CANCEL_BATCH per transaction."""
    outcome: dict[str, list[str]] = {"cancelled": [], "requested": [], "ended": []}
    for start in range(0, len(flow_ids), CANCEL_BATCH):
        batch = flow_ids[start:start + CANCEL_BATCH]
        for flow_id, status in zip(batch, await store.execute([CancelFlow(i) for i in batch]), strict=True):
            key = ("cancelled" if status == FlowStatus.CANCELLED else
                   "requested" if status == FlowStatus.RUNNING else "ended")
            outcome[key].append(flow_id)
    return Cancelled(tuple(outcome["cancelled"]), tuple(outcome["requested"]), tuple(outcome["ended"]))
